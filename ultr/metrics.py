"""Ranking metrics on padded lists ``[..., list_size]``, in rax's calling convention.

``metric(scores, labels, *, where=None, topn=None) -> [...]`` (one value per list).
nDCG, DCG, MRR and precision come from rax (gain ``2^y - 1``, discount
``1 / log2(rank + 1)``); ERR and the average relevant position are written
here on rax's ranks, so ties are broken the same way everywhere (by position).
A document is *relevant* when its label is positive.

>>> import jax.numpy as jnp
>>> scores = jnp.array([3.0, 2.0, 1.0])
>>> labels = jnp.array([0.0, 2.0, 1.0])
>>> round(float(dcg(scores, labels)), 4)  # 3 / log2(3) + 1 / log2(4)
2.3928
>>> float(mrr(scores, labels))
0.5
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import rax

from click_models.registry import Registry


def _where(labels, where):
    return jnp.ones(labels.shape, bool) if where is None else where


def ndcg(scores, labels, *, where=None, topn=None):
    """Normalised DCG (Järvelin and Kekäläinen, 2002); 0 for lists without relevant documents."""
    return rax.ndcg_metric(scores, labels, where=where, topn=topn, reduce_fn=None)


def dcg(scores, labels, *, where=None, topn=None):
    """DCG with gain ``2^y - 1`` and discount ``1 / log2(rank + 1)``."""
    return rax.dcg_metric(scores, labels, where=where, topn=topn, reduce_fn=None)


def mrr(scores, labels, *, where=None, topn=None):
    """Reciprocal rank of the first relevant document (0 when none is in the top ``topn``)."""
    return rax.mrr_metric(scores, (labels > 0).astype(jnp.float32), where=where, topn=topn, reduce_fn=None)


def precision(scores, labels, *, where=None, topn=None):
    """Share of relevant documents in the top ``topn``."""
    return rax.precision_metric(scores, (labels > 0).astype(jnp.float32), where=where, topn=topn, reduce_fn=None)


def err(scores, labels, *, where=None, topn=None, max_label: float | None = None):
    """Expected reciprocal rank (Chapelle et al., CIKM 2009).

    ``ERR = sum_r 1/r * R_r * prod_{i<r} (1 - R_i)`` with ``R = (2^y - 1) / 2^y_max``, where
    ``y_max`` is the grade scale's maximum (as in the paper and gdeval), not each list's own highest
    label. Pass ``max_label`` (4 for MSLR-WEB and Yahoo, 2 for MQ2008); it defaults to the highest
    label of all the lists given.

    >>> import jax.numpy as jnp
    >>> scores, labels = jnp.array([2.0, 1.0]), jnp.array([1.0, 2.0])
    >>> round(float(err(scores, labels, max_label=4)), 6)  # 1/16 + (1 - 1/16) * 3/16 / 2
    0.150391
    """
    where = _where(labels, where)
    ranks = rax.utils.ranks(scores, where=where)  # 1-based, by score, ties by position
    y_max = jnp.max(jnp.where(where, labels, 0)) if max_label is None else max_label
    stop = jnp.where(where, (jnp.exp2(labels) - 1.0) / jnp.maximum(jnp.exp2(y_max), 1.0), 0.0)
    if topn is not None:
        stop = jnp.where(ranks <= topn, stop, 0.0)
    # order the stop probabilities by rank
    order = jnp.argsort(ranks, axis=-1)
    stop_sorted = jnp.take_along_axis(stop, order, axis=-1)
    go_on = jnp.cumprod(1.0 - stop_sorted, axis=-1)
    reach = jnp.concatenate([jnp.ones_like(go_on[..., :1]), go_on[..., :-1]], axis=-1)
    position = jnp.arange(1, stop.shape[-1] + 1)
    return jnp.sum(reach * stop_sorted / position, axis=-1)


def average_relevant_position(scores, labels, *, where=None, topn=None):
    """Mean rank of the relevant documents (lower is better; 0 for lists without any)."""
    del topn
    where = _where(labels, where)
    ranks = rax.utils.ranks(scores, where=where)
    relevant = where & (labels > 0)
    count = jnp.sum(relevant, axis=-1)
    return jnp.where(count > 0, jnp.sum(jnp.where(relevant, ranks, 0), axis=-1) / jnp.maximum(count, 1), 0.0)


METRICS: Registry = Registry("metric")
for _name, _fn in (("ndcg", ndcg), ("dcg", dcg), ("err", err), ("mrr", mrr), ("precision", precision),
                   ("arp", average_relevant_position)):
    METRICS.add(_name, _fn)


def parse_metric(name: str):
    """``"ndcg@10"`` -> (function, 10); ``"arp"`` -> (function, None)."""
    base, _, cutoff = str(name).partition("@")
    if base not in METRICS:
        raise ValueError(f"unknown metric {name!r}; choose from {', '.join(METRICS)} (with @k)")
    if "@" in str(name) and (not cutoff.isdigit() or not 1 <= int(cutoff) <= 100_000):
        raise ValueError(f"metric {name!r}: the cutoff after @ must be an integer in 1..100,000")
    return METRICS[base], (int(cutoff) if cutoff else None)


def evaluate_rankings(scores, labels, mask, metrics=("ndcg@1", "ndcg@3", "ndcg@5", "ndcg@10", "err@10", "mrr@10"),
                      skip_no_relevant: bool = True, max_label: float | None = None) -> dict[str, float]:
    """Mean of each metric over queries ``[Q, L]``.

    With ``skip_no_relevant`` (default) queries without a relevant document
    are left out of the means, as they carry no ranking signal. ``max_label`` is
    the grade scale's maximum for ERR (default: the highest label given).
    """
    scores, labels, mask = jnp.asarray(scores), jnp.asarray(labels, jnp.float32), jnp.asarray(mask)
    keep = np.asarray(jnp.any(mask & (labels > 0), axis=-1)) if skip_no_relevant else np.ones(labels.shape[0], bool)
    result = {}
    for name in metrics:
        fn, topn = parse_metric(name)
        extra = {"max_label": max_label} if fn is err else {}
        values = np.asarray(fn(scores, labels, where=mask, topn=topn, **extra))
        result[name] = float(values[keep].mean()) if keep.any() else float("nan")
    result["num_queries"] = int(keep.sum())
    return result


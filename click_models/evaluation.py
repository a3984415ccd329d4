"""Click-model evaluation: log-likelihood and perplexity.

Perplexity at rank k (Dupret and Piwowarski, SIGIR 2008; Chuklin et al. 2015, sec. 5.1)::

    p_k = 2 ** ( -1/|S_k| * sum_s [ c_sk log2 q_sk + (1 - c_sk) log2 (1 - q_sk) ] )

with ``q_sk`` the model's marginal click probability ``P(C_k = 1)`` and
``S_k`` the sessions that show a document at rank k. The overall perplexity is
the mean of ``p_k`` over ranks. The *conditional* perplexity uses
``P(C_k = 1 | C_<k)`` instead. A perfect model has perplexity 1, a coin 2.

>>> import jax.numpy as jnp
>>> from click_models import PBM
>>> from click_models.fitting import SessionBatch
>>> clicks = jnp.array([[True, False], [False, False]])
>>> batch = SessionBatch(jnp.zeros((2, 2), jnp.int32), clicks, jnp.ones((2, 2), bool))
>>> model = PBM(jnp.full((2, 2), 0.5), jnp.array([1.0, 1.0]))
>>> evaluate(lambda b: model, [batch])["perplexity"]
2.0
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

from ._base import ClickModel


def _bernoulli_log2(clicks: jax.Array, probs: jax.Array) -> jax.Array:
    """``c log2 q + (1 - c) log2 (1 - q)`` (``-inf`` where the model rules the outcome out)."""
    chosen = jnp.where(clicks, probs, 1.0 - probs)
    return jnp.where(chosen > 0, jnp.log2(jnp.where(chosen > 0, chosen, 1.0)), -jnp.inf)


@jax.jit
def batch_statistics(model: ClickModel, clicks: jax.Array, mask: jax.Array) -> dict[str, jax.Array]:
    """Sums over one batch: log-likelihood, sessions, per-rank log2-likelihoods and counts."""
    session = jnp.any(mask, axis=-1)
    log_likelihood = jnp.where(session, model.log_prob(clicks), 0.0)
    marginal = _bernoulli_log2(clicks, model.click_probs())
    conditional = _bernoulli_log2(clicks, model.conditional_click_probs(clicks))
    batch_axes = tuple(range(mask.ndim - 1))
    return {
        "log_likelihood": jnp.sum(log_likelihood),
        "sessions": jnp.sum(session),
        "marginal_log2": jnp.sum(jnp.where(mask, marginal, 0.0), axis=batch_axes),
        "conditional_log2": jnp.sum(jnp.where(mask, conditional, 0.0), axis=batch_axes),
        "positions": jnp.sum(mask, axis=batch_axes),
    }


def evaluate(model_fn: Callable, source: Iterable, per_rank: bool = True) -> dict:
    """Evaluate a click model on sessions.

    Args:
      model_fn: ``batch -> ClickModel`` for a :class:`~click_models.fitting.SessionBatch`.
      source: iterable of session batches (``clicks``, ``mask`` ``[B, K]``).
      per_rank: include per-rank perplexities.

    Returns:
      ``log_likelihood`` (mean per session, natural log), ``perplexity``,
      ``conditional_perplexity``, ``num_sessions`` and, with ``per_rank``,
      ``perplexity_per_rank`` and ``conditional_perplexity_per_rank``.
    """
    totals = None
    for batch in source:
        stats = batch_statistics(model_fn(batch), batch.clicks, batch.mask)
        stats = {k: np.asarray(v, np.float64) for k, v in stats.items()}
        totals = stats if totals is None else {k: totals[k] + stats[k] for k in totals}
    if totals is None or totals["sessions"] == 0:
        raise ValueError("evaluate: no sessions to evaluate on")
    seen = totals["positions"] > 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        per_rank_marginal = np.where(seen, 2.0 ** (-totals["marginal_log2"] / np.maximum(totals["positions"], 1)), np.nan)
        per_rank_conditional = np.where(
            seen, 2.0 ** (-totals["conditional_log2"] / np.maximum(totals["positions"], 1)), np.nan
        )
    result = {
        "num_sessions": int(totals["sessions"]),
        "log_likelihood": float(totals["log_likelihood"] / totals["sessions"]),
        "perplexity": float(np.mean(per_rank_marginal[seen])),
        "conditional_perplexity": float(np.mean(per_rank_conditional[seen])),
    }
    if per_rank:
        result["perplexity_per_rank"] = [None if math.isnan(x) else float(x) for x in per_rank_marginal]
        result["conditional_perplexity_per_rank"] = [
            None if math.isnan(x) else float(x) for x in per_rank_conditional
        ]
    return result

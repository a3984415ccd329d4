"""Fitting click models to click logs: EM, counting estimators and gradient descent.

Parameters live in *tables*: document-level parameters (attraction,
satisfaction, relevance) have one row per (query, document) pair plus a final
row used for unseen pairs (the prior); rank-level parameters have ``[K]`` or
``[K, K]`` entries, session-level ones are scalars.

* :func:`fit_em` - expectation-maximisation for every model. The M-step is the
  closed-form ratio of expected counts. For PBM and UBM the E-step runs on
  aggregated (document, rank, previous-click) cells; for the cascade family the
  expected counts are the gradient of the exact log-likelihood with respect to
  ``log p`` and ``log(1 - p)`` (Fisher's identity), so they are exact too.
* :func:`fit_counting` - the closed-form counting estimators of Cascade, SDBN
  and DCM (Chuklin et al. 2015, ch. 4).
* :func:`fit_gradient` - maximum likelihood with optax for every model, with
  tables or a feature-based attraction network (``flax.nnx``).

All of them take a re-iterable source of :class:`SessionBatch` (a list, or a
:class:`LogSource` that streams a Parquet log on every pass).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Iterable, Iterator, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ._base import DOCUMENT, RANK, RANK_RANK, SESSION, ClickModel
from .counts import aggregate_cells_from_arrays
from .evaluation import evaluate
from .logs import ClickLogBatch, DocumentIndex, iter_click_log
from .models import CLICK_MODELS


class SessionBatch(NamedTuple):
    """Sessions ready for jit: ``doc_index`` ``[B, K]`` int32 (-1 = unseen or
    padding), ``clicks`` and ``mask`` ``[B, K]`` bool, optional ``features``
    ``[B, K, F]`` float32."""

    doc_index: jax.Array
    clicks: jax.Array
    mask: jax.Array
    features: jax.Array | None = None


def session_batch(batch: ClickLogBatch, documents: DocumentIndex, features: np.ndarray | None = None) -> SessionBatch:
    mask = batch.mask & batch.row_valid[:, None]
    doc_index = documents.lookup(batch.query_id, batch.doc_ids, mask)
    return SessionBatch(
        jnp.asarray(doc_index), jnp.asarray(batch.clicks & mask), jnp.asarray(mask),
        None if features is None else jnp.asarray(features),
    )


class LogSource:
    """Re-iterable stream of :class:`SessionBatch` read from a Parquet click log.

    Each iteration re-reads the log, so memory stays at one batch.
    ``keep`` optionally selects sessions (``session_id [B] -> bool [B]``),
    e.g. a train/held-out split. ``cells``: the source's cell counts
    (:class:`~click_models.counts.ClickCounts`) when an engine counted them
    already; cell EM then skips its counting pass.
    """

    def __init__(self, path, documents: DocumentIndex, batch_size: int = 65_536, list_size: int | None = None,
                 keep: Callable[[np.ndarray], np.ndarray] | None = None):
        self.path, self.documents, self.batch_size = path, documents, batch_size
        self.list_size, self.keep = list_size, keep
        self.cells = None

    def __iter__(self) -> Iterator[SessionBatch]:
        for batch in iter_click_log(self.path, self.batch_size, self.list_size, columns=()):
            if self.keep is not None:
                batch.row_valid = batch.row_valid & self.keep(batch.session_id)
            yield session_batch(batch, self.documents)


def held_out_split(session_id: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Deterministic membership of sessions in a held-out set (hash of the id)."""
    x = (np.asarray(session_id, np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)) * np.uint64(
        0xBF58476D1CE4E5B9
    )
    x ^= x >> np.uint64(31)
    return (x % np.uint64(1_000_000)).astype(np.float64) / 1e6 < fraction


def counting_models() -> list[str]:
    """The click models with a closed-form counting estimator."""
    return [name for name, cls in CLICK_MODELS.items() if cls.counting_rule is not None]


def fitting_methods(model) -> list[str]:
    """The fitting methods of a click model (name or class): em, counting (where it exists), gradient."""
    cls = CLICK_MODELS.resolve(model)
    return ["em", *(["counting"] if cls.counting_rule is not None else []), "gradient"]


# ---------------------------------------------------------------------- tables
def parameter_shapes(model: "str | type[ClickModel]", num_documents: int, list_size: int) -> dict[str, tuple[int, ...]]:
    kinds = CLICK_MODELS.resolve(model).parameter_kinds
    shape_of = {DOCUMENT: (num_documents + 1,), RANK: (list_size,), RANK_RANK: (list_size, list_size), SESSION: ()}
    return {name: shape_of[kind] for name, kind in kinds.items()}


def initial_tables(model: "str | type[ClickModel]", num_documents: int, list_size: int) -> dict[str, np.ndarray]:
    """Starting values: 0.5 for document and session parameters, 0.9 for
    examination, 0.5 for DCM's continuation, (0.9, 0.1) for the trust-bias noise."""
    start = {"examination": 0.9, "epsilon_pos": 0.9, "epsilon_neg": 0.1}
    return {
        name: np.full(shape, start.get(name, 0.5))
        for name, shape in parameter_shapes(model, num_documents, list_size).items()
    }


def _gather(table: jax.Array, kind: str, doc_index: jax.Array) -> jax.Array:
    if kind == DOCUMENT:
        return table[doc_index]  # -1 wraps to the prior row
    return table


def assemble(model: "str | type[ClickModel]", tables: dict, batch: SessionBatch) -> ClickModel:
    """The click model of a batch from probability tables."""
    lp = {n: jnp.log(jnp.asarray(t)) for n, t in tables.items()}
    lq = {n: jnp.log1p(-jnp.asarray(t)) for n, t in tables.items()}
    return assemble_log(model, lp, lq, batch)


def assemble_log(model: "str | type[ClickModel]", log_tables: dict, log_complement_tables: dict, batch: SessionBatch) -> ClickModel:
    cls = CLICK_MODELS.resolve(model)
    lp, lq = {}, {}
    for name, kind in cls.parameter_kinds.items():
        lp[name] = _gather(log_tables[name], kind, batch.doc_index)
        lq[name] = _gather(log_complement_tables[name], kind, batch.doc_index)
    return cls.from_log_probabilities(lp, lq, batch.mask)


def _table_rows(doc_index, num_documents: int) -> np.ndarray:
    """Rows of a document table for ``doc_index`` (-1, unseen or padding, is the prior row)."""
    doc = np.asarray(doc_index).astype(np.int64)
    return np.where(doc < 0, num_documents, doc)


@dataclasses.dataclass
class FitResult:
    """Fitted parameter tables and the fitting trace.

    ``tables[name]`` is ``[num_documents + 1]`` for document parameters (the
    last row is the prior used for unseen documents), ``[K]``/``[K, K]`` for
    rank parameters and a scalar for session parameters.
    """

    model: str
    tables: dict[str, np.ndarray]
    history: list[dict]
    method: str
    converged: bool = False
    predictor: Callable[[SessionBatch], ClickModel] | None = None

    def click_model(self, batch: SessionBatch) -> ClickModel:
        if self.predictor is not None:
            return self.predictor(batch)
        return assemble(self.model, {k: jnp.asarray(v, jnp.float32) for k, v in self.tables.items()}, batch)


@dataclasses.dataclass(frozen=True)
class Prior:
    """Beta pseudo-counts added in every M-step: ``p = (n1 + a) / (n + a + b)``.

    Keeps estimates strictly inside (0, 1) and shrinks rarely seen documents towards the prior mean
    ``a / (a + b)``. ``document=None`` (the default) centres the document prior on the data: in every M-step
    ``a = strength * m`` and ``b = strength * (1 - m)`` with ``m`` the parameter's mean over all documents
    (its pooled counts), so a document seen a few times moves towards the typical document rather than towards
    0.5 (Beta(1, 1), ``document=(1, 1)``, pulls attractive documents down and unattractive ones up, which costs
    held-out likelihood on sparse logs). ``rank`` is a fixed Beta for rank and session parameters.
    """

    document: tuple[float, float] | None = None
    rank: tuple[float, float] = (1.0, 1.0)
    strength: float = 5.0

    def __post_init__(self):
        pairs = [("rank", self.rank)] + ([("document", self.document)] if self.document is not None else [])
        for name, pair in pairs:
            if len(pair) != 2 or not all(np.isfinite(x) and x >= 0 for x in pair):
                raise ValueError(f"Prior: {name} must be two non-negative pseudo-counts, got {pair!r}")
        if not (np.isfinite(self.strength) and self.strength > 0):
            raise ValueError(f"Prior: strength must be a positive number, got {self.strength!r}")

    def document_counts(self, outcomes: np.ndarray, totals: np.ndarray) -> tuple[float, float]:
        """``(a, b)`` for a document parameter whose rows saw ``outcomes`` of ``totals`` (prior row last)."""
        if self.document is not None:
            return self.document
        seen = float(np.sum(totals[:-1]))
        mean = float(np.sum(outcomes[:-1])) / seen if seen > 0 else 0.5
        mean = min(max(mean, 1e-6), 1 - 1e-6)
        return self.strength * mean, self.strength * (1.0 - mean)


def default_prior(model: "str | type[ClickModel]") -> Prior:
    """The prior a fit uses unless told otherwise.

    Models with a per-rank examination (PBM, UBM, trust bias) keep Beta(1, 1) on documents: their examination
    is the propensity users want, and a stronger pull of sparse documents towards the mean attraction biases it
    where the logging policy put relevant documents high (on the built-in toy log, 100k sessions, the error of
    the normalised examination at rank 2 grows from 0.014 to 0.058 with a centred prior of strength 5). The
    other models (the cascade family) get the centred prior (:class:`Prior`, strength 5): on sparse logs a
    higher held-out likelihood in fewer EM passes (``benchmarks/vs_clax.py``).
    """
    kinds = CLICK_MODELS.resolve(model).parameter_kinds
    return Prior(document=(1.0, 1.0)) if kinds.get("examination") in (RANK, RANK_RANK) else Prior()


def _set_unseen_row(tables: dict[str, np.ndarray], model: str, counts: dict[str, np.ndarray] | None = None) -> None:
    """The prior row (unseen documents) is the impression-weighted mean of the fitted rows."""
    for name, kind in CLICK_MODELS.resolve(model).parameter_kinds.items():
        if kind != DOCUMENT or tables[name].shape[0] <= 1:
            continue
        rows = tables[name][:-1]
        if counts is not None and name in counts and counts[name][:-1].sum() > 0:
            weights = counts[name][:-1]
            tables[name][-1] = float(np.sum(rows * weights) / np.sum(weights))
        else:
            tables[name][-1] = float(rows.mean())


# ---------------------------------------------------------------------- EM: PBM / UBM on cells
def aggregate_cells(source: Iterable[SessionBatch], num_documents: int, list_size: int, by_previous_click: bool):
    """Impressions and clicks per (document, rank[, previous click rank]) cell.

    Returns ``(doc, rank, previous, impressions, clicks)`` arrays over the
    non-empty cells; one pass over the source (:mod:`click_models.counts`, the
    aggregation the propensity estimators share), or the counts the source carries.
    """
    counted = getattr(source, "cells", None)
    if counted is not None:
        return counted.doc, counted.rank, counted.previous, counted.impressions, counted.clicks

    def arrays():
        for batch in source:
            yield _table_rows(batch.doc_index, num_documents), np.asarray(batch.clicks), np.asarray(batch.mask), None

    counts = aggregate_cells_from_arrays(arrays(), num_documents, list_size, by_previous_click=by_previous_click)
    return counts.doc, counts.rank, counts.previous, counts.impressions, counts.clicks


def _has_converged(history: list[dict], tolerance: float, log_likelihood_tolerance: float) -> bool:
    """No parameter moved more than ``tolerance``, or the log-likelihood rose by
    less than ``log_likelihood_tolerance`` relative (EM crawling along a ridge)."""
    if history[-1]["max_change"] < tolerance:
        return True
    if len(history) < 2:
        return False
    previous, current = history[-2]["log_likelihood"], history[-1]["log_likelihood"]
    return abs(current - previous) <= log_likelihood_tolerance * max(abs(current), 1.0)


def _em_cells(model, cells, num_documents, list_size, prior: Prior, max_iterations, tolerance, log_likelihood_tolerance, init):
    doc, rank, previous, n, c = cells
    K = list_size
    by_previous_click = CLICK_MODELS.resolve(model).cell_em == "previous_click"
    R = K if by_previous_click else 1
    exam_cell = rank * R + previous
    attraction = np.full(num_documents + 1, 0.5) if init is None else np.array(init["attraction"], float)
    if init is None:
        examination = np.full(K * R, 0.9)
    else:
        examination = np.array(init["examination"], float).reshape(K * R)
    a_rank, b_rank = prior.rank
    exam_n = np.bincount(exam_cell, weights=n, minlength=K * R)
    doc_n = np.bincount(doc, weights=n, minlength=num_documents + 1)
    history, converged = [], False
    skip = n - c
    for iteration in range(max_iterations):
        alpha, theta = attraction[doc], examination[exam_cell]
        not_clicked = 1.0 - alpha * theta
        log_likelihood = float(np.sum(c * np.log(alpha * theta) + skip * np.log(not_clicked)))
        attracted = c + skip * alpha * (1.0 - theta) / not_clicked
        examined = c + skip * theta * (1.0 - alpha) / not_clicked
        attracted_n = np.bincount(doc, weights=attracted, minlength=num_documents + 1)
        a_doc, b_doc = prior.document_counts(attracted_n, doc_n)
        new_attraction = (attracted_n + a_doc) / (doc_n + a_doc + b_doc)
        new_examination = (np.bincount(exam_cell, weights=examined, minlength=K * R) + a_rank) / (
            exam_n + a_rank + b_rank
        )
        change = max(np.abs(new_attraction[:-1] - attraction[:-1]).max(), np.abs(new_examination - examination).max())
        attraction, examination = new_attraction, new_examination
        history.append({"iteration": iteration, "log_likelihood": log_likelihood, "max_change": float(change)})
        if _has_converged(history, tolerance, log_likelihood_tolerance):
            converged = True
            break
    tables = {"attraction": attraction, "examination": examination.reshape((K, K) if R > 1 else (K,))}
    if by_previous_click:  # cells never observed (previous click at or below rank) keep the prior mean
        unseen = exam_n.reshape(K, K) == 0
        tables["examination"][unseen] = a_rank / (a_rank + b_rank)
    _set_unseen_row(tables, model, {"attraction": doc_n})
    return tables, history, converged


# ---------------------------------------------------------------------- EM: generic (Fisher identity)
def _expand(kind: str, table: jax.Array, doc_index: jax.Array) -> jax.Array:
    """One copy of a parameter per session (and position), so that gradients
    come back per session and are summed on the host in float64."""
    B, K = doc_index.shape
    if kind == DOCUMENT:
        return table[doc_index]
    if kind == RANK:
        return jnp.broadcast_to(table, (B, K))
    if kind == RANK_RANK:
        return jnp.broadcast_to(table, (B, K, K))
    return jnp.broadcast_to(table, (B,))


@functools.partial(jax.jit, static_argnames=("model",))
def _expected_counts(model: "str | type[ClickModel]", log_tables, log_complements, batch: SessionBatch):
    """E-step of one batch: by Fisher's identity the gradient of log P(C) with
    respect to ``log p`` (``log(1-p)``) is the expected number of times each
    parameter's outcome (its complement) occurred, per session and position."""
    cls = CLICK_MODELS.resolve(model)
    kinds = cls.parameter_kinds
    lp = {n: _expand(kinds[n], log_tables[n], batch.doc_index) for n in kinds}
    lq = {n: _expand(kinds[n], log_complements[n], batch.doc_index) for n in kinds}

    def total(lp, lq):
        per_session = cls.from_log_probabilities(lp, lq, batch.mask).log_prob(batch.clicks)
        return jnp.sum(per_session), per_session

    (_, per_session), (used, unused) = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(lp, lq)
    return per_session, used, unused


@functools.partial(jax.jit, static_argnames=("model", "num_rows"))
def _expected_count_totals(model: "str | type[ClickModel]", log_tables, log_complements, batch: SessionBatch,
                           num_rows: int):
    """:func:`_expected_counts` with the document parameters' counts summed per table row on the device
    (``num_rows`` rows, the last the prior row that unseen and padded positions fall into). Each count, in
    [0, 1], is rounded to a multiple of 2^-24 and summed as integers in two int32 halves: exact and
    associative, so the totals do not depend on how the sessions are batched (a float32 scatter-add would
    lose digits on documents seen thousands of times). Rank and session parameters stay per session: their
    sums run over every session and are taken in float64 on the host."""
    per_session, used, unused = _expected_counts(model, log_tables, log_complements, batch)
    kinds = CLICK_MODELS.resolve(model).parameter_kinds
    rows = jnp.where(batch.doc_index < 0, num_rows - 1, batch.doc_index).ravel()

    def reduce(kind, values):
        if kind != DOCUMENT:
            return values
        fixed = jnp.round(values.ravel() * _FIXED_POINT_SCALE).astype(jnp.int32)
        high = jax.ops.segment_sum(fixed >> _FIXED_POINT_SPLIT, rows, num_segments=num_rows)
        low = jax.ops.segment_sum(fixed & ((1 << _FIXED_POINT_SPLIT) - 1), rows, num_segments=num_rows)
        return high, low

    return (per_session, {k: reduce(kinds[k], used[k]) for k in kinds},
            {k: reduce(kinds[k], unused[k]) for k in kinds})


#: document counts are summed on the device as integers: multiples of 2^-24, split at bit 12 (each half-sum
#: stays below 2^31 for fewer than 2^19 sessions per batch)
_FIXED_POINT_SCALE = float(1 << 24)
_FIXED_POINT_SPLIT = 12


_MAX_FIXED_POINT_SESSIONS = 1 << 18


def _at_most(source: Iterable[SessionBatch], size: int) -> Iterator[SessionBatch]:
    """The batches of ``source``, those of more than ``size`` sessions cut into slices."""
    for batch in source:
        if batch.doc_index.shape[0] <= size:
            yield batch
            continue
        for start in range(0, batch.doc_index.shape[0], size):
            yield SessionBatch(*(None if x is None else x[start:start + size] for x in batch))


def _host_total(kind: str, values) -> np.ndarray:
    if kind == DOCUMENT:  # (high, low) integer sums per row
        high, low = (np.asarray(v, np.int64) for v in values)
        return ((high << _FIXED_POINT_SPLIT) + low).astype(np.float64) / _FIXED_POINT_SCALE
    values = np.asarray(values, np.float64)
    return values.sum(axis=0) if kind in (RANK, RANK_RANK) else values.sum()


def _em_generic(model, source, num_documents, list_size, prior: Prior, max_iterations, tolerance, log_likelihood_tolerance, init, callback, accelerate: bool = True):
    """EM over sessions, one pass over the source per EM step, accelerated by SQUAREM (``accelerate``).

    SQUAREM (Varadhan and Roland, Scand. J. Statist. 2008, scheme S3): from two EM steps ``θ1 = F(θ0)`` and
    ``θ2 = F(θ1)`` it extrapolates ``θ' = θ0 - 2α r + α² v`` (``r = θ1 - θ0``, ``v = θ2 - 2θ1 + θ0``,
    ``α = -|r| / |v|``, at most -1), here on the logits of the parameters so that they stay in (0, 1), and takes
    one EM step from ``θ'``. An extrapolation that lowers the likelihood below ``θ1``'s is rejected and the
    cycle goes on from ``θ2``, so the likelihoods in the history never decrease. ``max_iterations`` caps the
    passes over the source; each history entry records the passes made so far.
    """
    kinds = CLICK_MODELS.resolve(model).parameter_kinds
    tables = initial_tables(model, num_documents, list_size) if init is None else {k: np.array(v, float) for k, v in init.items()}
    history: list[dict] = []
    passes = 0

    def step(current):
        """One EM pass from ``current``: (next tables, log-likelihood of ``current``, largest change)."""
        nonlocal passes
        passes += 1
        log_tables = {k: jnp.log(jnp.asarray(v, jnp.float32)) for k, v in current.items()}
        log_complements = {k: jnp.log1p(-jnp.asarray(v, jnp.float32)) for k, v in current.items()}
        used = {k: np.zeros_like(v) for k, v in current.items()}
        unused = {k: np.zeros_like(v) for k, v in current.items()}
        log_likelihood = 0.0

        def add(totals):
            nonlocal log_likelihood
            per_session, u, nu = totals
            log_likelihood += float(np.sum(np.asarray(per_session, np.float64)))
            for k, kind in kinds.items():
                used[k] += _host_total(kind, u[k])
                unused[k] += _host_total(kind, nu[k])

        pending = None
        for batch in _at_most(source, _MAX_FIXED_POINT_SESSIONS):  # dispatch the next, then fetch the last
            totals = _expected_count_totals(model, log_tables, log_complements, batch, num_documents + 1)
            if pending is not None:
                add(pending)
            pending = totals
        if pending is not None:
            add(pending)
        counts, new_tables = {}, {}
        for name, kind in kinds.items():
            counts[name] = used[name] + unused[name]
            a, b = prior.document_counts(used[name], counts[name]) if kind == DOCUMENT else prior.rank
            new_tables[name] = (used[name] + a) / (counts[name] + a + b)
        _set_unseen_row(new_tables, model, counts)
        change = max(float(np.abs(new_tables[n] - current[n]).max()) for n in kinds)
        return new_tables, log_likelihood, change

    def record(log_likelihood, change) -> bool:
        """Add a history entry (for the tables the pass started from); True when EM has converged."""
        history.append({"iteration": len(history), "log_likelihood": log_likelihood, "max_change": change,
                        "passes": passes})
        if callback is not None:
            callback(history[-1])
        return _has_converged(history, tolerance, log_likelihood_tolerance)

    while passes < max_iterations:
        first, log_likelihood, change = step(tables)  # θ1 = F(θ0), with L(θ0)
        if record(log_likelihood, change):
            return first, history, True
        if not accelerate or passes + 2 > max_iterations:
            tables = first
            continue
        second, log_likelihood_first, change = step(first)  # θ2 = F(θ1), with L(θ1)
        if record(log_likelihood_first, change):
            return second, history, True
        point = _squarem_point(tables, first, second)
        if point is None:
            tables = second
            continue
        after, log_likelihood_point, change = step(point)  # F(θ'), with L(θ')
        if log_likelihood_point >= log_likelihood_first:
            if record(log_likelihood_point, change):
                return after, history, True
            tables = after
        else:  # the extrapolation lost likelihood: go on from θ2 (the pass counts, the point is not kept)
            tables = second
    return tables, history, False


#: SQUAREM keeps extrapolated probabilities this far inside (0, 1)
_SQUAREM_MARGIN = 1e-7


def _squarem_point(theta0: dict, theta1: dict, theta2: dict) -> dict | None:
    """The SQUAREM (S3) extrapolation of two EM steps, on logits (None when the steps did not move)."""
    def logit(table):
        table = np.clip(table, _SQUAREM_MARGIN, 1 - _SQUAREM_MARGIN)
        return np.log(table) - np.log1p(-table)

    g0, g1, g2 = ({k: logit(v) for k, v in theta.items()} for theta in (theta0, theta1, theta2))
    r = {k: g1[k] - g0[k] for k in g0}
    v = {k: g2[k] - 2 * g1[k] + g0[k] for k in g0}
    rr, vv = sum(float(np.sum(x * x)) for x in r.values()), sum(float(np.sum(x * x)) for x in v.values())
    if not (vv > 0 and np.isfinite(vv) and np.isfinite(rr)):
        return None
    alpha = min(-np.sqrt(rr / vv), -1.0)
    return {k: np.clip(1 / (1 + np.exp(-(g0[k] - 2 * alpha * r[k] + alpha**2 * v[k]))),
                       _SQUAREM_MARGIN, 1 - _SQUAREM_MARGIN) for k in g0}


def fit_em(
    model: "str | type[ClickModel]",
    source: Iterable[SessionBatch],
    num_documents: int,
    list_size: int,
    *,
    prior: Prior | None = None,
    max_iterations: int = 200,
    tolerance: float = 1e-5,
    log_likelihood_tolerance: float | None = None,
    init: dict | None = None,
    callback: Callable[[dict], None] | None = None,
    accelerate: bool = True,
) -> FitResult:
    """Fit ``model`` by expectation-maximisation.

    Args:
      model: a click-model class or its name in :data:`click_models.CLICK_MODELS`.
      source: re-iterable of :class:`SessionBatch`; one pass per iteration
        (PBM and UBM need a single pass: their E-step runs on aggregated cells).
      num_documents: size of the document tables (without the prior row).
      list_size: K.
      prior: Beta pseudo-counts of the M-step (default :func:`default_prior`).
      max_iterations, tolerance: stop when no parameter moves more than ``tolerance``
        or the log-likelihood improves by less than ``log_likelihood_tolerance`` (relative).
        For the models fitted over sessions, ``max_iterations`` caps the passes over the source.
      log_likelihood_tolerance: default 1e-9 for PBM and UBM (EM on aggregated cells, cheap), 1e-6 for the
        models fitted over sessions, where each iteration reads the whole log: on 800,000 DBN sessions
        (``benchmarks/vs_clax.py``) the passes after that point move the held-out log-likelihood per
        document by less than 1e-6.
      accelerate: SQUAREM for the models fitted over sessions (Cascade, DBN, DCM, CCM, ...): fewer passes to the
        same fixed point, the likelihood never decreasing (Varadhan and Roland, 2008).

    Returns:
      a :class:`FitResult`; ``history`` holds the training log-likelihood per iteration.

    References: Dempster, Laird and Rubin (1977); Chuklin et al. (2015), ch. 4.
    """
    cls = CLICK_MODELS.resolve(model)
    model = cls.name
    prior = default_prior(cls) if prior is None else prior
    if log_likelihood_tolerance is None:
        log_likelihood_tolerance = 1e-9 if cls.cell_em is not None else 1e-6
    if cls.cell_em is not None:
        cells = aggregate_cells(source, num_documents, list_size, by_previous_click=cls.cell_em == "previous_click")
        tables, history, converged = _em_cells(
            model, cells, num_documents, list_size, prior, max_iterations, tolerance, log_likelihood_tolerance, init
        )
        if callback is not None:
            for entry in history:
                callback(entry)
    else:
        tables, history, converged = _em_generic(
            model, source, num_documents, list_size, prior, max_iterations, tolerance, log_likelihood_tolerance,
            init, callback, accelerate,
        )
    return FitResult(model, tables, history, "em", converged)


def fit_em_counts(model, counts, *, prior: Prior | None = None, max_iterations: int = 200, tolerance: float = 1e-5,
                  log_likelihood_tolerance: float = 1e-9) -> FitResult:
    """:func:`fit_em` of a cell model (PBM, UBM) on :class:`~click_models.counts.ClickCounts` already aggregated."""
    cls = CLICK_MODELS.resolve(model)
    if cls.cell_em is None:
        raise ValueError(f"{cls.name} is not fitted on cells; use fit_em with sessions")
    prior = default_prior(cls) if prior is None else prior
    cells = (counts.doc, counts.rank, counts.previous, counts.impressions, counts.clicks)
    tables, history, converged = _em_cells(cls.name, cells, counts.num_documents, counts.list_size, prior,
                                           max_iterations, tolerance, log_likelihood_tolerance, None)
    return FitResult(cls.name, tables, history, "em", converged)


# ---------------------------------------------------------------------- counting
def fit_counting(
    model: "str | type[ClickModel]", source: Iterable[SessionBatch], num_documents: int, list_size: int, *, prior: Prior | None = None
) -> FitResult:
    """Closed-form counting estimators (Chuklin et al. 2015, sec. 4.1-4.2).

    * Cascade (exact MLE): a document is examined at or above the first click
      (everywhere when there is none); ``attraction = clicks / examinations``.
      Clicks below the first one contradict the model and are ignored.
    * SDBN: documents at or above the last click are examined (everywhere in a
      session without clicks); ``attraction = clicks / examinations``,
      ``satisfaction = last clicks / clicks``.
    * DCM: attraction as SDBN; ``continuation[k] = 1 - last clicks at k / clicks at k``.

    The SDBN and DCM estimators assume the user stops at the last click; use
    :func:`fit_em` for the exact maximum-likelihood fit.
    """
    cls = CLICK_MODELS.resolve(model)
    prior = default_prior(cls) if prior is None else prior
    model = cls.name
    if cls.counting_rule is None:
        raise ValueError(f"counting estimators exist for {', '.join(counting_models())}, not {model!r}")
    kinds = cls.parameter_kinds
    K = list_size
    size = num_documents + 1
    examined_n = np.zeros(size)
    clicked_n = np.zeros(size)
    last_n = np.zeros(size)
    rank_clicks = np.zeros(K)
    rank_last = np.zeros(K)
    for batch in source:
        doc = _table_rows(batch.doc_index, num_documents)
        mask = np.asarray(batch.mask)
        clicks = np.asarray(batch.clicks) & mask
        ranks = np.arange(K)
        any_click = clicks.any(axis=1, keepdims=True)
        if cls.counting_rule == "first_click":
            first = np.where(any_click, np.argmax(clicks, axis=1)[:, None], K)
            examined = mask & (ranks <= first)
            clicks = clicks & (ranks == first)
            last = np.zeros_like(clicks)
        else:
            last_rank = np.where(any_click, K - 1 - np.argmax(clicks[:, ::-1], axis=1)[:, None], K)
            examined = mask & (ranks <= last_rank)
            last = clicks & (ranks == last_rank)
        examined_n += np.bincount(doc[examined], minlength=size)
        clicked_n += np.bincount(doc[clicks], minlength=size)
        last_n += np.bincount(doc[last], minlength=size)
        rank_clicks += clicks.sum(axis=0)
        rank_last += last.sum(axis=0)
    ratio = lambda num, den, a, b: np.divide(  # noqa: E731  (0/0 -> prior mean, or 0.5 without prior)
        num + a, den + a + b, out=np.full(np.shape(den), a / (a + b) if a + b > 0 else 0.5), where=den + a + b > 0
    )
    tables = {"attraction": ratio(clicked_n, examined_n, *prior.document_counts(clicked_n, examined_n))}
    if kinds.get("satisfaction") == DOCUMENT:
        tables["satisfaction"] = ratio(last_n, clicked_n, *prior.document_counts(last_n, clicked_n))
    if kinds.get("continuation") == RANK:
        ar, br = prior.rank
        tables["continuation"] = ratio(rank_clicks - rank_last, rank_clicks, ar, br)
    _set_unseen_row(tables, model, {"attraction": examined_n, "satisfaction": clicked_n})
    return FitResult(model, tables, [], "counting", True)


# ---------------------------------------------------------------------- gradient
class AttractionNetwork(nnx.Module):
    """MLP from query-document features ``[..., K, F]`` to attraction logits ``[..., K]``."""

    def __init__(self, num_features: int, hidden: Sequence[int] = (32,), *, rngs: nnx.Rngs):
        sizes = [num_features, *hidden]
        self.layers = nnx.List([nnx.Linear(i, o, rngs=rngs) for i, o in zip(sizes[:-1], sizes[1:])])
        self.out = nnx.Linear(sizes[-1], 1, rngs=rngs)

    def __call__(self, features: jax.Array) -> jax.Array:
        x = features
        for layer in self.layers:
            x = jax.nn.relu(layer(x))
        return self.out(x)[..., 0]


class ClickModelParameters(nnx.Module):
    """Trainable logits of a click model's tables (``flax.nnx``).

    With ``attraction_network`` the document attraction (relevance for trust
    bias) comes from features instead of a table, so unseen documents get
    their own estimate.
    """

    def __init__(self, model: "str | type[ClickModel]", num_documents: int, list_size: int, *, init: dict | None = None,
                 attraction_network: nnx.Module | None = None):
        self.model = CLICK_MODELS.resolve(model).name
        tables = init if init is not None else initial_tables(model, num_documents, list_size)
        self.names = tuple(CLICK_MODELS.resolve(model).parameter_kinds)
        for name in self.names:
            p = np.clip(np.asarray(tables[name], np.float64), 1e-4, 1 - 1e-4)
            setattr(self, f"{name}_logit", nnx.Param(jnp.asarray(np.log(p) - np.log1p(-p), jnp.float32)))
        self.attraction_network = attraction_network

    def _document_parameter(self) -> str:
        return CLICK_MODELS.resolve(self.model).relevance_parameter

    def __call__(self, batch: SessionBatch) -> ClickModel:
        kinds = CLICK_MODELS.resolve(self.model).parameter_kinds
        logits = {}
        for name in self.names:
            table = getattr(self, f"{name}_logit")[...]
            logits[name] = _gather(table, kinds[name], batch.doc_index)
        if self.attraction_network is not None:
            if batch.features is None:
                raise ValueError("this click model scores features: the batch has none")
            logits[self._document_parameter()] = self.attraction_network(batch.features)
        return CLICK_MODELS.resolve(self.model).from_logits(mask=batch.mask, **logits)

    def tables(self) -> dict[str, np.ndarray]:
        return {n: np.asarray(jax.nn.sigmoid(getattr(self, f"{n}_logit")[...]), np.float64) for n in self.names}


def _negative_log_likelihood(params: ClickModelParameters, batch: SessionBatch) -> jax.Array:
    sessions = jnp.maximum(jnp.sum(jnp.any(batch.mask, axis=-1)), 1)
    return -jnp.sum(params(batch).log_prob(batch.clicks)) / sessions


@nnx.jit
def _train_step(params: ClickModelParameters, optimizer: nnx.Optimizer, batch: SessionBatch):
    loss, grads = nnx.value_and_grad(_negative_log_likelihood)(params, batch)
    optimizer.update(params, grads)
    return loss


def fit_gradient(
    model: "str | type[ClickModel]",
    source: Iterable[SessionBatch],
    num_documents: int,
    list_size: int,
    *,
    validation: Iterable[SessionBatch] | None = None,
    optimizer: optax.GradientTransformation | None = None,
    epochs: int = 200,
    patience: int = 10,
    init: dict | None = None,
    attraction_network: nnx.Module | None = None,
    callback: Callable[[dict], None] | None = None,
) -> FitResult:
    """Maximum-likelihood fit by gradient descent with optax (default Adam, lr 0.1).

    Every epoch is a pass over ``source``; with ``validation`` the held-out
    log-likelihood is measured after each epoch, the best parameters are kept
    and training stops after ``patience`` epochs without improvement.
    """
    model = CLICK_MODELS.resolve(model).name
    params = ClickModelParameters(model, num_documents, list_size, init=init, attraction_network=attraction_network)
    opt = nnx.Optimizer(params, optimizer or optax.adam(0.1), wrt=nnx.Param)
    history, best, best_value, stale = [], None, -math.inf, 0
    for epoch in range(epochs):
        losses = [float(_train_step(params, opt, batch)) for batch in source]
        entry = {"epoch": epoch, "train_nll": float(np.mean(losses)) if losses else float("nan")}
        if validation is not None:
            metrics = evaluate(lambda b: params(b), validation, per_rank=False)
            entry["validation_log_likelihood"] = metrics["log_likelihood"]
            if metrics["log_likelihood"] > best_value + 1e-7:
                best_value, best, stale = metrics["log_likelihood"], nnx.state(params, nnx.Param), 0
            else:
                stale += 1
        history.append(entry)
        if callback is not None:
            callback(entry)
        if validation is not None and stale >= patience:
            break
    if best is not None:
        nnx.update(params, best)
    tables = params.tables()
    _set_unseen_row(tables, model)
    predictor = None
    if attraction_network is not None:
        predictor = nnx.jit(lambda p, b: p(b))
        predictor = (lambda fn, p: (lambda batch: fn(p, batch)))(predictor, params)
    return FitResult(model, tables, history, "gradient", stale >= patience, predictor)

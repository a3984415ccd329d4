"""Toy click logs with known click-model parameters.

Each of ``num_queries`` queries has ``docs_per_query`` documents with random
document parameters; every session draws a query uniformly and shows its
documents in a random order (so that per-rank and per-document parameters are
both identifiable), then the click model clicks. Used by the default
``ultr fit`` job, the tests and the benchmarks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pathlib import Path

from click_models import CLICK_MODELS
from click_models._base import DOCUMENT, RANK, RANK_RANK
from click_models.fitting import SessionBatch, assemble
from click_models.logs import ClickLogBatch, atomic_write_json, atomic_write_parquet, sessions_to_table

# Examination per rank used in the DLA paper's simulation (Ai et al., SIGIR 2018).
DLA_EXAMINATION = np.array([0.68, 0.61, 0.48, 0.34, 0.28, 0.20, 0.11, 0.10, 0.08, 0.06])


def default_examination(list_size: int) -> np.ndarray:
    if list_size <= len(DLA_EXAMINATION):
        return DLA_EXAMINATION[:list_size].copy()
    return 1.0 / np.arange(1, list_size + 1)


def true_parameters(model: str, num_queries: int, docs_per_query: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Known parameter tables for a toy log; document tables have a final prior row."""
    rng = np.random.default_rng(seed)
    n, K = num_queries * docs_per_query, docs_per_query
    tables = {}
    for name, kind in CLICK_MODELS.resolve(model).parameter_kinds.items():
        if kind == DOCUMENT:
            low, high = (0.05, 0.95) if name != "satisfaction" else (0.2, 0.8)
            table = rng.uniform(low, high, n + 1)
            table[-1] = table[:-1].mean()
        elif kind == RANK:
            table = {
                "examination": default_examination(K),
                "continuation": np.linspace(0.9, 0.5, K),
                "epsilon_pos": np.linspace(1.0, 0.8, K),
                "epsilon_neg": np.linspace(0.35, 0.05, K),
            }[name]
        elif kind == RANK_RANK:
            # examination decays with distance to the previous click
            ranks = np.arange(1, K + 1)[:, None]
            previous = np.arange(K)[None, :]
            table = np.clip(0.95 * 0.8 ** (ranks - previous - 1) * np.where(previous == 0, 0.9, 1.0), 0.02, 0.98)
        else:
            table = np.asarray({"continuation": 0.9, "tau1": 0.8, "tau2": 0.5, "tau3": 0.9}[name])
        tables[name] = np.asarray(table, np.float64)
    return tables


def simulate_toy_log(
    model: str,
    tables: dict[str, np.ndarray],
    num_queries: int,
    docs_per_query: int,
    num_sessions: int,
    seed: int = 0,
    chunk_size: int = 1_000_000,
) -> ClickLogBatch:
    """Sample ``num_sessions`` sessions; documents of query q have doc ids
    ``0..docs_per_query-1`` and dense index ``q * docs_per_query + d``."""
    K = docs_per_query
    key = jax.random.key(seed)
    jtables = {k: jnp.asarray(v, jnp.float32) for k, v in tables.items()}

    @jax.jit
    def chunk(key):
        key_query, key_order, key_click = jax.random.split(key, 3)
        query = jax.random.randint(key_query, (chunk_size,), 0, num_queries)
        order = jnp.argsort(jax.random.uniform(key_order, (chunk_size, K)), axis=-1).astype(jnp.int32)
        doc_index = query[:, None] * K + order
        mask = jnp.ones((chunk_size, K), bool)
        batch = SessionBatch(doc_index, jnp.zeros((chunk_size, K), bool), mask)
        clicks = assemble(model, jtables, batch).sample(key_click)
        return query, order, clicks

    parts = []
    for start in range(0, num_sessions, chunk_size):
        query, order, clicks = chunk(jax.random.fold_in(key, start))
        take = min(chunk_size, num_sessions - start)
        parts.append((np.asarray(query[:take]), np.asarray(order[:take]), np.asarray(clicks[:take])))
    query = np.concatenate([p[0] for p in parts]).astype(np.int64)
    order = np.concatenate([p[1] for p in parts]).astype(np.int64)
    clicks = np.concatenate([p[2] for p in parts])
    return ClickLogBatch(
        session_id=np.arange(num_sessions, dtype=np.int64),
        query_id=query,
        doc_ids=order,
        clicks=clicks,
        mask=np.ones_like(clicks),
        row_valid=np.ones(num_sessions, bool),
    )


def toy_session_batches(log: ClickLogBatch, docs_per_query: int, batch_size: int | None = None) -> list[SessionBatch]:
    """Split a toy log into :class:`SessionBatch` es with the known dense document index."""
    doc_index = (log.query_id[:, None] * docs_per_query + log.doc_ids).astype(np.int32)
    n = len(log.session_id)
    batch_size = batch_size or n
    batches = []
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        pad = batch_size - (stop - start)
        mask = np.pad(log.mask[start:stop] & log.row_valid[start:stop, None], ((0, pad), (0, 0)))
        batches.append(
            SessionBatch(
                jnp.asarray(np.pad(doc_index[start:stop], ((0, pad), (0, 0)), constant_values=-1)),
                jnp.asarray(np.pad(log.clicks[start:stop], ((0, pad), (0, 0)))),
                jnp.asarray(mask),
            )
        )
    return batches


def write_toy_log(model, out_dir, num_sessions: int, seed: int = 0, num_queries: int = 1_000,
                  docs_per_query: int = 10) -> Path:
    """Simulate a toy log with :func:`true_parameters` into ``out_dir/part-00000.parquet``.

    The true rank and session parameters go to ``out_dir/true_params.json`` (the
    built-in log of ``ultr fit``, whose fitted parameters can be compared with them).
    """
    cls = CLICK_MODELS.resolve(model)
    truth = true_parameters(cls.name, num_queries, docs_per_query, seed=seed)
    log = simulate_toy_log(cls.name, truth, num_queries, docs_per_query, num_sessions, seed=seed + 1)
    out_dir = Path(out_dir)
    table = sessions_to_table(log.session_id, log.query_id, log.doc_ids, log.clicks, log.mask)
    atomic_write_parquet(table, out_dir / "part-00000.parquet")
    rank_params = {name: truth[name].tolist() for name, kind in cls.parameter_kinds.items() if kind != DOCUMENT}
    atomic_write_json({"model": cls.name, **rank_params}, out_dir / "true_params.json")
    return out_dir

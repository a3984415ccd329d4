"""Training data: click logs joined with dataset features, and labelled query lists.

Click logs are streamed from Parquet in chunks; each chunk's (query_id, doc_id)
pairs are mapped to rows of a feature table that stays on the device, its
sessions are shuffled (deterministically for the seed and epoch) and cut into
fixed-size mini-batches (the last one padded), so the training step compiles once.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator, NamedTuple

import jax.numpy as jnp
import numpy as np

from click_models.logs import ClickLogError, DocumentIndex, infer_list_size, iter_click_log
from simulators.datasets import RankingData


class ClickBatch(NamedTuple):
    """A mini-batch of sessions: ``rows [B, K]`` index the feature table (last row:
    padding), ``clicks``/``mask`` ``[B, K]`` bool, ``propensity [B, K]`` float32
    (examination probability per shown position, 1 where unknown).

    Candidate batches (:func:`candidate_batches`) hold every candidate of the session's query
    instead: ``propensity`` is then each document's expected examination under the logging
    policy, and ``examination`` the examination probability at the rank it was shown at in
    this session (0 for candidates it did not show)."""

    rows: np.ndarray
    clicks: np.ndarray
    mask: np.ndarray
    propensity: np.ndarray
    examination: np.ndarray | None = None


class LabelBatch(NamedTuple):
    """Labelled query lists: ``rows [B, L]``, ``labels [B, L]`` float32 (or ``[B, L, S]``: several
    statistics per document), ``mask [B, L]``."""

    rows: np.ndarray
    labels: np.ndarray
    mask: np.ndarray


def standardise(features: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``(features - mean) / scale`` as float32: ``features [N, F]``, ``mean`` and ``scale [F]`` fitted on a
    training split (:meth:`FeatureStore.fit`)."""
    return ((features - mean) / scale).astype(np.float32)


@dataclasses.dataclass
class FeatureStore:
    """Standardised features of one split with a (query_id, doc_id) -> row lookup.

    ``table`` is ``[N + 1, F]``; the last row (zeros) serves padding.
    """

    data: RankingData
    mean: np.ndarray
    scale: np.ndarray

    def __post_init__(self):
        standardised = standardise(self.data.features, self.mean, self.scale)
        self.table = np.concatenate([standardised, np.zeros((1, self.data.num_features), np.float32)])
        self.index = DocumentIndex(self.data.query_ids, self.data.doc_ids)
        self.padding_row = self.data.num_documents

    @classmethod
    def fit(cls, train: RankingData) -> "FeatureStore":
        mean = train.features.mean(axis=0)
        scale = train.features.std(axis=0)
        return cls(train, mean, np.where(scale > 0, scale, 1.0))

    def for_split(self, data: RankingData) -> "FeatureStore":
        """The same standardisation applied to another split."""
        return FeatureStore(data, self.mean, self.scale)

    def rows(self, query_id: np.ndarray, doc_ids: np.ndarray, mask: np.ndarray, where: str = "") -> np.ndarray:
        rows = self.index.lookup(query_id, doc_ids, mask)
        missing = mask & (rows < 0)
        if missing.any():
            b, k = np.argwhere(missing)[0]
            raise ClickLogError(f"{where}: document {doc_ids[b, k]} of query {query_id[b]} is not in the dataset "
                                f"split {self.data.name or ''} (are the logs simulated from this dataset?)")
        return np.where(mask, rows, self.padding_row).astype(np.int32)

    def labelled_lists(self, list_size: int | None = None) -> LabelBatch:
        padded = self.data.padded(list_size, with_features=False)
        rows = np.full(padded.mask.shape, self.padding_row, np.int32)
        query_of = np.repeat(np.arange(self.data.num_queries), self.data.list_sizes)
        slot = np.arange(self.data.num_documents) - self.data.query_offsets[query_of]
        rows[query_of, slot] = np.arange(self.data.num_documents)
        return LabelBatch(rows, padded.labels.astype(np.float32), padded.mask)


def click_batches(
    logs: str | Path,
    store: FeatureStore,
    batch_size: int,
    *,
    seed: int = 0,
    epoch: int = 0,
    chunk_size: int = 131_072,
    propensities: np.ndarray | None = None,
    list_size: int | None = None,
) -> Iterator[ClickBatch]:
    """Stream shuffled mini-batches from a click log.

    ``propensities``: examination per rank ``[K]`` for every session; ``None``
    takes the log's own ``examination`` column (the truth in simulated logs)
    when it exists, else 1.
    """
    K = list_size or infer_list_size(logs)
    if propensities is not None and len(propensities) < K:
        raise ValueError(f"the propensities cover {len(propensities)} ranks; the logs show {K}")
    rng = np.random.default_rng([seed, epoch])
    carry: list[np.ndarray] | None = None
    for chunk in iter_click_log(logs, chunk_size, K, columns=("examination",)):
        valid = chunk.row_valid & chunk.mask.any(axis=1)
        if not valid.any():
            continue
        mask = chunk.mask[valid]
        rows = store.rows(chunk.query_id[valid], chunk.doc_ids[valid], mask, str(logs))
        clicks = chunk.clicks[valid] & mask
        if propensities is not None:
            prop = np.broadcast_to(np.asarray(propensities, np.float32)[:K], mask.shape)
        elif chunk.examination is not None:
            prop = chunk.examination[valid]
        else:
            prop = np.ones(mask.shape, np.float32)
        prop = np.where(mask, prop, 1.0).astype(np.float32)
        order = rng.permutation(len(rows))
        parts = [rows[order], clicks[order], mask[order], prop[order]]
        if carry is not None:
            parts = [np.concatenate([a, b]) for a, b in zip(carry, parts)]
        full = (len(parts[0]) // batch_size) * batch_size
        for start in range(0, full, batch_size):
            yield ClickBatch(*(p[start:start + batch_size] for p in parts))
        carry = [p[full:] for p in parts] if full < len(parts[0]) else None
    if carry is not None and len(carry[0]):
        pad = batch_size - len(carry[0])
        yield ClickBatch(
            np.concatenate([carry[0], np.full((pad, K), store.padding_row, np.int32)]),
            np.concatenate([carry[1], np.zeros((pad, K), bool)]),
            np.concatenate([carry[2], np.zeros((pad, K), bool)]),
            np.concatenate([carry[3], np.ones((pad, K), np.float32)]),
        )


def candidate_batches(batches: Iterator[ClickBatch], store: FeatureStore,
                      document_propensities: np.ndarray | None = None) -> Iterator[ClickBatch]:
    """Each session's batch row widened to every candidate document of its query ``[B, L]``.

    The clicks land on the shown documents' slots, unshown candidates count as not clicked, each
    slot carries its document's propensity (``document_propensities [N]``, default 1), and
    ``examination`` the session's examination probability at the slot's shown rank (the session
    batch's ``propensity``; 0 where not shown). A listwise loss over the whole candidate set is linear
    in the weighted clicks, which is what makes policy-aware IPS unbiased (Oosterhuis and de Rijke,
    SIGIR 2020).
    """
    lists = store.labelled_lists()
    L = lists.rows.shape[1]
    data = store.data
    query_of_row = np.append(np.repeat(np.arange(data.num_queries), data.list_sizes), -1)
    slot_of_row = np.append(np.arange(data.num_documents) - data.query_offsets[query_of_row[:-1]], 0)
    if document_propensities is None:
        document_propensities = np.ones(data.num_documents)
    propensity_of_row = np.append(np.asarray(document_propensities, np.float32), 1.0)
    for batch in batches:
        B = len(batch.rows)
        first_shown = np.argmax(batch.mask, axis=1)  # a session need not show rank 1
        session_query = query_of_row[batch.rows[np.arange(B), first_shown]]  # -1: a padding session
        valid = session_query >= 0
        query = np.where(valid, session_query, 0)
        rows = np.where(valid[:, None], lists.rows[query], store.padding_row).astype(np.int32)
        mask = lists.mask[query] & valid[:, None]
        clicks = np.zeros((B, L), bool)
        examination = np.zeros((B, L), np.float32)
        b, k = np.nonzero(batch.mask & valid[:, None])
        slots = slot_of_row[batch.rows[b, k]]
        clicks[b, slots] = batch.clicks[b, k]
        examination[b, slots] = batch.propensity[b, k]
        yield ClickBatch(rows, clicks, mask, np.where(mask, propensity_of_row[rows], 1.0).astype(np.float32),
                         examination)


def label_batches(lists: LabelBatch, batch_size: int, seed: int = 0, epoch: int = 0) -> Iterator[LabelBatch]:
    """Shuffled fixed-size batches of labelled query lists (for the full-information skyline)."""
    rng = np.random.default_rng([seed, epoch, 7])
    order = rng.permutation(len(lists.rows))
    for start in range(0, len(order), batch_size):
        take = order[start:start + batch_size]
        pad = batch_size - len(take)
        rows, labels, mask = lists.rows[take], lists.labels[take], lists.mask[take]
        if pad:
            rows = np.concatenate([rows, np.full((pad, rows.shape[1]), rows.max(), np.int32)])
            labels = np.concatenate([labels, np.zeros((pad,) + labels.shape[1:], np.float32)])
            mask = np.concatenate([mask, np.zeros((pad, mask.shape[1]), bool)])
        yield LabelBatch(rows, labels, mask)


def to_device(batch):
    return type(batch)(*(None if x is None else jnp.asarray(x) for x in batch))

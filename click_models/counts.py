"""Impressions and clicks per (document, rank) cell: the one aggregation of a click log.

Click-model fitting by EM on cells (PBM, UBM) and the propensity estimators of
:mod:`ultr.estimators` are functions of these counts; reading the log stays at
the edge (:meth:`ClickCounts.from_log`). A cell is a (document, rank) pair,
optionally split by the rank of the previous click (UBM) and by the session's
intervention code (RandTop-k, swap).

>>> import numpy as np
>>> doc = np.array([[0, 1], [1, 0]])
>>> clicks = np.array([[True, False], [True, True]])
>>> counts = aggregate_cells_from_arrays([(doc, clicks, np.ones((2, 2), bool), None)], 2, 2)
>>> counts.document_matrices()[1].tolist()  # clicks [document, rank]
[[1.0, 1.0], [1.0, 0.0]]
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

import numpy as np

from .engine import distributes
from .logs import ClickLogBatch, DocumentIndex, iter_click_log

#: above this many cells the counts are accumulated sparsely (unique keys per batch)
DENSE_CELL_LIMIT = 50_000_000


@dataclasses.dataclass
class ClickCounts:
    """Counts over the non-empty cells, one entry per cell.

    Attributes:
      doc: ``[N]`` document row (``num_documents`` is the row of unseen documents).
      rank: ``[N]`` 0-based display rank.
      previous: ``[N]`` 1-based rank of the last click above (0: none), all 0 unless split by it.
      intervention: ``[N]`` the sessions' intervention code, all 0 unless split by it.
      impressions, clicks: ``[N]`` float64.
      num_documents, list_size: table sizes.
      sessions: non-empty sessions counted, per intervention code.
      documents: the (query_id, doc_id) of each document row, when built from a log.
    """

    doc: np.ndarray
    rank: np.ndarray
    previous: np.ndarray
    intervention: np.ndarray
    impressions: np.ndarray
    clicks: np.ndarray
    num_documents: int
    list_size: int
    sessions: dict[int, int]
    documents: DocumentIndex | None = None

    @property
    def num_sessions(self) -> int:
        return int(sum(self.sessions.values()))

    @property
    def total_clicks(self) -> float:
        return float(self.clicks.sum())

    # ------------------------------------------------------------------ views
    def select(self, keep: np.ndarray) -> "ClickCounts":
        """The cells where ``keep`` ``[N]`` is True."""
        return dataclasses.replace(self, doc=self.doc[keep], rank=self.rank[keep], previous=self.previous[keep],
                                   intervention=self.intervention[keep], impressions=self.impressions[keep],
                                   clicks=self.clicks[keep])

    def per_rank(self, impressions: np.ndarray | None = None, clicks: np.ndarray | None = None):
        """Impressions and clicks summed per rank ``[K]`` (optionally of replacement count arrays ``[..., N]``)."""
        impressions = self.impressions if impressions is None else impressions
        clicks = self.clicks if clicks is None else clicks
        onehot = np.zeros((len(self.rank), self.list_size))
        onehot[np.arange(len(self.rank)), self.rank] = 1.0
        return impressions @ onehot, clicks @ onehot

    def document_matrices(self) -> tuple[np.ndarray, np.ndarray]:
        """Impressions and clicks ``[documents, K]`` per document row and rank (unseen row excluded)."""
        n = np.zeros((self.num_documents, self.list_size))
        c = np.zeros_like(n)
        seen = self.doc < self.num_documents
        np.add.at(n, (self.doc[seen], self.rank[seen]), self.impressions[seen])
        np.add.at(c, (self.doc[seen], self.rank[seen]), self.clicks[seen])
        used = n.sum(axis=1) > 0
        return n[used], c[used]

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_batches(cls, batches: Iterable[ClickLogBatch], list_size: int, documents: DocumentIndex, *,
                     by_intervention: bool = False, by_previous_click: bool = False) -> "ClickCounts":
        """Counts of click-log batches, documents numbered by ``documents`` (unknown pairs: the unseen row)."""

        def arrays():
            for batch in batches:
                mask = batch.mask & batch.row_valid[:, None]
                doc = documents.lookup(batch.query_id, batch.doc_ids, mask)
                doc = np.where(doc < 0, documents.size, doc)
                yield doc, batch.clicks & mask, mask, batch.intervention if by_intervention else None

        counts = aggregate_cells_from_arrays(arrays(), documents.size, list_size, by_previous_click=by_previous_click,
                                             by_intervention=by_intervention)
        counts.documents = documents
        return counts

    @classmethod
    def from_log(cls, path, *, by_intervention: bool = False, batch_size: int = 65_536,
                 engine=None) -> "ClickCounts":
        """Read a Parquet click log and count it (documents numbered in (query, doc) order).

        ``engine`` (:mod:`click_models.engine`) counts part by part, a task per Parquet part, and sums the
        parts; the counts are integers in float64, so the sum is exactly the one-pass count.
        """
        from .logs import infer_list_size

        K = infer_list_size(path)
        if distributes(engine):
            return count_log_parts(path, K, engine, by_intervention=by_intervention, batch_size=batch_size)
        columns = ("intervention",) if by_intervention else ()
        documents = DocumentIndex.from_batches(iter_click_log(path, batch_size, K, columns=()))
        return cls.from_batches(iter_click_log(path, batch_size, K, columns=columns), K, documents,
                                by_intervention=by_intervention)

    @classmethod
    def merge(cls, parts: list["ClickCounts"], *, by_previous_click: bool = False) -> "ClickCounts":
        """The counts of the union of logs counted apart over one document numbering (cells summed)."""
        first = parts[0]
        K, R = first.list_size, first.list_size if by_previous_click else 1
        num_cells = (first.num_documents + 1) * K * R
        keyed = [(c.intervention * num_cells + (c.doc * K + c.rank) * R + c.previous, c.impressions, c.clicks)
                 for c in parts]
        keys, n, c = _merge(keyed) if keyed else (np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
        sessions: dict[int, int] = {}
        for part in parts:
            for code, count in part.sessions.items():
                sessions[code] = sessions.get(code, 0) + count
        return _from_cell_keys(keys, n, c, first.num_documents, K, R, sessions, first.documents)


def document_index_of_parts(files: list, list_size: int, engine, *, batch_size: int = 65_536,
                            keep=None) -> DocumentIndex:
    """The (query, doc) numbering of a log's parts, as :meth:`DocumentIndex.from_batches` of the whole log:
    distinct pairs per part (an engine task each), united and sorted (``keep``: session ids -> bool)."""
    pairs = engine.map(_part_pairs, list(files), shared={"list_size": list_size, "batch_size": batch_size,
                                                          "keep": keep})
    query_ids = np.concatenate([q for q, _ in pairs]) if pairs else np.zeros(0, np.int64)
    doc_ids = np.concatenate([d for _, d in pairs]) if pairs else np.zeros(0, np.int64)
    order = np.lexsort((doc_ids, query_ids))
    query_ids, doc_ids = query_ids[order], doc_ids[order]
    distinct = np.ones(len(query_ids), bool)
    distinct[1:] = (query_ids[1:] != query_ids[:-1]) | (doc_ids[1:] != doc_ids[:-1])
    return DocumentIndex(query_ids[distinct], doc_ids[distinct])


def count_log_parts(path, list_size: int, engine, *, by_intervention: bool = False, by_previous_click: bool = False,
                    batch_size: int = 65_536, keep=None, documents: DocumentIndex | None = None) -> ClickCounts:
    """:meth:`ClickCounts.from_log` as a map over the log's Parquet parts and a sum (``keep``: session ids ->
    bool, the sessions counted; ``documents``: the numbering, default the log's pairs)."""
    from .logs import click_log_files

    files = click_log_files(path)  # checks the manifest once, for every task
    if documents is None:
        documents = document_index_of_parts(files, list_size, engine, batch_size=batch_size, keep=keep)
    parts = engine.map(_part_counts, files, shared={
        "list_size": list_size, "documents": documents, "by_intervention": by_intervention,
        "by_previous_click": by_previous_click, "batch_size": batch_size, "keep": keep})
    counts = ClickCounts.merge(parts, by_previous_click=by_previous_click)
    counts.documents = documents
    return counts


def kept_batches(path, list_size: int, batch_size: int, keep, columns=()):
    """:func:`~click_models.logs.iter_click_log` with only the sessions ``keep`` (session ids -> bool) selects
    marked valid (all of them for None)."""
    for batch in iter_click_log(path, batch_size, list_size, columns=columns):
        if keep is not None:
            batch.row_valid &= keep(batch.session_id)
        yield batch


def _part_pairs(file, *, list_size: int, batch_size: int, keep) -> tuple[np.ndarray, np.ndarray]:
    """One engine task: the distinct (query_id, doc_id) pairs of a part."""
    index = DocumentIndex.from_batches(kept_batches(file, list_size, batch_size, keep))
    return index.query_ids, index.doc_ids


def _part_counts(file, *, list_size: int, documents: DocumentIndex, by_intervention: bool, by_previous_click: bool,
                 batch_size: int, keep) -> ClickCounts:
    """One engine task: the cell counts of a part over the whole log's document numbering."""
    columns = ("intervention",) if by_intervention else ()
    counts = ClickCounts.from_batches(kept_batches(file, list_size, batch_size, keep, columns), list_size,
                                      documents, by_intervention=by_intervention, by_previous_click=by_previous_click)
    counts.documents = None  # the caller has it: do not send it back
    return counts


def _previous_click_rank(clicks: np.ndarray, mask: np.ndarray) -> np.ndarray:
    K = clicks.shape[1]
    ranks = np.where(clicks & mask, np.arange(1, K + 1), 0)
    last = np.maximum.accumulate(ranks, axis=1)
    return np.concatenate([np.zeros_like(last[:, :1]), last[:, :-1]], axis=1)


def _merge(parts: list[tuple]) -> tuple:
    """Sum ``(keys, impressions, clicks)`` parts over equal keys."""
    keys, inverse = np.unique(np.concatenate([k for k, _, _ in parts]), return_inverse=True)
    n = np.bincount(inverse, weights=np.concatenate([v for _, v, _ in parts]))
    c = np.bincount(inverse, weights=np.concatenate([v for _, _, v in parts]))
    return keys, n, c


def aggregate_cells_from_arrays(batches: Iterable[tuple], num_documents: int, list_size: int, *,
                                by_previous_click: bool = False, by_intervention: bool = False) -> ClickCounts:
    """Count ``(doc [B, K] int, clicks [B, K] bool, mask [B, K] bool, intervention [B] or None)`` batches.

    ``doc`` holds rows ``0..num_documents`` (the last: unseen documents); one pass. A batch may add
    session weights ``[B]`` as a fifth element, and ``clicks`` may be float *expected* clicks (click
    probabilities): then the counts are the exact expectation of the log's counts, which the
    consistency tests feed to the estimators (not with ``by_previous_click``, which needs real clicks).
    """
    K = list_size
    R = K if by_previous_click else 1
    sessions: dict[int, int] = {}
    keys_n: list[tuple] = []
    dense_n = dense_c = None
    num_cells = (num_documents + 1) * K * R
    for batch in batches:
        doc, clicks, mask, intervention = batch[:4]
        weights = np.asarray(batch[4], np.float64) if len(batch) > 4 else None
        doc, mask = np.asarray(doc, np.int64), np.asarray(mask, bool)
        clicks = np.asarray(clicks)
        if clicks.dtype.kind == "f":
            if by_previous_click:
                raise ValueError("expected (float) clicks cannot be split by the previous click")
            click_values = np.where(mask, clicks, 0.0).astype(np.float64)
        else:
            clicks = clicks.astype(bool) & mask
            click_values = clicks.astype(np.float64)
        if weights is not None:
            click_values = click_values * weights[:, None]
        nonempty = mask.any(axis=1)
        code = np.zeros(len(doc), np.int64) if intervention is None else np.asarray(intervention, np.int64)
        for value, count in zip(*np.unique(code[nonempty], return_counts=True)):
            sessions[int(value)] = sessions.get(int(value), 0) + int(count)
        previous = _previous_click_rank(clicks, mask) if by_previous_click else np.zeros_like(doc)
        rank = np.broadcast_to(np.arange(K), doc.shape)
        cell = ((doc * K + rank) * R + previous)[mask]
        c = click_values[mask]
        shown = None if weights is None else np.broadcast_to(weights[:, None], doc.shape)[mask]
        if by_intervention:
            # intervention codes are small non-negative integers: code c owns the c-th block of cells
            if code.size and code.min() < 0:
                raise ValueError(f"intervention codes must be non-negative, found {code.min()}")
            cell = cell + np.broadcast_to(code[:, None], doc.shape)[mask] * num_cells
        if dense_n is None and not by_intervention and num_cells <= DENSE_CELL_LIMIT:
            dense_n, dense_c = np.zeros(num_cells), np.zeros(num_cells)
        if dense_n is not None:
            dense_n += np.bincount(cell, weights=shown, minlength=num_cells)
            dense_c += np.bincount(cell, weights=c, minlength=num_cells)
        else:
            unique, inverse = np.unique(cell, return_inverse=True)
            keys_n.append((unique, np.bincount(inverse, weights=shown).astype(np.float64),
                           np.bincount(inverse, weights=c)))
            if len(keys_n) > 16:  # merge, so that memory follows the distinct cells, not the log's length
                keys_n = [_merge(keys_n)]
    if dense_n is not None:
        keys = np.flatnonzero(dense_n)
        n, c = dense_n[keys], dense_c[keys]
    elif keys_n:
        keys, n, c = _merge(keys_n)
    else:
        keys, n, c = np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    return _from_cell_keys(keys, n, c, num_documents, K, R, sessions)


def _from_cell_keys(keys, n, c, num_documents: int, K: int, R: int, sessions: dict, documents=None) -> ClickCounts:
    num_cells = (num_documents + 1) * K * R
    block, cell = keys // num_cells, keys % num_cells
    return ClickCounts(
        doc=cell // (R * K), rank=(cell // R) % K, previous=cell % R, intervention=block,
        impressions=n, clicks=c, num_documents=num_documents, list_size=K, sessions=sessions, documents=documents)

"""Lexical query-document features from token ids: BM25, TF-IDF, query likelihood, lengths.

The twelve features of Hager et al. (SIGIR 2024) for Baidu-ULTR, in their order and under their names
(:data:`FEATURE_NAMES`). A document has two fields, title and abstract; "document" is both together.
Query tokens count with their multiplicity. With ``N`` documents, ``df(t)`` the documents holding token
``t`` (per field), ``cf(t)`` its occurrences in all documents, ``|C|`` the corpus length, ``tf`` a query
token's count in the field and ``|d|`` the field's length:

* ``bm25``, ``title_bm25``, ``abstract_bm25``: Robertson et al.'s BM25 with ``k1 = 1.2``, ``b = 0.75`` and
  Lucene's non-negative idf ``log(1 + (N - df + 0.5) / (df + 0.5))``, on the document, title, abstract:
  ``sum_t idf(t) tf (k1 + 1) / (tf + k1 (1 - b + b |d| / avgdl))``;
* ``tf_idf``: ``sum_t tf idf(t)``; ``tf``: ``sum_t tf``; ``idf``: ``sum_t idf(t)`` (document field);
* ``ql_jelinek_mercer_short``/``_long``: ``sum_t log((1 - a) tf / |d| + a P(t|C))`` with ``a = 0.1``/``0.7``;
  ``ql_dirichlet``: ``sum_t log((tf + mu P(t|C)) / (|d| + mu))`` with ``mu = 128`` (Zhai and Lafferty,
  2001); ``P(t|C) = (cf(t) + 1) / (|C| + 1)`` (Lucene's collection model, finite for unseen tokens);
  ``tf / |d|`` is 0 for an empty document;
* ``document_length``, ``title_length``, ``abstract_length``: token counts.

Corpus statistics (:class:`CorpusStatistics`) are gathered in one streaming pass: each call of
:meth:`CorpusStatistics.add_documents` adds documents, and statistics of several passes (partitions)
merge by addition.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from click_models.logs import atomic_write_parquet

FEATURE_NAMES = ("bm25", "title_bm25", "abstract_bm25", "tf_idf", "tf", "idf", "ql_jelinek_mercer_short",
                 "ql_jelinek_mercer_long", "ql_dirichlet", "document_length", "title_length", "abstract_length")
BM25_K1 = 1.2
BM25_B = 0.75
JELINEK_MERCER = {"short": 0.1, "long": 0.7}
DIRICHLET_MU = 128.0
FIELDS = ("title", "abstract", "document")


def _tokens(lists: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """list<int> -> (flat token ids int64, lengths int64)."""
    lists = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
    flat = pc.list_flatten(lists).to_numpy(zero_copy_only=False).astype(np.int64)
    lengths = pc.list_value_length(lists).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    return flat, lengths


def _grow(array: np.ndarray, size: int) -> np.ndarray:
    if len(array) >= size:
        return array
    return np.concatenate([array, np.zeros(size - len(array), array.dtype)])


@dataclasses.dataclass
class CorpusStatistics:
    """Document frequencies and collection frequencies per token and field, document count and lengths."""

    num_documents: int = 0
    total_length: dict = dataclasses.field(default_factory=lambda: {f: 0 for f in FIELDS})
    df: dict = dataclasses.field(default_factory=lambda: {f: np.zeros(0, np.int64) for f in FIELDS})
    cf: dict = dataclasses.field(default_factory=lambda: {f: np.zeros(0, np.int64) for f in FIELDS})

    def add_documents(self, title: pa.Array, abstract: pa.Array) -> None:
        """Add documents given as token lists (one list per document, title and abstract)."""
        n = len(title)
        if n == 0:
            return
        title_flat, title_len = _tokens(title)
        abstract_flat, abstract_len = _tokens(abstract)
        doc_of_title = np.repeat(np.arange(n), title_len)
        doc_of_abstract = np.repeat(np.arange(n), abstract_len)
        fields = {
            "title": (title_flat, doc_of_title),
            "abstract": (abstract_flat, doc_of_abstract),
            "document": (np.concatenate([title_flat, abstract_flat]),
                         np.concatenate([doc_of_title, doc_of_abstract])),
        }
        size = int(max([0, *(flat.max() + 1 for flat, _ in fields.values() if flat.size)]))
        for field, (flat, doc) in fields.items():
            self.df[field] = _grow(self.df[field], size)
            self.cf[field] = _grow(self.cf[field], size)
            if not flat.size:
                continue
            self.cf[field] += np.bincount(flat, minlength=len(self.cf[field]))
            pairs = np.unique(doc * np.int64(size) + flat)  # (document, token) once per document
            self.df[field] += np.bincount(pairs % size, minlength=len(self.df[field]))
            self.total_length[field] += int(flat.size)
        self.num_documents += n

    def merge(self, other: "CorpusStatistics") -> None:
        self.num_documents += other.num_documents
        for field in FIELDS:
            self.total_length[field] += other.total_length[field]
            size = max(len(self.df[field]), len(other.df[field]))
            self.df[field] = _grow(self.df[field], size) + _grow(other.df[field], size)
            self.cf[field] = _grow(self.cf[field], size) + _grow(other.cf[field], size)

    def average_length(self, field: str) -> float:
        return self.total_length[field] / self.num_documents if self.num_documents else 0.0

    # ------------------------------------------------------------------ storage
    def save(self, path: str | Path) -> Path:
        """One Parquet table (token, df_*, cf_*) with the counts in its metadata; written atomically."""
        size = max(len(self.df[f]) for f in FIELDS)
        columns = {"token": pa.array(np.arange(size, dtype=np.int64))}
        for field in FIELDS:
            columns[f"df_{field}"] = pa.array(_grow(self.df[field], size))
            columns[f"cf_{field}"] = pa.array(_grow(self.cf[field], size))
        table = pa.table(columns)
        used = np.zeros(size, bool)
        for field in FIELDS:
            used |= _grow(self.cf[field], size) > 0
        table = table.filter(pa.array(used))
        meta = {"num_documents": self.num_documents, "total_length": self.total_length, "size": size}
        table = table.replace_schema_metadata({b"ultr.corpus": json.dumps(meta).encode()})
        return atomic_write_parquet(table, path)

    @classmethod
    def load(cls, path: str | Path) -> "CorpusStatistics":
        table = pq.read_table(path)
        meta = json.loads(table.schema.metadata[b"ultr.corpus"])
        size = int(meta["size"])
        token = table.column("token").to_numpy()
        stats = cls(num_documents=int(meta["num_documents"]), total_length=dict(meta["total_length"]))
        for field in FIELDS:
            for kind in ("df", "cf"):
                dense = np.zeros(size, np.int64)
                dense[token] = table.column(f"{kind}_{field}").to_numpy()
                getattr(stats, kind)[field] = dense
        return stats

    # ------------------------------------------------------------------ features
    def idf(self, field: str, tokens: np.ndarray) -> np.ndarray:
        df = _lookup(self.df[field], tokens).astype(np.float64)
        N = float(self.num_documents)
        return np.log1p((N - df + 0.5) / (df + 0.5))

    def collection_probability(self, tokens: np.ndarray) -> np.ndarray:
        cf = _lookup(self.cf["document"], tokens).astype(np.float64)
        return (cf + 1.0) / (self.total_length["document"] + 1.0)

    def features(self, query: pa.Array, title: pa.Array, abstract: pa.Array) -> np.ndarray:
        """``[N, 12]`` float64 features of N query-document pairs (token lists), columns :data:`FEATURE_NAMES`."""
        n = len(query)
        q_flat, q_len = _tokens(query)
        pair_of_q = np.repeat(np.arange(n), q_len)
        t_flat, t_len = _tokens(title)
        a_flat, a_len = _tokens(abstract)
        d_len = t_len + a_len
        tf = {
            "title": _term_frequencies(pair_of_q, q_flat, t_flat, t_len),
            "abstract": _term_frequencies(pair_of_q, q_flat, a_flat, a_len),
        }
        tf["document"] = tf["title"] + tf["abstract"]
        length = {"title": t_len, "abstract": a_len, "document": d_len}

        def per_pair(values):
            return np.bincount(pair_of_q, weights=values, minlength=n)

        out = np.zeros((n, len(FEATURE_NAMES)))
        bm25 = {}
        for field in FIELDS:
            idf = self.idf(field, q_flat)
            avg = self.average_length(field)
            norm = 1.0 - BM25_B + BM25_B * (length[field][pair_of_q] / avg if avg > 0 else 0.0)
            f = tf[field]
            bm25[field] = per_pair(idf * f * (BM25_K1 + 1.0) / (f + BM25_K1 * norm))
        idf_doc = self.idf("document", q_flat)
        f = tf["document"]
        p_collection = self.collection_probability(q_flat)
        dl = d_len[pair_of_q].astype(np.float64)
        relative = np.divide(f, dl, out=np.zeros_like(dl), where=dl > 0)
        columns = {
            "bm25": bm25["document"], "title_bm25": bm25["title"], "abstract_bm25": bm25["abstract"],
            "tf_idf": per_pair(f * idf_doc), "tf": per_pair(f), "idf": per_pair(idf_doc),
            "ql_jelinek_mercer_short": per_pair(np.log((1 - JELINEK_MERCER["short"]) * relative
                                                       + JELINEK_MERCER["short"] * p_collection)),
            "ql_jelinek_mercer_long": per_pair(np.log((1 - JELINEK_MERCER["long"]) * relative
                                                      + JELINEK_MERCER["long"] * p_collection)),
            "ql_dirichlet": per_pair(np.log((f + DIRICHLET_MU * p_collection) / (dl + DIRICHLET_MU))),
            "document_length": d_len, "title_length": t_len, "abstract_length": a_len,
        }
        for j, name in enumerate(FEATURE_NAMES):
            out[:, j] = columns[name]
        return out


def _lookup(counts: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    inside = tokens < len(counts)
    return np.where(inside, counts[np.where(inside, tokens, 0)], 0)


def _term_frequencies(pair_of_q: np.ndarray, q_tokens: np.ndarray, d_tokens: np.ndarray,
                      d_len: np.ndarray) -> np.ndarray:
    """For each query token occurrence, its count in its pair's field (sort and search, no Python loop)."""
    if not q_tokens.size or not d_tokens.size:
        return np.zeros(q_tokens.size)
    size = np.int64(max(int(q_tokens.max()), int(d_tokens.max())) + 1)
    pair_of_d = np.repeat(np.arange(len(d_len)), d_len)
    keys, counts = np.unique(pair_of_d * size + d_tokens, return_counts=True)
    wanted = pair_of_q * size + q_tokens
    at = np.searchsorted(keys, wanted)
    found = (at < len(keys)) & (keys[np.minimum(at, len(keys) - 1)] == wanted)
    return np.where(found, counts[np.minimum(at, len(keys) - 1)], 0).astype(np.float64)


__all__ = ["BM25_B", "BM25_K1", "CorpusStatistics", "DIRICHLET_MU", "FEATURE_NAMES", "JELINEK_MERCER"]

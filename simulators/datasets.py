"""Learning-to-rank datasets: LETOR files, Parquet caches, splits, normalisation, synthetic data.

A split is a :class:`RankingData`: one row per query-document pair, rows of a
query contiguous. ``padded()`` turns it into fixed-size ``[Q, L]`` arrays.

The Parquet cache has one row per query-document: ``query_id int64``,
``doc_id int64``, ``label int8`` and ``features fixed_size_list<float32>[F]``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from click_models.logs import atomic_write_parquet

from .letor import LetorFormatError, read_letor

SPLITS = ("train", "vali", "test")
FOLD_FILES = {
    "train": ("train.txt", "trainingset.txt", "train.txt.gz"),
    "vali": ("vali.txt", "validationset.txt", "valid.txt", "vali.txt.gz"),
    "test": ("test.txt", "testset.txt", "test.txt.gz"),
}
FLOAT32_MAX = np.finfo(np.float32).max


@dataclasses.dataclass
class PaddedRanking:
    """Queries as fixed-size lists: ``features [Q, L, F]``, ``labels``, ``doc_ids``,
    ``mask [Q, L]`` and ``query_ids [Q]``."""

    query_ids: np.ndarray
    doc_ids: np.ndarray
    labels: np.ndarray
    mask: np.ndarray
    features: np.ndarray | None


@dataclasses.dataclass
class RankingData:
    """One split: rows grouped by query.

    Attributes:
      query_ids, doc_ids: ``[N]`` int64 (doc ids unique within a query).
      labels: ``[N]`` int8.
      features: ``[N, F]`` float32.
    """

    query_ids: np.ndarray
    doc_ids: np.ndarray
    labels: np.ndarray
    features: np.ndarray
    name: str = ""

    def __post_init__(self):
        order = np.argsort(self.query_ids, kind="stable")
        if np.any(order != np.arange(len(order))):
            self.query_ids, self.doc_ids = self.query_ids[order], self.doc_ids[order]
            self.labels, self.features = self.labels[order], self.features[order]
        boundaries = np.flatnonzero(np.diff(self.query_ids)) + 1
        self.query_offsets = np.concatenate([[0], boundaries, [len(self.query_ids)]]).astype(np.int64)

    @property
    def num_queries(self) -> int:
        return len(self.query_offsets) - 1

    @property
    def num_documents(self) -> int:
        return len(self.query_ids)

    @property
    def num_features(self) -> int:
        return self.features.shape[1]

    @property
    def unique_query_ids(self) -> np.ndarray:
        return self.query_ids[self.query_offsets[:-1]]

    @property
    def list_sizes(self) -> np.ndarray:
        return np.diff(self.query_offsets)

    def padded(self, list_size: int | None = None, with_features: bool = True) -> PaddedRanking:
        sizes = self.list_sizes
        L = int(list_size or sizes.max())
        if sizes.max() > L:
            raise ValueError(f"{self.name}: a query has {sizes.max()} documents, more than list size {L}")
        Q = self.num_queries
        query_of = np.repeat(np.arange(Q), sizes)
        slot = np.arange(self.num_documents) - self.query_offsets[query_of]
        mask = np.zeros((Q, L), bool)
        mask[query_of, slot] = True
        labels = np.zeros((Q, L), np.int8)
        labels[query_of, slot] = self.labels
        doc_ids = np.full((Q, L), -1, np.int64)
        doc_ids[query_of, slot] = self.doc_ids
        features = None
        if with_features:
            features = np.zeros((Q, L, self.num_features), np.float32)
            features[query_of, slot] = self.features
        return PaddedRanking(self.unique_query_ids, doc_ids, labels, mask, features)

    def subset(self, query_mask: np.ndarray) -> "RankingData":
        rows = np.repeat(np.asarray(query_mask, bool), self.list_sizes)
        return RankingData(self.query_ids[rows], self.doc_ids[rows], self.labels[rows], self.features[rows], self.name)

    # ------------------------------------------------------------------ Parquet
    def to_table(self) -> pa.Table:
        F = self.num_features
        flat = pa.array(self.features.reshape(-1), pa.float32())
        return pa.table({
            "query_id": pa.array(self.query_ids, pa.int64()),
            "doc_id": pa.array(self.doc_ids, pa.int64()),
            "label": pa.array(self.labels, pa.int8()),
            "features": pa.FixedSizeListArray.from_arrays(flat, F),
        })

    @classmethod
    def from_table(cls, table: pa.Table, name: str = "") -> "RankingData":
        features = table.column("features").combine_chunks()
        F = features.type.list_size
        values = features.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        return cls(
            table.column("query_id").to_numpy().astype(np.int64),
            table.column("doc_id").to_numpy().astype(np.int64),
            table.column("label").to_numpy().astype(np.int8),
            values.reshape(-1, F),
            name,
        )


@dataclasses.dataclass
class Dataset:
    """Train, validation and test splits of one dataset."""

    name: str
    train: RankingData
    vali: RankingData
    test: RankingData
    max_label: int
    #: query_id -> group name, for metrics per group (Baidu-ULTR's query-frequency groups)
    query_groups: dict | None = None
    #: False when the train split's labels are unknown (a real log's documents): label learners are refused
    train_labels: bool = True
    #: the test metrics this dataset's benchmark reports (default: ultr.training.TEST_METRICS)
    test_metrics: tuple | None = None

    @property
    def num_features(self) -> int:
        return self.train.num_features

    def split(self, name: str) -> RankingData:
        return {"train": self.train, "vali": self.vali, "validation": self.vali, "test": self.test}[name]


# ---------------------------------------------------------------------- caching
def cache_dir() -> Path:
    root = os.environ.get("ULTR_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "ultr"


def _cache_key(path: Path, num_features: int | None) -> str:
    stat = path.stat()
    text = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{num_features}|v1"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_letor_cached(path: str | os.PathLike, num_features: int | None = None, cache: bool = True) -> RankingData:
    """Read a LETOR file, converting it once to a cached Parquet table.

    The cache lives in ``$ULTR_CACHE_DIR`` (default ``~/.cache/ultr``) and is
    keyed by the file's path, size and modification time.
    """
    path = Path(path)
    if not path.exists():
        raise LetorFormatError(f"{path}: no such file")
    target = cache_dir() / "datasets" / f"{path.stem}-{_cache_key(path, num_features)}.parquet"
    if cache and target.exists():
        return RankingData.from_table(pq.read_table(target), name=str(path))
    letor = read_letor(path, num_features)
    features = letor.features
    if not np.all(np.isfinite(features)):
        # values beyond float32 (Istella marks missing values with DBL_MAX) are clipped
        features = np.clip(np.nan_to_num(features, posinf=FLOAT32_MAX, neginf=-FLOAT32_MAX), -FLOAT32_MAX, FLOAT32_MAX)
    data = RankingData(letor.query_ids, letor.line_numbers - 1, letor.labels, features, str(path))
    if cache:
        try:
            atomic_write_parquet(data.to_table(), target)
        except OSError:
            pass  # an unwritable cache only costs speed
    return data


# ---------------------------------------------------------------------- normalisation
def normalize_features(data: RankingData, method: str | None) -> RankingData:
    """Feature normalisation.

    * ``None``: unchanged;
    * ``"minmax"``: per query, each feature scaled to [0, 1] (constant features become 0);
    * ``"log1p"``: ``sign(x) * log(1 + |x|)`` for heavy-tailed features;
    * ``"log1p-minmax"``: both, in that order.
    """
    if method in (None, "none"):
        return data
    if method not in ("minmax", "log1p", "log1p-minmax"):
        raise ValueError(f"unknown normalisation {method!r}; choose none, minmax, log1p or log1p-minmax")
    x = data.features.astype(np.float64)
    if method.startswith("log1p"):
        x = np.sign(x) * np.log1p(np.abs(x))
    if method.endswith("minmax"):
        lo = np.minimum.reduceat(x, data.query_offsets[:-1], axis=0)
        hi = np.maximum.reduceat(x, data.query_offsets[:-1], axis=0)
        query_of = np.repeat(np.arange(data.num_queries), data.list_sizes)
        span = (hi - lo)[query_of]
        x = np.where(span > 0, (x - lo[query_of]) / np.where(span > 0, span, 1.0), 0.0)
    return RankingData(data.query_ids, data.doc_ids, data.labels, x.astype(np.float32), data.name)


# ---------------------------------------------------------------------- loading
def _split_by_query(data: RankingData, fractions=(0.6, 0.2, 0.2), seed: int = 0) -> tuple[RankingData, ...]:
    rng = np.random.default_rng(seed)
    u = rng.uniform(size=data.num_queries)
    train = u < fractions[0]
    vali = (u >= fractions[0]) & (u < fractions[0] + fractions[1])
    test = ~(train | vali)
    return data.subset(train), data.subset(vali), data.subset(test)


#: name parts that mark a split's file when no standard name exists (``mslr_fold1_train_sample.txt``)
FOLD_WORDS = {"train": ("train",), "vali": ("vali", "valid"), "test": ("test",)}


def _find_fold_file(directory: Path, split: str) -> Path | None:
    for name in FOLD_FILES[split]:
        if (directory / name).exists():
            return directory / name
    # otherwise exactly one .txt file whose name holds the split's word
    candidates = [p for p in sorted(directory.glob("*.txt"))
                  if any(word in p.stem.lower() for word in FOLD_WORDS[split])
                  and not any(word in p.stem.lower() for other in FOLD_WORDS if other != split
                              for word in FOLD_WORDS[other] if word not in FOLD_WORDS[split])]
    if len(candidates) > 1:
        raise LetorFormatError(f"{directory}: several {split} files ({', '.join(p.name for p in candidates)}); "
                               f"name one {FOLD_FILES[split][0]}")
    return candidates[0] if candidates else None


def load_letor_dataset(path: str | os.PathLike, normalize: str | None = None, cache: bool = True) -> Dataset:
    """Load a fold directory (``train.txt``, ``vali.txt``, ``test.txt``; LETOR 3.0
    names ``trainingset.txt`` ... also work) or a single LETOR file, which is
    split 60/20/20 by query."""
    path = Path(path)
    if path.is_dir():
        files = {split: _find_fold_file(path, split) for split in SPLITS}
        if files["train"] is None:
            raise LetorFormatError(f"{path}: no train.txt (or trainingset.txt) in this fold directory")
        widths = []
        splits = {}
        for split, file in files.items():
            if file is not None:
                splits[split] = read_letor_cached(file, cache=cache)
                widths.append(splits[split].num_features)
        width = max(widths)
        for split, data in list(splits.items()):  # one feature width for all splits
            if data.num_features < width:
                pad = np.zeros((data.num_documents, width - data.num_features), np.float32)
                splits[split] = RankingData(data.query_ids, data.doc_ids, data.labels,
                                            np.concatenate([data.features, pad], 1), data.name)
        missing = [split for split in ("vali", "test") if split not in splits]
        if missing:
            # hold out queries of the training file for the missing splits only (60/20/20 when both
            # are missing, 80/20 when one is), so no training query is dropped
            fractions = (0.6, 0.2, 0.2) if len(missing) == 2 else (0.8, 0.2, 0.0)
            train_part, first, second = _split_by_query(splits["train"], fractions)
            splits["train"] = train_part
            for split, part in zip(missing, (first, second)):
                splits[split] = part
        train, vali, test = splits["train"], splits["vali"], splits["test"]
    else:
        train, vali, test = _split_by_query(read_letor_cached(path, cache=cache))
    train, vali, test = (normalize_features(d, normalize) for d in (train, vali, test))
    max_label = int(max(d.labels.max() for d in (train, vali, test) if d.num_documents))
    return Dataset(str(path), train, vali, test, max_label)


def synthetic_dataset(
    num_queries: int = 1_000,
    docs_per_query: int = 20,
    num_features: int = 16,
    seed: int = 0,
    relevant_percent: int | None = None,
) -> Dataset:
    """A built-in dataset with graded labels 0-4 and a non-linear relevance signal.

    Features are standard normal; relevance is
    ``sin(2 x0) + x1 x2 + x3^2 / 2 - |x4| + x5 / 2 + query offset + noise``,
    binned into grades 0..4 with shares 50/25/15/7/3%. Features beyond the
    sixth are noise. A linear ranker sees part of the signal; an MLP sees more.
    Deterministic for ``seed``; queries are split 60/20/20.

    ``relevant_percent`` (spec key ``relevant``) makes that share of the documents relevant (grades 1-4 in
    the same 25:15:7:3 proportions) instead of half: large pools with few relevant documents, as a
    first-stage retriever faces (``synthetic:queries=50,docs=2000,relevant=1``).
    """
    if num_features < 6:
        raise ValueError("synthetic_dataset needs num_features >= 6")
    if relevant_percent is not None and not 1 <= relevant_percent <= 50:
        raise ValueError(f"relevant must be a percentage in 1..50, got {relevant_percent}")
    rng = np.random.default_rng(seed)
    n = num_queries * docs_per_query
    x = rng.normal(size=(n, num_features)).astype(np.float32)
    query = np.repeat(np.arange(num_queries), docs_per_query)
    offset = rng.normal(scale=0.5, size=num_queries)[query]
    score = (np.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2] + 0.5 * x[:, 3] ** 2 - np.abs(x[:, 4])
             + 0.5 * x[:, 5] + offset + rng.normal(scale=0.3, size=n))
    shares = [0.50, 0.75, 0.90, 0.97] if relevant_percent is None else \
        [1 - relevant_percent / 100 * f for f in (1.0, 0.5, 0.2, 0.06)]
    cuts = np.quantile(score, shares)
    labels = np.searchsorted(cuts, score).astype(np.int8)
    doc_ids = np.tile(np.arange(docs_per_query), num_queries)
    data = RankingData(query.astype(np.int64), doc_ids.astype(np.int64), labels, x, "synthetic")
    train, vali, test = _split_by_query(data, seed=seed)
    return Dataset("synthetic", train, vali, test, max_label=4)


def _synthetic_options(spec: str) -> dict:
    """``synthetic:queries=500,docs=30,features=16,seed=1[,relevant=1]`` -> keyword arguments."""
    names = {"queries": "num_queries", "docs": "docs_per_query", "features": "num_features", "seed": "seed",
             "relevant": "relevant_percent"}
    options = {}
    for item in filter(None, spec.partition(":")[2].split(",")):
        key, _, value = item.partition("=")
        if key.strip() not in names or not value.strip().isdigit():
            raise ValueError(f"{spec}: expected synthetic:queries=N,docs=N,features=N,seed=N[,relevant=PERCENT]; "
                             f"bad part {item!r}")
        options[names[key.strip()]] = int(value)
    for key in ("num_queries", "docs_per_query"):
        if key in options and not 1 <= options[key] <= 10_000_000:
            raise ValueError(f"{spec}: {key.split('_')[-1] if key != 'num_queries' else 'queries'} must lie in "
                             "1..10,000,000")
    if "num_features" in options and not 6 <= options["num_features"] <= 10_000:
        raise ValueError(f"{spec}: features must lie in 6..10,000")
    if "relevant_percent" in options and not 1 <= options["relevant_percent"] <= 50:
        raise ValueError(f"{spec}: relevant must be a percentage in 1..50")
    return options


def fingerprint(data: "RankingData") -> str:
    """SHA-256 of a split's content in its order: query and document ids, labels and features.

    Two splits with the same fingerprint are the same documents in the same order, so
    a log's (query_id, doc_id) pairs and its ranks mean the same thing for both.
    """
    import hashlib

    digest = hashlib.sha256(b"ultr-ranking-data-v1")
    for array in (data.query_ids, data.doc_ids, data.labels, data.features):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def load_dataset(spec: str, normalize: str | None = None, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Resolve ``spec``: ``synthetic`` (or ``synthetic:queries=N,docs=N,features=N,seed=N``),
    ``baidu:DIR`` (a converted Baidu-ULTR directory; ``baidu:DIR:lexical`` names the feature set), a LETOR file or fold directory, or a registry name (see :mod:`simulators.registry`) already downloaded to ``data_dir``."""
    from click_models.storage import is_uri, local_path

    if spec == "synthetic" or spec.startswith("synthetic:"):
        return synthetic_dataset(**_synthetic_options(spec))
    if is_uri(spec):  # file:// (other filesystems: one clear error)
        spec = str(local_path(spec))
    if spec.startswith("baidu:"):
        from .baidu import FEATURE_SETS, load_baidu_dataset

        target, _, features = spec[len("baidu:"):].rpartition(":")
        if not target or features not in FEATURE_SETS:  # no feature set named: the whole rest is the path
            target, features = spec[len("baidu:"):], "lexical"
        return load_baidu_dataset(local_path(target), features)
    path = Path(spec)
    if path.exists():
        return load_letor_dataset(path, normalize=normalize)
    from .registry import DATASETS, dataset_path

    if spec.lower() in DATASETS:
        return load_letor_dataset(dataset_path(spec, data_dir), normalize=normalize)
    raise LetorFormatError(
        f"{spec}: not a file or directory, and not a dataset name "
        f"(synthetic, {', '.join(sorted(DATASETS))})"
    )

"""Reading LETOR / SVMlight ranking files.

Each data line is ``label qid:Q id:value id:value ... # comment`` with 1-based,
possibly sparse feature ids. Blank lines and lines that hold only a comment are
not data. Files may be plain text or gzip (detected from the content).

The reader parses the whole file with vectorised numpy; when that fails it
re-reads the file line by line to report the first bad line as
``FILE:LINE: problem``. Nothing is silently dropped.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import re
from pathlib import Path

import numpy as np


class LetorFormatError(ValueError):
    """A malformed LETOR/SVMlight file; the message names the file and line."""


@dataclasses.dataclass
class LetorFile:
    """The rows of one LETOR file, in file order.

    Attributes:
      query_ids: ``[N]`` int64.
      labels: ``[N]`` int8 graded relevance.
      features: ``[N, F]`` float32 dense (missing sparse features are 0).
      line_numbers: ``[N]`` 1-based line of each row in the file.
    """

    path: Path
    query_ids: np.ndarray
    labels: np.ndarray
    features: np.ndarray
    line_numbers: np.ndarray

    @property
    def num_features(self) -> int:
        return self.features.shape[1]


def _read_text(path: Path) -> str:
    with open(path, "rb") as handle:
        head = handle.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise LetorFormatError(f"{path}: cannot read: {error}") from error
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _fail(path: Path, line_number: int, message: str):
    raise LetorFormatError(f"{path}:{line_number}: {message}")


def _check_line(path: Path, line_number: int, tokens: list[str]) -> None:
    """Line-by-line validation (the slow path that names the bad line)."""
    if len(tokens) < 2:
        _fail(path, line_number, "expected 'label qid:Q id:value ...'")
    label = tokens[0]
    try:
        value = float(label)
    except ValueError:
        _fail(path, line_number, f"bad label {label!r}: not a number")
    if not value.is_integer() or not 0 <= value <= 127:
        _fail(path, line_number, f"bad label {label!r}: expected an integer grade in 0..127")
    if not tokens[1].startswith("qid:"):
        _fail(path, line_number, f"missing qid: expected 'qid:Q' after the label, found {tokens[1]!r}")
    try:
        int(tokens[1][4:])
    except ValueError:
        _fail(path, line_number, f"bad qid {tokens[1]!r}: not an integer")
    seen = set()
    for token in tokens[2:]:
        key, sep, val = token.partition(":")
        if not sep or ":" in val:
            _fail(path, line_number, f"bad feature {token!r}: expected 'id:value'")
        try:
            feature_id = int(key)
        except ValueError:
            _fail(path, line_number, f"bad feature id {key!r} in {token!r}")
        if feature_id < 1:
            _fail(path, line_number, f"bad feature id {feature_id}: ids start at 1")
        try:
            number = float(val)
        except ValueError:
            _fail(path, line_number, f"non-numeric value {val!r} for feature {feature_id}")
        if not np.isfinite(number):
            _fail(path, line_number, f"non-finite value {val!r} for feature {feature_id}")
        if feature_id in seen:
            _fail(path, line_number, f"duplicate feature id {feature_id}")
        seen.add(feature_id)


def read_letor(path: str | os.PathLike, num_features: int | None = None) -> LetorFile:
    """Read a LETOR/SVMlight file (plain or gzip).

    Args:
      path: the file.
      num_features: width of the dense feature matrix; default the largest id.

    Raises:
      LetorFormatError: naming the file and line of the first malformed line
        (bad label, missing qid, non-numeric value, duplicate feature id, ...).
    """
    path = Path(path)
    if not path.exists():
        raise LetorFormatError(f"{path}: no such file")
    text = _read_text(path)
    rows: list[list[str]] = []
    line_numbers: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        body = line.split("#", 1)[0]
        tokens = body.split()
        if tokens:
            rows.append(tokens)
            line_numbers.append(number)
    if not rows:
        raise LetorFormatError(f"{path}: no data lines")
    try:
        return _parse_fast(path, rows, np.asarray(line_numbers, np.int64), num_features)
    except LetorFormatError:
        raise
    except (ValueError, IndexError):
        for number, tokens in zip(line_numbers, rows):
            _check_line(path, number, tokens)
        raise  # pragma: no cover - the slow path finds every error the fast path can hit


#: above this feature id, ids this much sparser than the width are refused (a dense matrix would not fit)
MAX_SPARSE_WIDTH = 100_000


def _parse_fast(path: Path, rows: list[list[str]], line_numbers: np.ndarray, num_features: int | None) -> LetorFile:
    labels = np.array([r[0] for r in rows], dtype=np.float64)
    if not np.all(np.isfinite(labels) & (labels == np.round(labels)) & (labels >= 0) & (labels <= 127)):
        raise ValueError("bad label")
    qid_tokens = [r[1] for r in rows]
    if not all(t.startswith("qid:") for t in qid_tokens):
        raise ValueError("missing qid")
    query_ids = np.array([t[4:] for t in qid_tokens], dtype=np.int64)
    counts = np.fromiter((len(r) - 2 for r in rows), dtype=np.int64, count=len(rows))
    tokens = [t for r in rows for t in r[2:]]
    joined = " ".join(tokens)
    if joined.count(":") != len(tokens):
        raise ValueError("bad feature token")
    numbers = np.array(joined.replace(":", " ").split(), dtype=np.float64) if tokens else np.zeros(0)
    if numbers.size != 2 * len(tokens):
        raise ValueError("bad feature token")
    ids, values = numbers[0::2], numbers[1::2]
    if ids.size and (np.any(ids != np.round(ids)) or ids.min() < 1 or not np.all(np.isfinite(values))):
        raise ValueError("bad feature id or value")
    ids = ids.astype(np.int64)
    row_of = np.repeat(np.arange(len(rows)), counts)
    if ids.size:
        order = np.lexsort((ids, row_of))
        same = (row_of[order][1:] == row_of[order][:-1]) & (ids[order][1:] == ids[order][:-1])
        if same.any():
            raise ValueError("duplicate feature id")
    width = int(ids.max()) if ids.size else 0
    if width > MAX_SPARSE_WIDTH and len(np.unique(ids)) * 10 < width:
        bad = int(np.argmax(ids))
        raise LetorFormatError(
            f"{path}:{line_numbers[row_of[bad]]}: feature id {ids[bad]:,} would make a dense matrix of "
            f"{len(rows):,} x {width:,} features ({len(rows) * width * 4 / 2**30:,.1f} GiB) for "
            f"{len(np.unique(ids)):,} distinct ids; renumber the features 1..F")
    if num_features is not None:
        if width > num_features:
            bad = int(np.flatnonzero(ids > num_features)[0])
            raise LetorFormatError(
                f"{path}:{line_numbers[row_of[bad]]}: feature id {ids[bad]} beyond num_features={num_features}"
            )
        width = num_features
    features = np.zeros((len(rows), width), np.float32)
    features[row_of, ids - 1] = values
    return LetorFile(path, query_ids, labels.astype(np.int8), features, line_numbers)


_DOCID = re.compile(r"#.*?\bdocid\s*=\s*(\S+)")


def letor_doc_names(path: str | os.PathLike) -> dict[int, str]:
    """The ``#docid = NAME`` comments of a LETOR file, by 0-based line index (the ``doc_ids`` that
    :func:`simulators.datasets.read_letor_cached` gives the file's documents); empty when the file has none.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "t.txt"
    >>> _ = path.write_text("1 qid:7 1:0.5 #docid = GX01-23 inc = 1\\n0 qid:7 1:0.1\\n")
    >>> letor_doc_names(path)
    {0: 'GX01-23'}
    """
    names = {}
    for index, line in enumerate(_read_text(Path(path)).splitlines()):
        if "#" in line and (match := _DOCID.search(line)):
            names[index] = match.group(1)
    return names

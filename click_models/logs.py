"""The click-log format shared by every part of ultr, and its streaming reader/writer.

A click log is a Parquet file, or a directory of Parquet files, with one row
per search session (see ``docs/click_logs.md``):

==================  ====================  =========================================
column              type                  meaning
==================  ====================  =========================================
``session_id``      int64                 unique id of the session
``query_id``        int64                 the query
``doc_ids``         list<int64>           documents in display order
``clicks``          list<bool>            click per displayed document
``positions``       list<int16>, opt.     1-based display rank, when ranks have gaps
``labels``          list<int8>, opt.      true relevance (simulated logs)
``examination``     list<float32>, opt.   true examination probability (simulated)
``policy``          int32, opt.           logging policy id
``intervention``    int32, opt.           intervention id (0 = none)
``candidates``      list<int64>, opt.     the candidate set a two-stage policy drew (its order)
``dwell_time``      list<float32>, opt.   seconds on the clicked result (real logs)
``displayed_time``  list<float32>, opt.   seconds the result was on screen (Baidu-ULTR)
``media_type``      list<int32>, opt.     result type (Baidu-ULTR multimedia type)
``serp_height``     list<int32>, opt.     the result's height in pixels (Baidu-ULTR)
``slipoff_count``   list<int32>, opt.     scrolls past the result (Baidu-ULTR)
``skip``            list<bool>, opt.      the result was skipped (Baidu-ULTR)
``related_searches``  list<bool>, opt.    a "what other people searched" box (Baidu-ULTR)
==================  ====================  =========================================

Reading streams record batches into fixed-size padded numpy batches
(:class:`ClickLogBatch`): list position ``k`` of the padded arrays is display
rank ``k + 1`` and ``mask`` marks the filled slots, so every batch of a log has
the same shape and jit-compiled code never recompiles.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

REQUIRED_COLUMNS = {
    "session_id": pa.int64(),
    "query_id": pa.int64(),
    "doc_ids": pa.list_(pa.int64()),
    "clicks": pa.list_(pa.bool_()),
}
OPTIONAL_COLUMNS = {
    "positions": pa.list_(pa.int16()),
    "labels": pa.list_(pa.int8()),
    "examination": pa.list_(pa.float32()),
    "policy": pa.int32(),
    "intervention": pa.int32(),
    "candidates": pa.list_(pa.int64()),
    "dwell_time": pa.list_(pa.float32()),
    "displayed_time": pa.list_(pa.float32()),
    "media_type": pa.list_(pa.int32()),
    "serp_height": pa.list_(pa.int32()),
    "slipoff_count": pa.list_(pa.int32()),
    "skip": pa.list_(pa.bool_()),
    "related_searches": pa.list_(pa.bool_()),
}
LIST_SIZE_METADATA_KEY = b"ultr.list_size"


class ClickLogError(ValueError):
    """A click log that does not follow the format."""


@dataclasses.dataclass
class ClickLogBatch:
    """A fixed-size padded batch of sessions (numpy arrays).

    Attributes:
      session_id, query_id: ``[B]`` int64.
      doc_ids: ``[B, K]`` int64 (0 where masked).
      clicks: ``[B, K]`` bool.
      mask: ``[B, K]`` bool, True where a document was displayed.
      row_valid: ``[B]`` bool, False for the padding rows of the last batch.
      labels: ``[B, K]`` int8 or None.
      examination: ``[B, K]`` float32 or None.
      policy, intervention: ``[B]`` int32 or None.
    """

    session_id: np.ndarray
    query_id: np.ndarray
    doc_ids: np.ndarray
    clicks: np.ndarray
    mask: np.ndarray
    row_valid: np.ndarray
    labels: np.ndarray | None = None
    examination: np.ndarray | None = None
    policy: np.ndarray | None = None
    intervention: np.ndarray | None = None

    @property
    def num_sessions(self) -> int:
        return int(self.row_valid.sum())

    @property
    def list_size(self) -> int:
        return self.doc_ids.shape[1]


# ---------------------------------------------------------------------- writing
def _list_array(values_2d: np.ndarray, mask: np.ndarray, value_type: pa.DataType,
                full: bool | None = None) -> pa.ListArray:
    """The rows of ``values_2d [B, K]`` as lists of their ``mask``-ed slots (``full``: every slot shown)."""
    B, K = mask.shape
    if full if full is not None else mask.all():  # lists of K: no boolean gather, offsets 0, K, 2K, ...
        offsets = np.arange(0, (B + 1) * K, K, dtype=np.int32)
        values = pa.array(np.ascontiguousarray(values_2d).reshape(-1), type=value_type)
    else:
        offsets = np.zeros(B + 1, dtype=np.int32)
        np.cumsum(mask.sum(axis=1), out=offsets[1:])
        values = pa.array(values_2d[mask], type=value_type)
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def sessions_to_table(
    session_id: np.ndarray,
    query_id: np.ndarray,
    doc_ids: np.ndarray,
    clicks: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    labels: np.ndarray | None = None,
    examination: np.ndarray | None = None,
    policy: np.ndarray | None = None,
    intervention: np.ndarray | None = None,
    with_positions: bool | None = None,
    candidates: np.ndarray | None = None,
    candidate_mask: np.ndarray | None = None,
) -> pa.Table:
    """Pack padded session arrays ``[B, K]`` into a click-log table.

    ``mask`` marks displayed slots; when it has gaps (a masked slot before a
    displayed one) a ``positions`` column records the 1-based display ranks.
    ``candidates`` ``[B, K2]`` (doc ids, ``candidate_mask`` marking the filled slots) is the
    candidate set of two-stage logging.
    """
    doc_ids = np.asarray(doc_ids)
    B, K = doc_ids.shape
    mask = np.ones((B, K), bool) if mask is None else np.asarray(mask, bool)
    full = bool(mask.all())
    if with_positions is None:
        # gaps exist where a displayed slot follows a hidden one
        with_positions = bool((mask[:, 1:] & ~mask[:, :-1]).any())
    columns = {
        "session_id": pa.array(np.asarray(session_id, np.int64)),
        "query_id": pa.array(np.asarray(query_id, np.int64)),
        "doc_ids": _list_array(doc_ids.astype(np.int64, copy=False), mask, pa.int64(), full),
        "clicks": _list_array(np.asarray(clicks, bool), mask, pa.bool_(), full),
    }
    if with_positions:
        ranks = np.broadcast_to(np.arange(1, K + 1, dtype=np.int16), (B, K))
        columns["positions"] = _list_array(ranks, mask, pa.int16(), full)
    if labels is not None:
        columns["labels"] = _list_array(np.asarray(labels).astype(np.int8, copy=False), mask, pa.int8(), full)
    if examination is not None:
        columns["examination"] = _list_array(np.asarray(examination, np.float32), mask, pa.float32(), full)
    if policy is not None:
        columns["policy"] = pa.array(np.asarray(policy, np.int32))
    if intervention is not None:
        columns["intervention"] = pa.array(np.asarray(intervention, np.int32))
    if candidates is not None:
        candidates = np.asarray(candidates, np.int64)
        candidate_mask = np.ones(candidates.shape, bool) if candidate_mask is None else np.asarray(candidate_mask, bool)
        columns["candidates"] = _list_array(candidates, candidate_mask, pa.int64())
    table = pa.table(columns)
    return table.replace_schema_metadata({LIST_SIZE_METADATA_KEY: str(K).encode()})


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it becomes ``path`` (a rename) when the
    block succeeds and is removed when it fails, so no half-written file is left."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise ClickLogError(f"{path}: exists and is not a regular file (a directory or a device); "
                            "give another output path")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        follow_umask(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def follow_umask(path: str | os.PathLike, directory: bool = False) -> None:
    """Give a file made by ``tempfile`` (mode 0600/0700) the mode the user's umask asks for."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, (0o777 if directory else 0o666) & ~mask)


# ---------------------------------------------------------------------- manifest, staging, locks
MANIFEST_NAME = "manifest.json"
#: present while a converter writes a log directory; readers refuse the directory until it is gone
INCOMPLETE_NAME = "INCOMPLETE"
SIMULATION_METADATA_NAME = "simulation.json"
MANIFEST_FORMAT = 1
_verified: dict[tuple, bool] = {}  # (file, size, mtime) whose checksum matched in this process


def file_sha256(path) -> str:
    """The SHA-256 of a file: a local path or a :class:`~click_models.storage.Location`."""
    digest = hashlib.sha256()
    handle = path.filesystem.open_input_stream(path.path) if hasattr(path, "filesystem") else open(path, "rb")
    with handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: str | os.PathLike, extra: dict | None = None, digests: dict | None = None) -> Path:
    """List every Parquet part of a log directory with its rows, bytes and SHA-256, written last.

    A log is complete when its manifest is there and matches its parts; readers refuse it otherwise.
    ``digests`` (file name -> SHA-256) saves hashing parts that the writer hashed already.
    """
    directory = Path(directory)
    parts = sorted(p for p in directory.rglob("*.parquet") if not p.name.startswith("."))
    entries = []
    for part in parts:
        entries.append({"file": part.relative_to(directory).as_posix(), "rows": pq.ParquetFile(part).metadata.num_rows,
                        "bytes": part.stat().st_size,
                        "sha256": (digests or {}).get(part.relative_to(directory).as_posix()) or file_sha256(part)})
    manifest = {"format": MANIFEST_FORMAT, "parts": entries, "rows": sum(e["rows"] for e in entries), **(extra or {})}
    return atomic_write_json(manifest, directory / MANIFEST_NAME)


def _size_and_key(part) -> tuple[int, tuple | None]:
    """A part's size and what identifies it unchanged for the checksum cache (None: the storage gives no
    modification time, so no result is cached); one metadata call, local or remote."""
    if hasattr(part, "filesystem"):
        info = part.info()
        return info.size, (None if info.mtime_ns is None else (part.uri, info.size, info.mtime_ns))
    stat = part.stat()
    return stat.st_size, (str(part), stat.st_size, stat.st_mtime_ns)


def verify_log_directory(directory, parts: list, checksums: bool = True) -> None:
    """Raise :class:`ClickLogError` unless the manifest of ``directory`` lists exactly ``parts``, intact (local
    paths or :class:`~click_models.storage.Location` s)."""
    path = directory / MANIFEST_NAME
    found = {(p.relative_to(directory) if hasattr(p, "filesystem") else p.relative_to(directory).as_posix()): p
             for p in parts}
    try:
        manifest = json.loads(path.read_text())
        listed = {entry["file"]: entry for entry in manifest["parts"]}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ClickLogError(f"{path}: unreadable manifest ({error})") from None
    stray = sorted(set(found) - set(listed))
    if stray:
        raise ClickLogError(f"{directory}: {', '.join(stray[:3])} not in the manifest: the directory mixes "
                            "files of another run (remove them, or simulate again with --overwrite)")
    missing = sorted(set(listed) - set(found))
    if missing:
        raise ClickLogError(f"{directory}: the manifest lists {', '.join(missing[:3])}, which is missing: "
                            "the log is incomplete")
    for name, entry in listed.items():
        part = found[name]
        size, key = _size_and_key(part)
        if size != entry.get("bytes"):
            raise ClickLogError(f"{part}: {size} bytes, the manifest says {entry.get('bytes')}: "
                                "the file was changed or truncated")
        if checksums and (key is None or not _verified.get(key)):
            if file_sha256(part) != entry.get("sha256"):
                raise ClickLogError(f"{part}: its SHA-256 differs from the manifest: the file is corrupt or changed")
            if key is not None:
                _verified[key] = True


@contextlib.contextmanager
def writer_lock(target: str | os.PathLike) -> Iterator[Path]:
    """Hold ``.NAME.lock`` beside ``target`` while writing it: a second writer is refused, a lock left
    by a process that died is taken over."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = target.parent / f".{target.name}.lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _alive(pid):
                raise ClickLogError(f"{target}: another ultr process (pid {pid}) is writing it; wait for it to "
                                    f"finish (or remove {lock} if that process is gone)") from None
            lock.unlink(missing_ok=True)  # stale: its writer died
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(str(os.getpid()))
        break
    else:  # pragma: no cover - a race with a third process
        raise ClickLogError(f"{target}: could not take the lock {lock}")
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def staged_directory(target: str | os.PathLike, overwrite: bool = False,
                     resume_key: str | None = None) -> Iterator[Path]:
    """Build a log directory beside ``target`` and swap it in only when the block succeeds.

    The old log (with ``overwrite``) stays whole and readable until the new one is complete; an
    interrupted build leaves only a hidden staging directory, removed by the next build. Hold
    :func:`writer_lock` around it.

    ``resume_key`` (a digest of everything that defines the output) names the staging directory instead of
    the process: a build killed without cleaning up (a lost machine, ``SIGKILL``) leaves it behind, and the next
    build with the same key gets it back with the parts it had finished, so the writer can skip them. A build
    that fails with an exception still removes its staging directory.
    """
    target = Path(target)
    parent = target.parent
    stage = parent / (f".{target.name}.staging-{resume_key}" if resume_key else
                      f".{target.name}.staging-{os.getpid()}")
    for orphan in parent.glob(f".{target.name}.staging-*"):
        pid = orphan.name.rsplit("-", 1)[-1]
        if orphan != stage and not (pid.isdigit() and _alive(int(pid))):
            shutil.rmtree(orphan, ignore_errors=True)
    if target.exists():
        if not target.is_dir():
            raise ClickLogError(f"{target}: exists and is not a directory")
        content = [p for p in target.iterdir()]
        is_log = any(p.suffix == ".parquet" or p.name in (MANIFEST_NAME, SIMULATION_METADATA_NAME) for p in content)
        if is_log and not overwrite:
            raise ClickLogError(f"{target} already holds a click log; use --overwrite or another --out")
        if content and not is_log:
            raise ClickLogError(f"{target}: the directory is not empty and holds no click log; choose another --out")
    if resume_key is None:
        shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(exist_ok=True)
    try:
        yield stage
        old = parent / f".{target.name}.old-{os.getpid()}"
        if target.exists():
            os.rename(target, old)
        os.rename(stage, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def atomic_write_parquet(table: pa.Table, path: str | os.PathLike, **kwargs) -> Path:
    """Write ``table`` to ``path`` through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **kwargs)
    return Path(path)


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    """Write a text file through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_json(data, path: str | os.PathLike) -> Path:
    return atomic_write_text(json.dumps(data, indent=2) + "\n", path)


class ClickLogWriter:
    """Stream click-log tables into numbered Parquet files in a directory.

    Each file is written atomically (temporary name, then rename); a new file
    starts after ``rows_per_file`` rows.

    >>> # with ClickLogWriter("logs/") as writer: writer.write(table)
    """

    def __init__(self, directory: str | os.PathLike, rows_per_file: int = 5_000_000, prefix: str = "part"):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.rows_per_file = rows_per_file
        self.prefix = prefix
        self._file_index = 0
        self._writer: pq.ParquetWriter | None = None
        self._tmp: str | None = None
        self._rows_in_file = 0
        self.files: list[Path] = []
        self.rows_written = 0

    def _final_name(self) -> Path:
        return self.directory / f"{self.prefix}-{self._file_index:05d}.parquet"

    def write(self, table: pa.Table) -> None:
        while table.num_rows:
            if self._writer is None:
                fd, self._tmp = tempfile.mkstemp(prefix=".part.", suffix=".tmp", dir=self.directory)
                os.close(fd)
                self._writer = pq.ParquetWriter(self._tmp, table.schema)
                self._rows_in_file = 0
            room = self.rows_per_file - self._rows_in_file
            head, table = table.slice(0, room), table.slice(room)
            self._writer.write_table(head)
            self._rows_in_file += head.num_rows
            self.rows_written += head.num_rows
            if self._rows_in_file >= self.rows_per_file:
                self._close_file()

    def _close_file(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        final = self._final_name()
        os.replace(self._tmp, final)
        self.files.append(final)
        self._file_index += 1
        self._writer, self._tmp = None, None

    def close(self) -> None:
        self._close_file()

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            Path(self._tmp).unlink(missing_ok=True)
            self._writer, self._tmp = None, None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()


# ---------------------------------------------------------------------- reading
def click_log_files(path) -> list:
    """The Parquet files of a click log (a file, or a directory of ``*.parquet``): local paths for a path or a
    ``file://`` URI, :class:`~click_models.storage.Location` s for a log on another pyarrow filesystem."""
    from .storage import Location, log_location

    path = log_location(path)
    if not path.exists():
        raise ClickLogError(f"{path}: no such click log")
    if not path.is_dir():
        return [path]
    if (path / INCOMPLETE_NAME).exists():
        raise ClickLogError(f"{path}: the conversion that writes this log has not finished ({INCOMPLETE_NAME} "
                            "is there); rerun it to finish")
    files = path.files(".parquet") if isinstance(path, Location) else \
        sorted(p for p in path.rglob("*.parquet") if not p.name.startswith("."))
    if (path / MANIFEST_NAME).exists():
        verify_log_directory(path, files)
    elif (path / SIMULATION_METADATA_NAME).exists():
        raise ClickLogError(f"{path}: a simulated log without {MANIFEST_NAME}: its simulation did not finish "
                            "(or the log predates manifests); simulate it again with --overwrite")
    if not files:
        raise ClickLogError(f"{path}: no .parquet files in this directory")
    return files


def read_schema(file) -> pa.Schema:
    """The Arrow schema of a Parquet file (a local path or a :class:`~click_models.storage.Location`)."""
    if hasattr(file, "filesystem"):
        return pq.read_schema(file.path, filesystem=file.filesystem)
    return pq.read_schema(file)


def parquet_file(file) -> pq.ParquetFile:
    """A Parquet file reader of a local path or a :class:`~click_models.storage.Location`."""
    return pq.ParquetFile(file.open() if hasattr(file, "filesystem") else file)


def check_schema(schema: pa.Schema, where: str) -> None:
    """Raise :class:`ClickLogError` naming ``where`` when ``schema`` breaks the format."""
    for name, dtype in REQUIRED_COLUMNS.items():
        if name not in schema.names:
            raise ClickLogError(f"{where}: missing required column {name!r} (has {schema.names})")
    for name, dtype in REQUIRED_COLUMNS.items():
        if schema.field(name).type != dtype:
            raise ClickLogError(f"{where}: column {name!r} must be {dtype}, found {schema.field(name).type}")
    for name, dtype in OPTIONAL_COLUMNS.items():
        if name in schema.names:
            actual = schema.field(name).type
            if pa.types.is_list(dtype) != (pa.types.is_list(actual) or pa.types.is_large_list(actual)):
                raise ClickLogError(f"{where}: column {name!r} must be {dtype}, found {actual}")
            value, expected = (actual.value_type, dtype.value_type) if pa.types.is_list(dtype) else (actual, dtype)
            if _kind(value) != _kind(expected):
                raise ClickLogError(f"{where}: column {name!r} must be {dtype}, found {actual}")


def _kind(dtype: pa.DataType) -> str:
    if pa.types.is_boolean(dtype):
        return "bool"
    if pa.types.is_integer(dtype):
        return "integer"
    if pa.types.is_floating(dtype):
        return "float"
    return str(dtype)


def _dataset(path) -> tuple[ds.Dataset, list[Path]]:
    files = click_log_files(path)
    for file in files:
        check_schema(read_schema(file), str(file))
    if files and hasattr(files[0], "filesystem"):
        return ds.dataset([f.path for f in files], filesystem=files[0].filesystem, format="parquet"), files
    return ds.dataset([str(f) for f in files], format="parquet"), files


def infer_list_size(path: str | os.PathLike) -> int:
    """Largest display rank in the log (from file metadata when present, else a scan)."""
    files = click_log_files(path)
    sizes = []
    for file in files:
        schema = read_schema(file)
        meta = schema.metadata or {}
        if LIST_SIZE_METADATA_KEY in meta:
            sizes.append(int(meta[LIST_SIZE_METADATA_KEY]))
            continue
        column = "positions" if "positions" in schema.names else "doc_ids"
        if column == "positions":  # the row groups' statistics hold the largest rank
            largest = _statistics_max(parquet_file(file).metadata, "positions")
            if largest is not None:
                sizes.append(largest)
                continue
        for batch in parquet_file(file).iter_batches(columns=[column]):
            array = batch.column(0)
            if column == "positions":
                flat = pc.list_flatten(array)
                sizes.append(int(pc.max(flat).as_py() or 0))
            else:
                sizes.append(int(pc.max(pc.list_value_length(array)).as_py() or 0))
    return max(sizes) if sizes else 0


def _statistics_max(metadata, column: str) -> int | None:
    """The largest value of a list column's leaf in every row group's statistics (None when one lacks them)."""
    leaf = next((i for i in range(metadata.num_columns)
                 if metadata.schema.column(i).path.split(".")[0] == column), None)
    if leaf is None:
        return None
    largest = 0
    for group in range(metadata.num_row_groups):
        chunk = metadata.row_group(group).column(leaf)
        if chunk.num_values and not (chunk.statistics is not None and chunk.statistics.has_min_max):
            return None
        if chunk.num_values and chunk.statistics.max is not None:
            largest = max(largest, int(chunk.statistics.max))
    return largest


def count_clicks(path: str | os.PathLike) -> int:
    """The clicks in a log (reads the ``clicks`` column only)."""
    total = 0
    for file in click_log_files(path):
        for batch in parquet_file(file).iter_batches(columns=["clicks"]):
            total += int(pc.sum(pc.list_flatten(batch.column(0))).as_py() or 0)
    return total


def count_sessions(path: str | os.PathLike) -> int:
    return sum(parquet_file(f).metadata.num_rows for f in click_log_files(path))


def _pad(list_array: pa.Array, slot: np.ndarray, rows: np.ndarray, B: int, K: int, dtype) -> np.ndarray:
    out = np.zeros((B, K), dtype=dtype)
    values = pc.list_flatten(list_array).to_numpy(zero_copy_only=False)
    out[rows, slot] = values
    return out


def _to_padded(batch: pa.RecordBatch, batch_size: int, K: int, where: str) -> ClickLogBatch:
    n = batch.num_rows
    names = batch.schema.names
    doc_ids = batch.column("doc_ids")
    clicks = batch.column("clicks")
    lengths = pc.list_value_length(doc_ids).to_numpy(zero_copy_only=False)
    click_lengths = pc.list_value_length(clicks).to_numpy(zero_copy_only=False)
    for name in ("session_id", "query_id", "doc_ids", "clicks"):
        column = batch.column(name)
        nulls = column.null_count + (pc.list_flatten(column).null_count if pa.types.is_list(column.type) else 0)
        if nulls:
            raise ClickLogError(f"{where}: column {name!r} holds {nulls} null values")
    if not np.array_equal(lengths, click_lengths):
        bad = int(np.flatnonzero(lengths != click_lengths)[0])
        sid = batch.column("session_id")[bad].as_py()
        raise ClickLogError(f"{where}: session {sid} has {lengths[bad]} doc_ids but {click_lengths[bad]} clicks")
    rows = np.repeat(np.arange(n), lengths)
    if "positions" in names and batch.column("positions").null_count < n:
        positions = batch.column("positions")
        if not np.array_equal(pc.list_value_length(positions).to_numpy(zero_copy_only=False), lengths):
            raise ClickLogError(f"{where}: positions and doc_ids differ in length")
        slot = pc.list_flatten(positions).to_numpy(zero_copy_only=False).astype(np.int64) - 1
        if slot.size and (slot.min() < 0 or slot.max() >= K):
            raise ClickLogError(f"{where}: positions must lie in 1..{K}, found {slot.min() + 1}..{slot.max() + 1}")
    else:
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        slot = np.arange(rows.size) - starts
        if slot.size and slot.max() >= K:
            raise ClickLogError(f"{where}: a session has {slot.max() + 1} documents, more than list size {K}")
    B = batch_size
    mask = np.zeros((B, K), bool)
    mask[rows, slot] = True
    if mask.sum() != rows.size:
        raise ClickLogError(f"{where}: a session lists the same position twice")
    row_valid = np.zeros(B, bool)
    row_valid[:n] = True

    def column(name, dtype, fill=0):
        out = np.full(B, fill, dtype)
        out[:n] = batch.column(name).to_numpy(zero_copy_only=False)
        return out

    padded_doc_ids = _pad(doc_ids, slot, rows, B, K, np.int64)
    ordered = np.sort(np.where(mask, padded_doc_ids, np.iinfo(np.int64).min), axis=1)
    repeated = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] != np.iinfo(np.int64).min)
    if repeated.any():  # one document at two ranks of one session: its cells would count it twice
        bad = int(np.flatnonzero(repeated.any(axis=1))[0])
        doc = int(ordered[bad, 1:][repeated[bad]][0])
        raise ClickLogError(f"{where}: session {batch.column('session_id')[bad].as_py()} lists doc_id {doc} "
                            "more than once")
    result = ClickLogBatch(
        session_id=column("session_id", np.int64),
        query_id=column("query_id", np.int64),
        doc_ids=padded_doc_ids,
        clicks=_pad(clicks, slot, rows, B, K, bool),
        mask=mask,
        row_valid=row_valid,
    )
    for name in ("labels", "examination"):
        if name in names:
            values = batch.column(name)
            value_lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
            if values.null_count or not np.array_equal(value_lengths, lengths):
                bad = int(np.flatnonzero(~np.equal(value_lengths, lengths))[0]) if not values.null_count else \
                    int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
                sid = batch.column("session_id")[bad].as_py()
                raise ClickLogError(f"{where}: session {sid}: {name} does not list one value per document")
    if "labels" in names:
        grades = pc.min_max(pc.list_flatten(batch.column("labels"))).as_py()
        if grades["min"] is not None and not 0 <= grades["min"] <= grades["max"] <= 127:
            raise ClickLogError(f"{where}: labels must be grades in 0..127, found {grades['min']}..{grades['max']}")
        result.labels = _pad(batch.column("labels"), slot, rows, B, K, np.int8)
    if "examination" in names:
        result.examination = _pad(batch.column("examination"), slot, rows, B, K, np.float32)
        if not np.all(np.isfinite(result.examination[mask])) or np.any(result.examination[mask] < 0) \
                or np.any(result.examination[mask] > 1):
            raise ClickLogError(f"{where}: the examination column holds values outside [0, 1] (or NaN)")
    if "policy" in names:
        result.policy = column("policy", np.int32)
    if "intervention" in names:
        result.intervention = column("intervention", np.int32)
    return result


#: record batches the scanner reads ahead of the consumer (each at most ``batch_size`` rows)
READ_AHEAD_BATCHES = 2


def iter_click_log(
    path: str | os.PathLike,
    batch_size: int = 65_536,
    list_size: int | None = None,
    columns: Iterable[str] | None = None,
    filter: ds.Expression | None = None,
) -> Iterator[ClickLogBatch]:
    """Stream a click log as fixed-size padded batches.

    Every batch has ``batch_size`` rows (the last one padded, ``row_valid``
    False) and ``list_size`` positions (default: the log's largest rank).
    A thread reads and pads the next batches while the caller works on this one (both cores busy), with at
    most :data:`PREFETCHED_BATCHES` batches waiting, so memory stays bounded.
    """
    return _prefetched(_padded_batches(path, batch_size, list_size, columns, filter), PREFETCHED_BATCHES)


#: padded batches read ahead of the consumer by :func:`iter_click_log`'s reader thread
PREFETCHED_BATCHES = 2


def _prefetched(batches: Iterator, depth: int) -> Iterator:
    """``batches`` produced by a background thread, at most ``depth`` ahead; errors re-raised in the consumer, and
    the thread stopped when the consumer stops early."""
    import queue
    import threading

    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def hand_over(item) -> bool:
        """Put ``item`` in a slot; False when the consumer stopped first."""
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in batches:
                if not hand_over(item):
                    return
            outcome = done
        except BaseException as error:  # handed to the consumer
            outcome = error
        hand_over(outcome)

    worker = threading.Thread(target=produce, name="ultr-log-reader", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def _padded_batches(path, batch_size: int, list_size: int | None, columns, filter) -> Iterator[ClickLogBatch]:
    dataset, files = _dataset(path)
    K = list_size or infer_list_size(path)
    if K <= 0:
        return
    wanted = None
    if columns is not None:
        wanted = [c for c in dict.fromkeys([*REQUIRED_COLUMNS, *columns]) if c in dataset.schema.names]
        if "positions" in dataset.schema.names and "positions" not in wanted:
            wanted.append("positions")
    where = str(path)
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    # bounded read-ahead, one decoding thread: Arrow's defaults decode several row groups ahead (peak memory grew
    # with the log; measured in benchmarks/memory.py)
    for record_batch in dataset.to_batches(columns=wanted, filter=filter, batch_size=batch_size,
                                           batch_readahead=READ_AHEAD_BATCHES, fragment_readahead=1,
                                           use_threads=False):
        if record_batch.num_rows == 0:
            continue
        pending.append(record_batch)
        pending_rows += record_batch.num_rows
        while pending_rows >= batch_size:
            table = pa.Table.from_batches(pending)
            head = table.slice(0, batch_size).combine_chunks().to_batches()[0]
            rest = table.slice(batch_size)
            yield _to_padded(head, batch_size, K, where)
            pending = rest.combine_chunks().to_batches() if rest.num_rows else []
            pending_rows = rest.num_rows
    if pending_rows:
        head = pa.Table.from_batches(pending).combine_chunks().to_batches()[0]
        yield _to_padded(head, batch_size, K, where)


def read_click_log(path: str | os.PathLike, list_size: int | None = None) -> ClickLogBatch:
    """Read a whole click log as one padded batch (for small logs and tests)."""
    n = count_sessions(path)
    batches = list(iter_click_log(path, batch_size=max(n, 1), list_size=list_size))
    if not batches:
        raise ClickLogError(f"{path}: the click log has no sessions")
    return batches[0]


# ---------------------------------------------------------------------- documents
class DocumentIndex:
    """Dense ids for the (query_id, doc_id) pairs of a log.

    ``lookup`` maps pairs to ``0..size-1`` and unseen or masked pairs to ``-1``.
    """

    def __init__(self, query_ids: np.ndarray, doc_ids: np.ndarray):
        self.query_ids = np.asarray(query_ids, np.int64)
        self.doc_ids = np.asarray(doc_ids, np.int64)
        keys = self._packed(self.query_ids, self.doc_ids)
        if keys is not None:
            self._index = pd.Index(keys)
        else:
            self._index = pd.MultiIndex.from_arrays([self.query_ids, self.doc_ids])
        if not self._index.is_unique:
            raise ValueError("DocumentIndex: duplicate (query_id, doc_id) pairs")

    @staticmethod
    def _packed(query_ids: np.ndarray, doc_ids: np.ndarray) -> np.ndarray | None:
        """One int64 per pair when ids are small enough (fast hashing), else None."""
        if query_ids.size == 0:
            return np.zeros(0, np.int64)
        if query_ids.min() < 0 or query_ids.max() >= 2**31 or doc_ids.min() < 0 or doc_ids.max() >= 2**32:
            return None
        return (query_ids << 32) | doc_ids

    @property
    def size(self) -> int:
        return len(self.query_ids)

    @classmethod
    def from_batches(cls, batches: Iterable[ClickLogBatch]) -> "DocumentIndex":
        frames = []
        for batch in batches:
            valid = batch.mask & batch.row_valid[:, None]
            q = np.broadcast_to(batch.query_id[:, None], batch.doc_ids.shape)[valid]
            frame = pd.DataFrame({"query_id": q, "doc_id": batch.doc_ids[valid]}).drop_duplicates()
            frames.append(frame)
            if len(frames) > 16:
                frames = [pd.concat(frames).drop_duplicates()]
        if not frames:
            return cls(np.zeros(0, np.int64), np.zeros(0, np.int64))
        pairs = pd.concat(frames).drop_duplicates().sort_values(["query_id", "doc_id"])
        return cls(pairs["query_id"].to_numpy(), pairs["doc_id"].to_numpy())

    def lookup(self, query_id: np.ndarray, doc_ids: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """``[B, K]`` int32 dense ids, ``-1`` where unseen or masked."""
        q = np.broadcast_to(np.asarray(query_id)[:, None], doc_ids.shape).ravel()
        d = np.asarray(doc_ids, np.int64).ravel()
        if self.size == 0:
            index = np.full(q.shape, -1, np.int64)
        elif isinstance(self._index, pd.MultiIndex):
            index = self._index.get_indexer(pd.MultiIndex.from_arrays([q, d]))
        else:
            in_range = (q >= 0) & (q < 2**31) & (d >= 0) & (d < 2**32)
            keys = np.where(in_range, (q << 32) | np.where(in_range, d, 0), -1)
            index = np.where(in_range, self._index.get_indexer(keys), -1)
        index = index.reshape(doc_ids.shape).astype(np.int32)
        if mask is not None:
            index = np.where(mask, index, -1)
        return index

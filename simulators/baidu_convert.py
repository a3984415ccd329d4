"""``ultr baidu convert``: Baidu-ULTR partitions -> a click log, corpus statistics, features and annotations.

Output directory::

    logs/              the click log (one row per session; ``manifest.json`` written last)
    documents/         per partition: each distinct (query_id, doc_id) of a block with its tokens
    features/          per partition: query_id, doc_id and the 12 lexical features (simulators.lexical)
    doc_ids.parquet    the document id table: doc_id <-> url_md5
    corpus.parquet     corpus statistics (document and collection frequencies per token and field)
    annotations.parquet  the expert annotations with the same features (with ``--annotations``)
    baidu.json         what was converted: partitions, sessions kept and dropped, bad lines, times

Each partition is one task of a process pool, writes its files under temporary names and renames them when
it is complete (its ``.work/part-NNNNN.json`` last), so a rerun skips finished partitions and redoes the rest.
Corpus statistics count each distinct document (url) once per partition and add up over partitions.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from click_models.engine import distributes
from click_models.logs import (INCOMPLETE_NAME, ClickLogError, atomic_path, atomic_write_json, atomic_write_parquet,
                               file_sha256, write_manifest, writer_lock)

from .baidu import BaiduFormatError, ParseStats, first_rows, iter_partition
from .lexical import FEATURE_NAMES, CorpusStatistics

WORK = ".work"


def raw_partitions(raw: str | os.PathLike) -> list[Path]:
    """The gzip partitions of a raw directory (``part-*.gz``, sorted), or one partition file."""
    raw = Path(raw)
    if raw.is_file():
        return [raw]
    if not raw.is_dir():
        raise BaiduFormatError(f"{raw}: no such directory of Baidu-ULTR partitions")
    parts = sorted(p for p in raw.iterdir() if p.is_file() and p.name.endswith(".gz"))
    if not parts:
        raise BaiduFormatError(f"{raw}: no .gz partitions in this directory")
    return parts


def _partition_name(index: int) -> str:
    return f"part-{index:05d}"


def convert_partition(path: str | os.PathLike, index: int, out: str | os.PathLike, *,
                      skip_bad_lines: bool = False, block_bytes: int = 16 << 20) -> dict:
    """Convert one partition (a pool task): its sessions, documents, document ids and corpus statistics.

    Returns the partition's summary (also written, last, to ``.work/part-NNNNN.json``).
    """
    started = time.perf_counter()
    out = Path(out)
    name = _partition_name(index)
    work = out / WORK
    targets = {
        "sessions": out / "logs" / f"{name}.parquet",
        "documents": out / "documents" / f"{name}.parquet",
        "doc_ids": work / f"{name}.doc_ids.parquet",
        "stats": work / f"{name}.corpus.parquet",
    }
    for target in targets.values():
        target.parent.mkdir(parents=True, exist_ok=True)
    stats = ParseStats()
    corpus = CorpusStatistics()
    seen_docs = np.zeros(0, np.int64)  # sorted: documents already in this partition's statistics
    url_tables = []
    max_position = 0
    with contextlib.ExitStack() as stack:
        temporary = {key: stack.enter_context(atomic_path(targets[key])) for key in ("sessions", "documents")}
        writers: dict[str, pq.ParquetWriter] = {}

        def write(key: str, table: pa.Table) -> None:
            if key not in writers:
                writers[key] = pq.ParquetWriter(temporary[key], table.schema)
            writers[key].write_table(table)

        try:
            for block in iter_partition(path, partition_index=index, block_bytes=block_bytes,
                                        skip_bad_lines=skip_bad_lines):
                stats.add(block.stats)
                documents = block.documents
                if block.sessions.num_rows:
                    positions = block.sessions.column("positions").combine_chunks().flatten()
                    max_position = max(max_position, int(positions.to_numpy().max()))
                q = documents.column("query_id").to_numpy()
                d = documents.column("doc_id").to_numpy()
                # documents new to this partition go into the corpus statistics and the id table
                doc_first = first_rows(d)
                new_rows = doc_first[~np.isin(d[doc_first], seen_docs)]
                corpus.add_documents(documents.column("title").take(pa.array(new_rows)),
                                     documents.column("abstract").take(pa.array(new_rows)))
                seen_docs = np.union1d(seen_docs, d[new_rows])
                url_tables.append(documents.select(["doc_id", "url_md5"]).take(pa.array(new_rows)))
                write("sessions", block.sessions)
                # each distinct (query, doc) pair of the block, for the feature table
                write("documents", documents.drop_columns(["url_md5"]).take(pa.array(first_rows(q, d))))
            for key in ("sessions", "documents"):
                if key not in writers:  # a partition with no session left
                    write(key, _empty_tables()[key])
        finally:
            for writer in writers.values():
                writer.close()
    urls = pa.concat_tables(url_tables) if url_tables else _empty_tables()["doc_ids"]
    atomic_write_parquet(urls, targets["doc_ids"])
    corpus.save(targets["stats"])
    summary = {"partition": Path(path).name, "index": index, **dataclasses.asdict(stats),
               "distinct_documents": int(len(seen_docs)), "max_position": max_position,
               "seconds": round(time.perf_counter() - started, 3)}
    atomic_write_json(summary, work / f"{name}.json")
    return summary


def _empty_tables() -> dict:
    from .baidu import parse_block

    empty = parse_block(b"", where="empty")
    return {"sessions": empty.sessions, "documents": empty.documents.drop_columns(["url_md5"]),
            "doc_ids": empty.documents.select(["doc_id", "url_md5"])}


# ---------------------------------------------------------------------- the whole conversion
def _pool(workers: int):
    # spawn: the parent may hold JAX threads, which fork would copy
    return concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def _apply(task: tuple, *, function):
    """One engine task: ``function(*task)``."""
    return function(*task)


def _run_tasks(function, tasks: list[tuple], workers: int, on_done, engine=None) -> None:
    if distributes(engine):  # one Ray task per partition, results as they come
        engine.map(_apply, tasks, shared={"function": function}, progress=on_done)
        return
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            on_done(function(*task))
        return
    with _pool(min(workers, len(tasks))) as pool:
        futures = [pool.submit(function, *task) for task in tasks]
        try:
            for future in concurrent.futures.as_completed(futures):
                on_done(future.result())
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def partition_features(index: int, out: str | os.PathLike, corpus_digest: str) -> dict:
    """The lexical features of one converted partition's documents (a pool task); skipped when done."""
    out = Path(out)
    name = _partition_name(index)
    target = out / "features" / f"{name}.parquet"
    if target.exists():
        meta = pq.read_schema(target).metadata or {}
        if meta.get(CORPUS_KEY, b"").decode() == corpus_digest:
            return {"index": index, "skipped": True}
    corpus = CorpusStatistics.load(out / "corpus.parquet")
    source = pq.ParquetFile(out / "documents" / f"{name}.parquet")
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        writer = None
        try:
            for batch in source.iter_batches(batch_size=65_536):
                table = features_table(batch, corpus).replace_schema_metadata(
                    {CORPUS_KEY: corpus_digest.encode(), b"ultr.features": json.dumps(FEATURE_NAMES).encode()})
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
            if writer is None:
                empty = features_table(_empty_tables()["documents"], corpus).replace_schema_metadata(
                    {CORPUS_KEY: corpus_digest.encode(), b"ultr.features": json.dumps(FEATURE_NAMES).encode()})
                writer = pq.ParquetWriter(tmp, empty.schema)
                writer.write_table(empty)
        finally:
            if writer is not None:
                writer.close()
    return {"index": index, "skipped": False}


CORPUS_KEY = b"ultr.corpus_sha256"


def features_table(documents, corpus: CorpusStatistics) -> pa.Table:
    """query_id, doc_id and ``features`` (fixed_size_list<float32>[12]) of documents with token columns."""
    values = corpus.features(documents.column("query"), documents.column("title"), documents.column("abstract"))
    flat = pa.array(values.astype(np.float32).reshape(-1), pa.float32())
    return pa.table({"query_id": documents.column("query_id"), "doc_id": documents.column("doc_id"),
                     "features": pa.FixedSizeListArray.from_arrays(flat, len(FEATURE_NAMES))})


def convert(raw: str | os.PathLike, out: str | os.PathLike, *, annotations: str | os.PathLike | None = None,
            workers: int = 1, skip_bad_lines: bool = False, progress: bool = False,
            block_bytes: int = 16 << 20, engine=None) -> dict:
    """Convert Baidu-ULTR partitions (and optionally the annotation file) into ``out`` (see module doc).

    Resumes: partitions finished by an earlier run with the same inputs are skipped. Returns the summary
    written to ``out/baidu.json``. ``engine`` (:mod:`click_models.engine`; default: ``workers`` local
    processes) runs a task per raw partition, then a task per partition's features; the corpus statistics
    are the sum of the partitions' counts. With ``ray``, ``out`` must be on storage every worker sees.
    """
    from tqdm import tqdm

    started = time.perf_counter()
    out = Path(out)
    parts = raw_partitions(raw)
    if out.exists() and not out.is_dir():
        raise ClickLogError(f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    with writer_lock(out / "baidu.json"):
        work = out / WORK
        work.mkdir(exist_ok=True)
        logs = out / "logs"
        logs.mkdir(exist_ok=True)
        (logs / INCOMPLETE_NAME).write_text("a Baidu-ULTR conversion is writing this log\n")
        (logs / "manifest.json").unlink(missing_ok=True)
        sources = {_partition_name(i): p.name for i, p in enumerate(parts)}
        previous = work / "sources.json"
        if previous.exists() and json.loads(previous.read_text()) != sources:
            raise ClickLogError(f"{out}: holds a conversion of other partitions ({previous}); choose another --out")
        atomic_write_json(sources, previous)
        summaries: dict[int, dict] = {}
        todo = []
        for i, part in enumerate(parts):
            done = work / f"{_partition_name(i)}.json"
            if done.exists():
                summaries[i] = json.loads(done.read_text())
            else:
                todo.append((str(part), i, str(out)))
        bar = tqdm(total=len(parts), initial=len(parts) - len(todo), unit="partition", desc="convert",
                   disable=not progress)
        sessions = sum(s["sessions_kept"] for s in summaries.values())

        def finished(summary):
            nonlocal sessions
            summaries[summary["index"]] = summary
            sessions += summary["sessions_kept"]
            bar.set_postfix(sessions=f"{sessions:,}")
            bar.update()

        try:
            _run_tasks(_convert_task, [(*t, skip_bad_lines, block_bytes) for t in todo], workers, finished, engine)
        finally:
            bar.close()
        # corpus statistics and the document id table of all partitions
        corpus = CorpusStatistics()
        for i in range(len(parts)):
            corpus.merge(CorpusStatistics.load(work / f"{_partition_name(i)}.corpus.parquet"))
        corpus.save(out / "corpus.parquet")
        digest = file_sha256(out / "corpus.parquet")
        _merge_doc_ids([work / f"{_partition_name(i)}.doc_ids.parquet" for i in range(len(parts))],
                       out / "doc_ids.parquet")
        feature_bar = tqdm(total=len(parts), unit="partition", desc="features", disable=not progress)
        try:
            _run_tasks(partition_features, [(i, str(out), digest) for i in range(len(parts))], workers,
                       lambda _: feature_bar.update(), engine)
        finally:
            feature_bar.close()
        annotation_summary = None
        if annotations is not None:
            from .baidu import annotations_table

            table = annotations_table(annotations, corpus)
            atomic_write_parquet(table, out / "annotations.parquet")
            annotation_summary = {"file": str(annotations), "rows": table.num_rows,
                                  "queries": len(set(table.column("query_id").to_pylist()))}
        total = ParseStats()
        for summary in summaries.values():
            total.add(ParseStats(**{k: summary[k] for k in dataclasses.asdict(ParseStats())}))
        result = {
            "format": 1, "partitions": [summaries[i] for i in range(len(parts))], "total": dataclasses.asdict(total),
            "corpus": {"documents": corpus.num_documents, "total_length": corpus.total_length,
                       "sha256": digest},
            "features": list(FEATURE_NAMES), "annotations": annotation_summary,
            "seconds": round(time.perf_counter() - started, 3),
        }
        write_manifest(logs, extra={"source": "baidu-ultr", "partitions": [p.name for p in parts]})
        (logs / INCOMPLETE_NAME).unlink(missing_ok=True)
        atomic_write_json(result, out / "baidu.json")
    return result


def _convert_task(path, index, out, skip_bad_lines, block_bytes):
    return convert_partition(path, index, out, skip_bad_lines=skip_bad_lines, block_bytes=block_bytes)


def _merge_doc_ids(files: list[Path], target: Path) -> None:
    """One doc_id <-> url_md5 table; two urls with one id (a collision of 60-bit ids) is an error."""
    table = pa.concat_tables([pq.read_table(f) for f in files]) if files else _empty_tables()["doc_ids"]
    if table.num_rows:
        grouped = table.group_by("doc_id").aggregate([("url_md5", "count_distinct"), ("url_md5", "min")])
        clash = grouped.filter(pc.greater(grouped.column("url_md5_count_distinct"), 1))
        if clash.num_rows:
            raise ClickLogError(f"doc_id {clash.column('doc_id')[0].as_py()} stands for two url_md5 values: "
                                "the 60-bit ids collide; report this")
        table = pa.table({"doc_id": grouped.column("doc_id"), "url_md5": grouped.column("url_md5_min")})
        table = table.sort_by("doc_id")
    atomic_write_parquet(table, target)


# ---------------------------------------------------------------------- Hager et al.'s preprocessed release
#: list columns of the Feather click files (one row per query) and their click-log names
FEATHER_SESSION_COLUMNS = {"click": "clicks", "position": "positions", "media_type": "media_type",
                           "displayed_time": "displayed_time", "serp_height": "serp_height",
                           "slipoff_count_after_click": "slipoff_count"}
EMBEDDING = "query_document_embedding"
EMBEDDING_SIZE = 768


def feather_files(path: str | os.PathLike) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    files = sorted(p for p in path.glob("*.feather")) if path.is_dir() else []
    if not files:
        raise BaiduFormatError(f"{path}: no .feather files (the preprocessed Baidu-ULTR release)")
    return files


def _read_feather(path: Path) -> pa.Table:
    import pyarrow.feather as feather

    try:
        return feather.read_table(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise BaiduFormatError(f"{path}: not a readable Feather (Arrow IPC) file ({error})") from None


def _query_ids(table: pa.Table, where: str) -> np.ndarray:
    from .baidu import stable_id

    for name in ("query_md5", "query_id"):
        if name in table.column_names:
            return stable_id(pc.cast(table.column(name), pa.string()))
    raise BaiduFormatError(f"{where}: no query_md5 or query_id column")


def _list_column(table: pa.Table, name: str, where: str, lengths: np.ndarray) -> pa.Array:
    if name not in table.column_names:
        raise BaiduFormatError(f"{where}: missing column {name!r} (has {table.column_names})")
    column = table.column(name).combine_chunks()
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
        raise BaiduFormatError(f"{where}: column {name!r} must be a list per query, found {column.type}")
    if column.null_count or not np.array_equal(pc.list_value_length(column).to_numpy(zero_copy_only=False),
                                               lengths):
        raise BaiduFormatError(f"{where}: column {name!r} does not hold one value per document of each query")
    return column


def _embeddings(table: pa.Table, where: str, lengths: np.ndarray) -> pa.Array:
    """``query_document_embedding`` -> fixed_size_list<halffloat>[768] per document."""
    column = _list_column(table, EMBEDDING, where, lengths)
    rows = pc.list_flatten(column)
    if pa.types.is_fixed_size_list(rows.type):
        values, width = rows.flatten(), rows.type.list_size
    else:
        width_set = set(pc.list_value_length(rows).to_numpy(zero_copy_only=False).tolist())
        if len(width_set) > 1:
            raise BaiduFormatError(f"{where}: {EMBEDDING} rows differ in length ({sorted(width_set)[:3]})")
        values, width = pc.list_flatten(rows), (width_set.pop() if width_set else EMBEDDING_SIZE)
    if width != EMBEDDING_SIZE:
        raise BaiduFormatError(f"{where}: {EMBEDDING} has {width} values per document, expected {EMBEDDING_SIZE}")
    values = pc.cast(values, pa.float16())
    if not np.all(np.isfinite(values.to_numpy(zero_copy_only=False).astype(np.float32))):
        raise BaiduFormatError(f"{where}: {EMBEDDING} holds NaN or infinite values")
    return pa.FixedSizeListArray.from_arrays(values, EMBEDDING_SIZE)


def _lexical(table: pa.Table, where: str, lengths: np.ndarray) -> np.ndarray:
    columns = []
    for name in FEATURE_NAMES:
        values = pc.list_flatten(_list_column(table, name, where, lengths)).to_numpy(zero_copy_only=False)
        columns.append(values.astype(np.float32))
    features = np.stack(columns, axis=1) if columns else np.zeros((int(lengths.sum()), 0), np.float32)
    if not np.all(np.isfinite(features)):
        raise BaiduFormatError(f"{where}: a lexical feature column holds NaN or infinite values")
    return features


def _doc_ids(table: pa.Table, where: str, lengths: np.ndarray) -> tuple[np.ndarray, pa.Array]:
    from .baidu import _hex_digits, doc_ids_from_md5

    for name in ("url_md5", "text_md5"):
        if name in table.column_names:
            urls = pc.cast(pc.list_flatten(_list_column(table, name, where, lengths)), pa.string())
            digits, ok = _hex_digits(urls)
            ids, hex_ok = doc_ids_from_md5(digits)
            if not (ok & hex_ok).all():
                raise BaiduFormatError(f"{where}: column {name!r} holds a value that is not 32 hex digits")
            return ids, urls
    raise BaiduFormatError(f"{where}: no url_md5 (or text_md5) column")


def _features_table(query_id, doc_id, lexical, embedding) -> pa.Table:
    flat = pa.array(lexical.reshape(-1), pa.float32())
    return pa.table({"query_id": pa.array(query_id), "doc_id": pa.array(doc_id),
                     "features": pa.FixedSizeListArray.from_arrays(flat, len(FEATURE_NAMES)),
                     "embedding": embedding})


def convert_feather(clicks: str | os.PathLike, out: str | os.PathLike, *,
                    annotations: str | os.PathLike | None = None) -> dict:
    """Convert Hager et al.'s Feather release (one row per query, list columns) into ``out``.

    Writes ``logs/`` (the click log), ``features/`` (the release's 12 lexical features and its 768-value
    float16 ``query_document_embedding``) and, from an annotation Feather file, ``annotations.parquet``; the
    result is read by ``--data baidu:OUT`` (feature sets ``lexical``, ``embedding``, ``lexical+embedding``).
    """
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = feather_files(clicks)
    with writer_lock(out / "baidu.json"):
        logs = out / "logs"
        logs.mkdir(exist_ok=True)
        (logs / INCOMPLETE_NAME).write_text("a Baidu-ULTR conversion is writing this log\n")
        (logs / "manifest.json").unlink(missing_ok=True)
        sessions = 0
        for index, path in enumerate(files):
            where = path.name
            table = _read_feather(path)
            if "click" not in table.column_names:
                raise BaiduFormatError(f"{where}: missing column 'click' (has {table.column_names})")
            lengths = pc.list_value_length(table.column("click").combine_chunks()).fill_null(0).to_numpy(
                zero_copy_only=False)
            query_id = _query_ids(table, where)
            doc_id, _ = _doc_ids(table, where, lengths)
            offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
            columns = {"session_id": pa.array((np.int64(index) << 32) + np.arange(table.num_rows, dtype=np.int64)),
                       "query_id": pa.array(query_id),
                       "doc_ids": pa.ListArray.from_arrays(offsets, pa.array(doc_id))}
            for source, target in FEATHER_SESSION_COLUMNS.items():
                if source not in table.column_names:
                    if source in ("click", "position"):
                        raise BaiduFormatError(f"{where}: missing column {source!r}")
                    continue
                values = pc.list_flatten(_list_column(table, source, where, lengths))
                dtype = {"clicks": pa.bool_(), "positions": pa.int16(), "displayed_time": pa.float32()}.get(
                    target, pa.int32())
                numbers = values.to_numpy(zero_copy_only=False)
                if target == "clicks" and not np.isin(numbers, (0, 1)).all():
                    raise BaiduFormatError(f"{where}: column 'click' holds values other than 0 and 1")
                if target == "positions" and numbers.size and (numbers.min() < 1 or numbers.max() > 30):
                    raise BaiduFormatError(f"{where}: column 'position' holds values outside 1..30")
                columns[target] = pa.ListArray.from_arrays(offsets, pc.cast(values, dtype))
            atomic_write_parquet(pa.table(columns), logs / f"{_partition_name(index)}.parquet")
            features = _features_table(np.repeat(query_id, lengths), doc_id, _lexical(table, where, lengths),
                                       _embeddings(table, where, lengths))
            atomic_write_parquet(features, out / "features" / f"{_partition_name(index)}.parquet")
            sessions += table.num_rows
        annotation_summary = None
        if annotations is not None:
            annotation_summary = _convert_feather_annotations(Path(annotations), out)
        write_manifest(logs, extra={"source": "baidu-ultr (Hager et al. Feather release)",
                                    "partitions": [p.name for p in files]})
        (logs / INCOMPLETE_NAME).unlink(missing_ok=True)
        result = {"format": 1, "source": "feather", "files": [p.name for p in files],
                  "total": {"sessions": sessions, "sessions_kept": sessions}, "features": list(FEATURE_NAMES),
                  "embedding": EMBEDDING_SIZE, "annotations": annotation_summary,
                  "seconds": round(time.perf_counter() - started, 3)}
        atomic_write_json(result, out / "baidu.json")
    return result


def _convert_feather_annotations(path: Path, out: Path) -> dict:
    from .baidu import MAX_GRADE

    where = path.name
    table = _read_feather(path)
    if "label" not in table.column_names or "frequency_bucket" not in table.column_names:
        raise BaiduFormatError(f"{where}: an annotation file needs 'label' (a list per query) and 'frequency_bucket'")
    lengths = pc.list_value_length(table.column("label").combine_chunks()).to_numpy(zero_copy_only=False)
    labels = pc.list_flatten(_list_column(table, "label", where, lengths)).to_numpy(zero_copy_only=False)
    if labels.size and (labels.min() < 0 or labels.max() > MAX_GRADE):
        raise BaiduFormatError(f"{where}: labels must lie in 0..{MAX_GRADE}")
    buckets = table.column("frequency_bucket").to_numpy()
    if buckets.size and (buckets.min() < 0 or buckets.max() > 9):
        raise BaiduFormatError(f"{where}: frequency_bucket must lie in 0..9")
    query_id = _query_ids(table, where)
    ordinal = np.concatenate([np.arange(n) for n in lengths]) if len(lengths) else np.zeros(0, np.int64)
    features = _features_table(np.repeat(query_id, lengths), ordinal.astype(np.int64),
                               _lexical(table, where, lengths), _embeddings(table, where, lengths))
    features = features.append_column("label", pa.array(labels.astype(np.int8))).append_column(
        "frequency_bucket", pa.array(np.repeat(buckets, lengths).astype(np.int8)))
    atomic_write_parquet(features, out / "annotations.parquet")
    return {"file": str(path), "rows": features.num_rows, "queries": int(table.num_rows)}

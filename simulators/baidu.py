"""Baidu-ULTR: the real search logs and expert annotations, read into ultr's formats.

Zou et al., "A Large Scale Search Dataset for Unbiased Learning to Rank" (NeurIPS 2022 Datasets and
Benchmarks) released 1.2B search sessions in gzip text partitions and an expert-annotated test set. The
cleaning and the lexical features follow Hager et al., "Unbiased Learning to Rank Meets Reality: Lessons from
Baidu's Large-Scale Search Dataset" (SIGIR 2024). See ``docs/baidu.md``.

A raw partition is tab-separated text. A *query line* (3 fields: ``qid, query tokens, reformulation``) starts a
session; each *document line* (32 fields) that follows is one displayed result: field 0 position (1-30),
1 url_md5, 2 title tokens, 3 abstract tokens, 4 media type, 5 click, 8 skip, 9 serp height, 10 displayed
time, 16 dwelling time, 21 slip-off count. Tokens are integer ids joined by ``\\x01``.

Parsing is vectorised: numpy finds the lines of a decompressed block and counts their fields; the document
lines go to Arrow's CSV reader (C++) as one buffer in which the query lines are blanked out, and Arrow casts
and splits the columns. No Python code runs per line or per session (a query's hash runs once per distinct
query of a block). ``benchmarks/baidu_parse.py`` compares it with a per-line Python parser.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from click_models.logs import ClickLogError

QUERY_FIELDS = 3
DOCUMENT_FIELDS = 32
#: document-line fields kept (index in the line)
FIELDS = {"position": 0, "url_md5": 1, "title": 2, "abstract": 3, "media_type": 4, "click": 5, "skip": 8,
          "serp_height": 9, "displayed_time": 10, "dwell_time": 16, "slipoff_count": 21}
MAX_POSITION = 30
#: a bad line with fewer fields than this is taken for a query line (its documents are dropped with it)
QUERY_LIKE_FIELDS = 8
#: title of a placeholder result (dropped; Hager et al. 2024)
PLACEHOLDER_TITLES = ("21429", "-")
#: title of the "what other people searched" box (kept, marked in ``related_searches``)
RELATED_SEARCHES_TITLE = "3742\x0111492\x0112169\x015061\x0116905"
#: sessions with fewer documents than this (after dropping placeholders) are dropped
MIN_DOCUMENTS = 5
TOKEN_SEPARATOR = "\x01"


class BaiduFormatError(ClickLogError):
    """A Baidu-ULTR file that breaks the format; the message names the file and line."""


def stable_id(values: pa.Array) -> np.ndarray:
    """A 63-bit id per string: the first 8 bytes of BLAKE2b (little-endian), top bit cleared.

    Used for query ids (of the query's token string), stable across partitions, runs and machines.
    Hashes each distinct value once.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    encoded = pc.dictionary_encode(values)
    dictionary = encoded.dictionary.to_pylist()
    ids = np.fromiter(
        (int.from_bytes(hashlib.blake2b(v.encode(), digest_size=8).digest(), "little") >> 1 for v in dictionary),
        np.int64, len(dictionary))
    return ids[encoded.indices.to_numpy(zero_copy_only=False)]


_HEX = np.full(256, -1, np.int64)
_HEX[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10)
_HEX[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16)
_HEX[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)
#: hex digits of url_md5 that make a document id (60 bits)
DOC_ID_DIGITS = 15


def doc_ids_from_md5(hex_bytes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[N, 32]`` uint8 hex digits -> (``[N]`` int64 ids: the first 15 hex digits as a number, ``[N]`` bool ok)."""
    nibbles = _HEX[hex_bytes]
    ok = (nibbles >= 0).all(axis=1)
    shifts = 4 * np.arange(DOC_ID_DIGITS - 1, -1, -1, dtype=np.int64)
    ids = (np.where(nibbles[:, :DOC_ID_DIGITS] >= 0, nibbles[:, :DOC_ID_DIGITS], 0) << shifts).sum(axis=1)
    return ids.astype(np.int64), ok


@dataclasses.dataclass
class _Lines:
    """Where the lines of a block of complete lines start and end, and their field counts."""

    buf: np.ndarray
    start: np.ndarray  # [n] first byte of each line
    end: np.ndarray  # [n] its newline
    nfields: np.ndarray  # [n] tabs + 1 (0 for a blank line)

    @classmethod
    def of(cls, data: bytes) -> "_Lines":
        buf = np.frombuffer(data, np.uint8)
        end = np.flatnonzero(buf == 10)
        start = np.concatenate([[0], end[:-1] + 1]).astype(np.int64)
        tabs = np.flatnonzero(buf == 9)
        tabs_per_line = np.diff(np.searchsorted(tabs, end), prepend=0)
        nfields = np.where(end > start, tabs_per_line + 1, 0)
        return cls(buf, start, end.astype(np.int64), nfields)

    def fields(self, lines: np.ndarray, count: int, wanted: tuple[int, ...]) -> dict[int, pa.Array]:
        """Fields ``wanted`` of ``lines`` (each with ``count`` fields) as Arrow string arrays.

        The lines are handed to Arrow's CSV reader (C++, multi-threaded) as one buffer.
        """
        import pyarrow.csv as csv

        if not len(lines):
            return {k: pa.array([], pa.string()) for k in wanted}
        lengths = self.end[lines] + 1 - self.start[lines]
        if int(lengths.sum()) * 4 > len(self.buf):
            # most of the block: a copy in which every other line is blanked (empty lines are skipped)
            others = np.ones(len(self.start), bool)
            others[lines] = False
            others &= self.end > self.start
            body = self.buf.copy()
            other_lines = np.flatnonzero(others)
            other_lengths = self.end[other_lines] - self.start[other_lines]
            total = int(other_lengths.sum())
            if total:
                offsets = np.concatenate([[0], np.cumsum(other_lengths)[:-1]])
                body[np.repeat(self.start[other_lines] - offsets, other_lengths) + np.arange(total)] = 10
            body = pa.py_buffer(body)
        else:  # a few lines: gathered
            offsets = np.zeros(len(lines) + 1, np.int64)
            np.cumsum(lengths, out=offsets[1:])
            gather = np.repeat(self.start[lines] - offsets[:-1], lengths) + np.arange(int(offsets[-1]))
            body = pa.py_buffer(self.buf[gather])
        names = [f"f{k}" for k in range(count)]
        table = csv.read_csv(
            body,
            read_options=csv.ReadOptions(column_names=names, block_size=1 << 22),
            parse_options=csv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False,
                                           double_quote=False, newlines_in_values=False,
                                           ignore_empty_lines=True),
            convert_options=csv.ConvertOptions(column_types={n: pa.string() for n in names},
                                               include_columns=[f"f{k}" for k in wanted],
                                               strings_can_be_null=False, quoted_strings_can_be_null=False))
        if table.num_rows != len(lines):  # pragma: no cover - the field counts were checked
            raise ClickLogError(f"CSV reader returned {table.num_rows} rows for {len(lines)} lines")
        return {k: table.column(f"f{k}").combine_chunks() for k in wanted}


@dataclasses.dataclass
class ParseStats:
    """What a conversion saw: lines, sessions kept and dropped, bad lines skipped."""

    lines: int = 0
    sessions: int = 0
    sessions_kept: int = 0
    sessions_too_short: int = 0
    documents: int = 0
    placeholders: int = 0
    repeated_documents: int = 0
    bad_lines: int = 0
    documents_of_bad_queries: int = 0
    bad_line_examples: list = dataclasses.field(default_factory=list)

    def add(self, other: "ParseStats") -> None:
        for field in dataclasses.fields(self):
            if field.name == "bad_line_examples":
                self.bad_line_examples = (self.bad_line_examples + other.bad_line_examples)[:10]
            else:
                setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


class _Problems:
    """Bad lines found by vectorised checks: line index -> the first message about it."""

    def __init__(self):
        self.found: dict[int, str] = {}

    def add(self, line_index: np.ndarray, message) -> None:
        for i in np.asarray(line_index)[:1000].tolist():  # enough to report and skip; the rest come next round
            if i not in self.found:
                self.found[i] = message(i) if callable(message) else message


_INTEGER = r"^-?[0-9]{1,18}$"
_NUMBER = r"^-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$"


def _cast(strings: pa.Array, line_index: np.ndarray, name: str, problems: _Problems, integer: bool = True):
    """Strings -> int64 or float64 numpy; values that are not numbers become bad lines (and 0)."""
    target = pa.int64() if integer else pa.float64()
    try:
        return pc.cast(strings, target).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        ok = pc.match_substring_regex(strings, _INTEGER if integer else _NUMBER)
        bad = np.flatnonzero(~ok.to_numpy(zero_copy_only=False))
        values = strings.take(pa.array(bad)).to_pylist()
        problems.add(line_index[bad], {int(line_index[b]): f"{name} {v[:40]!r} is not "
                                       f"{'an integer' if integer else 'a number'}"
                                       for b, v in zip(bad, values)}.get)
        return pc.cast(pc.if_else(ok, strings, "0"), target).to_numpy(zero_copy_only=False)


def _tokens(strings: pa.Array, line_index: np.ndarray, name: str, problems: _Problems) -> pa.ListArray:
    """``\\x01``-joined token ids -> list<int32>; an empty field or ``-`` is an empty list."""
    empty = pc.or_(pc.equal(strings, ""), pc.equal(strings, "-"))
    try:  # the common case: one split and one cast in C++
        lists = pc.cast(pc.split_pattern(pc.if_else(empty, pa.scalar(None, pa.string()), strings),
                                         TOKEN_SEPARATOR), pa.list_(pa.int32()))
        offsets = np.frombuffer(lists.buffers()[1], np.int32)[lists.offset:lists.offset + len(lists) + 1]
        offsets = offsets - offsets[0]
        values = lists.values.slice(int(np.frombuffer(lists.buffers()[1], np.int32)[lists.offset]),
                                    int(offsets[-1]))
        if not values.null_count:
            counts = np.diff(offsets)
            counts[empty.to_numpy(zero_copy_only=False)] = 0  # a null list: no tokens
            fixed = np.zeros(len(strings) + 1, np.int32)
            np.cumsum(counts, out=fixed[1:])
            if np.array_equal(fixed, offsets):
                return pa.ListArray.from_arrays(pa.array(fixed), values)
    except pa.ArrowInvalid:
        pass  # an empty token or a bad one: the general path below says which line
    split = pc.split_pattern(strings, TOKEN_SEPARATOR)
    flat = pc.list_flatten(split)
    keep = pc.and_(pc.not_equal(flat, ""), pc.not_equal(flat, "-"))
    kept = pc.filter(flat, keep)
    parent = pc.filter(pc.list_parent_indices(split), keep).to_numpy(zero_copy_only=False)
    try:
        values = pc.cast(kept, pa.int32())
    except pa.ArrowInvalid:
        ok = pc.match_substring_regex(kept, r"^[0-9]{1,9}$")
        bad = np.flatnonzero(~ok.to_numpy(zero_copy_only=False))
        problems.add(line_index[parent[bad]], f"{name} holds a token that is not an integer id "
                                              "(tokens are integer ids joined by \\x01)")
        values = pc.cast(pc.if_else(ok, kept, "0"), pa.int32())
    counts = np.bincount(parent, minlength=len(strings))
    offsets = np.zeros(len(strings) + 1, np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), values)


@dataclasses.dataclass
class ParsedBlock:
    """The sessions of a block: a click-log table (one row per session) and its documents."""

    sessions: pa.Table
    documents: pa.Table  # one row per displayed document kept: query_id, doc_id, url_md5, tokens
    stats: ParseStats

    def _replace_stats(self, stats: ParseStats) -> "ParsedBlock":
        return ParsedBlock(self.sessions.slice(0, 0), self.documents.slice(0, 0), stats)


_DOCUMENT_WANTED = tuple(sorted(FIELDS.values()))


def parse_block(data: bytes, *, where: str, first_line: int = 1, first_session: int = 0,
                skip_bad_lines: bool = False) -> ParsedBlock:
    """Parse complete lines (``data`` ends with a newline) of one partition.

    Args:
      where: the partition's name, for messages.
      first_line: the 1-based line number of ``data``'s first line in the partition.
      first_session: the ordinal of the block's first session in the partition.
      skip_bad_lines: count and skip bad lines (a bad query line drops its whole session) instead of
        raising :class:`BaiduFormatError` for the first.
    """
    stats = ParseStats()
    lines = _Lines.of(data)
    n = len(lines.start)
    stats.lines = n
    nfields = lines.nfields
    problems = _Problems()
    is_query = nfields == QUERY_FIELDS
    is_doc = nfields == DOCUMENT_FIELDS
    wrong = np.flatnonzero(~(is_query | is_doc | (nfields == 0)))
    problems.add(wrong, lambda i: f"{nfields[i]} tab-separated fields; a query line has {QUERY_FIELDS} and a "
                                  f"document line {DOCUMENT_FIELDS}")
    # a bad line too short for a document line is taken for a bad query line: its documents go with it
    query_like = is_query | ((nfields > 0) & (nfields < QUERY_LIKE_FIELDS) & ~is_doc)
    latest_start = np.maximum.accumulate(np.where(query_like, np.arange(n), -1)) if n else np.zeros(0, np.int64)
    orphan = np.flatnonzero(is_doc & (latest_start < 0))
    problems.add(orphan, "a document line before any query line")
    non_ascii = np.unique(np.searchsorted(lines.end, np.flatnonzero(lines.buf > 127)))
    if non_ascii.size:  # the format is ASCII (token ids, numbers, hex): such a line is bad, and kept from Arrow
        problems.add(non_ascii, "a byte that is not ASCII (the format holds token ids, numbers and hex digits)")
        is_query[non_ascii] = False
        is_doc[non_ascii] = False
    query_lines = np.flatnonzero(is_query)
    doc_lines = np.flatnonzero(is_doc)
    if not query_lines.size and not doc_lines.size and not problems.found:
        return _assemble_empty(stats)
    # every field of every line, parsed and checked at once; bad values become problems
    doc = lines.fields(doc_lines, DOCUMENT_FIELDS, _DOCUMENT_WANTED)
    query = lines.fields(query_lines, QUERY_FIELDS, (1,))[1]
    position = _cast(doc[FIELDS["position"]], doc_lines, "position", problems)
    out_of_range = np.flatnonzero((position < 1) | (position > MAX_POSITION))
    problems.add(doc_lines[out_of_range], {int(doc_lines[k]): f"position {position[k]} outside 1..{MAX_POSITION}"
                                           for k in out_of_range[:1000]}.get)
    click = _cast(doc[FIELDS["click"]], doc_lines, "click", problems)
    not_binary = np.flatnonzero((click != 0) & (click != 1))
    problems.add(doc_lines[not_binary], {int(doc_lines[k]): f"click {click[k]} is neither 0 nor 1"
                                         for k in not_binary[:1000]}.get)
    urls = doc[FIELDS["url_md5"]]
    url_bytes, url_ok = _hex_digits(urls)
    doc_id, hex_ok = doc_ids_from_md5(url_bytes)
    problems.add(doc_lines[~(url_ok & hex_ok)], "url_md5 is not 32 hexadecimal digits")
    numbers = {name: _cast(doc[FIELDS[name]], doc_lines, label, problems, integer)
               for name, label, integer in (("media_type", "media type", True), ("skip", "skip", True),
                                            ("serp_height", "serp height", True),
                                            ("displayed_time", "displayed time", False),
                                            ("dwell_time", "dwelling time", False),
                                            ("slipoff_count", "slip-off count", True))}
    titles, abstracts = doc[FIELDS["title"]], doc[FIELDS["abstract"]]
    title_tokens = _tokens(titles, doc_lines, "title", problems)
    abstract_tokens = _tokens(abstracts, doc_lines, "abstract", problems)
    query_tokens = _tokens(query, query_lines, "query", problems)
    session_of_line = np.cumsum(is_query) - 1
    session = session_of_line[doc_lines]
    start_of_doc = latest_start[doc_lines]
    in_bad_session = (start_of_doc < 0) | ~is_query[np.maximum(start_of_doc, 0)]
    # display order within a session; the same position twice makes the later line bad
    order = np.lexsort((doc_lines, position, session))
    order = order[~in_bad_session[order]]
    same = (session[order][1:] == session[order][:-1]) & (position[order][1:] == position[order][:-1])
    twice = order[1:][same]
    problems.add(doc_lines[twice], {int(doc_lines[k]): f"position {position[k]} appears twice in one session"
                                    for k in twice[:1000]}.get)

    alive_doc = np.ones(len(doc_lines), bool)
    alive_query = np.ones(len(query_lines), bool)
    if problems.found:
        bad_lines = np.array(sorted(problems.found), np.int64)
        if not skip_bad_lines:
            first = int(bad_lines[0])
            raise BaiduFormatError(f"{where}: line {first_line + first}: {problems.found[first]}")
        stats.bad_lines = len(bad_lines)
        stats.bad_line_examples = [f"{where}: line {first_line + i}: {problems.found[i]}"
                                   for i in bad_lines[:10].tolist()]
        bad_mask = np.zeros(n, bool)
        bad_mask[bad_lines] = True
        alive_query = ~bad_mask[query_lines]
        alive_doc = ~bad_mask[doc_lines] & (session >= 0)
        dead_session = np.zeros(max(len(query_lines), 1), bool)
        dead_session[:len(query_lines)] = ~alive_query
        of_bad_query = alive_doc & ((session < 0) | dead_session[np.maximum(session, 0)] | in_bad_session)
        stats.documents_of_bad_queries = int(of_bad_query.sum())
        alive_doc &= ~of_bad_query
    stats.sessions = int(alive_query.sum())

    # cleaning (Hager et al. 2024): placeholders go, "what other people searched" is marked
    placeholder = np.zeros(len(doc_lines), bool)
    for title in PLACEHOLDER_TITLES:
        placeholder |= pc.equal(titles, title).to_numpy(zero_copy_only=False)
    related = pc.equal(titles, RELATED_SEARCHES_TITLE).to_numpy(zero_copy_only=False)
    stats.placeholders = int((placeholder & alive_doc).sum())
    rows = order[(~placeholder & alive_doc)[order]]  # (docs of bad sessions are not in ``order``)
    # the same url twice in one session: keep its first (highest) display, count the others
    by_doc = np.lexsort((position[rows], doc_id[rows], session[rows]))
    s_doc, d_doc = session[rows][by_doc], doc_id[rows][by_doc]
    repeat = np.zeros(len(rows), bool)
    repeat[by_doc[1:]] = (s_doc[1:] == s_doc[:-1]) & (d_doc[1:] == d_doc[:-1])
    stats.repeated_documents = int(repeat.sum())
    rows = rows[~repeat]
    num_sessions = len(query_lines)
    counts = np.bincount(session[rows], minlength=num_sessions) if num_sessions else np.zeros(0, np.int64)
    long_enough = (counts >= MIN_DOCUMENTS) & alive_query
    rows = rows[long_enough[session[rows]]] if rows.size else rows
    stats.sessions_too_short = int((~long_enough & alive_query).sum())
    stats.sessions_kept = int(long_enough.sum())
    stats.documents = int(len(rows))

    kept_sessions = np.flatnonzero(long_enough)
    query_ids = stable_id(query) if len(query) else np.zeros(0, np.int64)
    offsets = np.zeros(len(kept_sessions) + 1, np.int32)
    np.cumsum(counts[kept_sessions], out=offsets[1:])
    offsets = pa.array(offsets)

    def listed(values, dtype):
        return pa.ListArray.from_arrays(offsets, pa.array(np.asarray(values)[rows], dtype))

    sessions = pa.table({
        "session_id": pa.array((np.int64(first_session) + kept_sessions).astype(np.int64)),
        "query_id": pa.array(query_ids[kept_sessions]),
        "doc_ids": listed(doc_id, pa.int64()),
        "clicks": listed(click.astype(bool), pa.bool_()),
        "positions": listed(position.astype(np.int16), pa.int16()),
        "dwell_time": listed(numbers["dwell_time"].astype(np.float32), pa.float32()),
        "displayed_time": listed(numbers["displayed_time"].astype(np.float32), pa.float32()),
        "media_type": listed(numbers["media_type"].astype(np.int32), pa.int32()),
        "serp_height": listed(numbers["serp_height"].astype(np.int32), pa.int32()),
        "slipoff_count": listed(numbers["slipoff_count"].astype(np.int32), pa.int32()),
        "skip": listed(numbers["skip"] != 0, pa.bool_()),
        "related_searches": listed(related, pa.bool_()),
    })
    take = pa.array(rows, pa.int64())
    documents = pa.table({
        "query_id": pa.array(query_ids[session[rows]] if rows.size else np.zeros(0, np.int64)),
        "doc_id": pa.array(doc_id[rows]),
        "url_md5": urls.take(take),
        "query": query_tokens.take(pa.array(session[rows], pa.int64())),
        "title": title_tokens.take(take),
        "abstract": abstract_tokens.take(take),
    })
    return ParsedBlock(sessions, documents, stats)


def _hex_digits(urls: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """url_md5 strings -> (``[N, 32]`` uint8, ``[N]`` bool: exactly 32 characters)."""
    lengths = pc.binary_length(urls).to_numpy(zero_copy_only=False)
    ok = lengths == 32
    offsets = np.frombuffer(urls.buffers()[1], np.int32)[urls.offset:urls.offset + len(urls) + 1]
    data = np.frombuffer(urls.buffers()[2], np.uint8) if urls.buffers()[2] is not None else np.zeros(0, np.uint8)
    starts = offsets[:-1].astype(np.int64)
    window = np.zeros((len(urls), 32), np.uint8)
    if ok.any():
        window[ok] = data[starts[ok][:, None] + np.arange(32)]
    return window, ok


def _assemble_empty(stats: ParseStats) -> ParsedBlock:
    return parse_block(b"0\t-\t0\n", where="empty")._replace_stats(stats)


def iter_partition(path: str | Path, *, partition_index: int = 0, block_bytes: int = 32 << 20,
                   skip_bad_lines: bool = False) -> Iterator[ParsedBlock]:
    """Stream one gzip partition as parsed blocks of whole sessions (memory bounded by ``block_bytes``).

    Session ids are ``partition_index * 2**32 + ordinal``: unique across the partitions of one conversion.
    """
    path = Path(path)
    where = path.name
    first_line = 1
    first_session = int(partition_index) << 32
    carry = b""
    try:
        with gzip.open(path, "rb") as handle:
            while True:
                chunk = handle.read(block_bytes)
                final = not chunk
                data = carry + chunk
                if not data:
                    break
                if final:
                    if not data.endswith(b"\n"):
                        data += b"\n"
                    cut = len(data)
                else:
                    cut = _last_session_start(data)
                    if cut <= 0:  # one session longer than the block so far: read on
                        carry = data
                        continue
                block, carry = data[:cut], data[cut:]
                parsed = parse_block(block, where=where, first_line=first_line, first_session=first_session,
                                     skip_bad_lines=skip_bad_lines)
                first_line += parsed.stats.lines
                first_session += parsed.stats.sessions
                yield parsed
                if final:
                    break
    except EOFError:
        raise BaiduFormatError(f"{where}: the gzip stream ends early (truncated file) after line "
                               f"{first_line - 1}") from None
    except (gzip.BadGzipFile, zlib.error) as error:
        raise BaiduFormatError(f"{where}: not a readable gzip file ({error})") from None


def _last_session_start(data: bytes) -> int:
    """Byte offset of the last query line's start in ``data`` (0 or -1 when none lies past the first line).

    A query line is recognised by its field count: it has exactly two tabs before its newline.
    """
    end = data.rfind(b"\n") + 1
    position = end
    while position > 0:
        start = data.rfind(b"\n", 0, position - 1) + 1
        if data.count(b"\t", start, position) == QUERY_FIELDS - 1:
            return start
        position = start
    return 0


# ---------------------------------------------------------------------- annotations
ANNOTATION_FIELDS = 6  # qid, query, title, abstract, label (0-4), frequency bucket (0-9)
MAX_GRADE = 4
#: query-frequency groups of the annotation set's buckets (Hager et al. 2024: high, mid, tail)
FREQUENCY_GROUPS = {"high": range(0, 3), "mid": range(3, 7), "tail": range(7, 10)}


def read_annotations(path: str | Path) -> pa.Table:
    """The expert-annotation file: one row per judged document with its tokens, label and frequency bucket.

    Columns: ``query_id`` (the stable hash of the query's tokens, as in converted logs), ``doc_id`` (the
    document's ordinal within its query), ``label`` int8, ``frequency_bucket`` int8, ``query``, ``title``,
    ``abstract`` (list<int32> tokens). A ``.gz`` file is read through gzip.
    """
    path = Path(path)
    where = path.name
    try:
        data = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
    except FileNotFoundError:
        raise BaiduFormatError(f"{path}: no such annotation file") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise BaiduFormatError(f"{where}: not a readable gzip file ({error})") from None
    if data and not data.endswith(b"\n"):
        data += b"\n"
    lines = _Lines.of(data)
    rows = np.flatnonzero(lines.nfields > 0)
    wrong = rows[lines.nfields[rows] != ANNOTATION_FIELDS]
    if wrong.size:
        raise BaiduFormatError(f"{where}: line {wrong[0] + 1}: {lines.nfields[wrong[0]]} tab-separated fields; an "
                               f"annotation line has {ANNOTATION_FIELDS} (qid, query, title, abstract, label, "
                               "frequency bucket)")
    if not rows.size:
        raise BaiduFormatError(f"{where}: no annotation lines")
    fields = lines.fields(rows, ANNOTATION_FIELDS, (1, 2, 3, 4, 5))
    problems = _Problems()
    label = _cast(fields[4], rows, "label", problems)
    bucket = _cast(fields[5], rows, "frequency bucket", problems)
    problems.add(rows[(label < 0) | (label > MAX_GRADE)], lambda i: f"label outside 0..{MAX_GRADE}")
    problems.add(rows[(bucket < 0) | (bucket > 9)], lambda i: "frequency bucket outside 0..9")
    queries = fields[1]
    query = _tokens(queries, rows, "query", problems)
    title = _tokens(fields[2], rows, "title", problems)
    abstract = _tokens(fields[3], rows, "abstract", problems)
    if problems.found:
        first = min(problems.found)
        raise BaiduFormatError(f"{where}: line {first + 1}: {problems.found[first]}")
    query_id = stable_id(queries)
    ordinal = _rank_within_groups(query_id, np.argsort(query_id, kind="stable"))
    buckets = _check_buckets(query_id, bucket, rows, where)
    return pa.table({
        "query_id": pa.array(query_id), "doc_id": pa.array(ordinal), "label": pa.array(label.astype(np.int8)),
        "frequency_bucket": pa.array(buckets.astype(np.int8)), "query": query, "title": title, "abstract": abstract,
    })


def first_rows(*keys: np.ndarray) -> np.ndarray:
    """Row numbers of the first occurrence of each distinct key tuple, in row order."""
    if not len(keys[0]):
        return np.zeros(0, np.int64)
    order = np.lexsort(keys[::-1])
    sorted_keys = [k[order] for k in keys]
    starts = np.ones(len(order), bool)
    starts[1:] = np.any([k[1:] != k[:-1] for k in sorted_keys], axis=0)
    # the first row of each group is the smallest row number: lexsort is stable
    return np.sort(order[starts])


def _rank_within_groups(groups: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Each element's 0-based rank among the elements of its group, in ``order`` (which sorts ``groups``)."""
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.concatenate([[True], sorted_groups[1:] != sorted_groups[:-1]]))
    group_start = np.repeat(starts, np.diff(np.concatenate([starts, [len(groups)]])))
    rank = np.empty(len(groups), np.int64)
    rank[order] = np.arange(len(groups)) - group_start
    return rank


def _check_buckets(query_id: np.ndarray, bucket: np.ndarray, rows: np.ndarray, where: str) -> np.ndarray:
    """Every line of a query must give the same frequency bucket."""
    order = np.lexsort((bucket, query_id))
    q, b = query_id[order], bucket[order]
    clash = (q[1:] == q[:-1]) & (b[1:] != b[:-1])
    if clash.any():
        line = int(rows[order[1:][np.flatnonzero(clash)[0]]]) + 1
        raise BaiduFormatError(f"{where}: line {line}: the query's frequency bucket differs from its other lines")
    return bucket


def annotations_table(path: str | Path, corpus) -> pa.Table:
    """:func:`read_annotations` plus ``features`` (fixed_size_list<float32>[12]) from ``corpus`` statistics."""
    from .lexical import FEATURE_NAMES

    table = read_annotations(path)
    values = corpus.features(table.column("query"), table.column("title"), table.column("abstract"))
    flat = pa.array(values.astype(np.float32).reshape(-1), pa.float32())
    return table.append_column("features", pa.FixedSizeListArray.from_arrays(flat, len(FEATURE_NAMES)))


def frequency_group(bucket: int) -> str:
    for name, buckets in FREQUENCY_GROUPS.items():
        if bucket in buckets:
            return name
    raise ValueError(f"frequency bucket {bucket} outside 0..9")


def split_annotations(query_ids: np.ndarray, buckets: np.ndarray) -> np.ndarray:
    """Deterministic 50/50 validation/test split by query, stratified by frequency bucket (True: test).

    Within each bucket, queries are ordered by a hash of their id and alternate between the splits.
    """
    unique, first = np.unique(query_ids, return_index=True)
    bucket_of = buckets[first]
    mixed = np.array([int.from_bytes(hashlib.blake2b(int(q).to_bytes(8, "little", signed=True),
                                                     digest_size=8).digest(), "little") for q in unique],
                     dtype=np.uint64)
    rank_in_bucket = _rank_within_groups(bucket_of, np.lexsort((mixed, bucket_of)))
    test_query = rank_in_bucket % 2 == 1
    return test_query[np.searchsorted(unique, query_ids)]


# ---------------------------------------------------------------------- the converted data as a dataset
def _with_feature_set(table: pa.Table, features: str, directory) -> pa.Table:
    """``table`` with its ``features`` column made of the chosen feature set (lexical, embedding or both)."""
    parts = []
    if "lexical" in features:
        parts.append(np.asarray(table.column("features").combine_chunks().flatten().to_numpy(zero_copy_only=False),
                                np.float32).reshape(table.num_rows, -1))
    if "embedding" in features:
        if "embedding" not in table.column_names:
            raise BaiduFormatError(f"baidu:{directory}: no query-document embeddings here (they come with Hager "
                                   "et al.'s Feather release: ultr baidu convert --feather); use the lexical features")
        embedding = table.column("embedding").combine_chunks()
        parts.append(embedding.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(table.num_rows, -1))
    values = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    width = values.shape[1]
    column = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), pa.float32()), width)
    return table.set_column(table.column_names.index("features"), "features", column)


BAIDU_METRICS = ("dcg@1", "dcg@3", "dcg@5", "dcg@10", "ndcg@10", "mrr@10")
FEATURE_SETS = ("lexical", "embedding", "lexical+embedding")


def load_baidu_dataset(directory: str | Path, features: str = "lexical"):
    """A converted Baidu-ULTR directory as a :class:`~simulators.datasets.Dataset`.

    * train: every distinct (query_id, doc_id) of the converted log with its features (no labels:
      learners that need labels are refused);
    * vali/test: the annotations, split 50/50 by query within each frequency bucket (deterministic);
    * ``query_groups`` maps each annotated query to its frequency group (high, mid, tail).
    """
    from .datasets import Dataset, RankingData

    directory = Path(directory)
    if features not in FEATURE_SETS:
        raise BaiduFormatError(f"baidu:{directory}: unknown feature set {features!r}; choose "
                               f"{', '.join(FEATURE_SETS)}")
    summary = directory / "baidu.json"
    if not summary.exists():
        raise BaiduFormatError(f"{directory}: no baidu.json: not a finished `ultr baidu convert` output")
    annotations = directory / "annotations.parquet"
    if not annotations.exists():
        raise BaiduFormatError(f"{directory}: no annotations.parquet: convert with --annotations FILE to "
                               "evaluate on the expert annotations")
    import pyarrow.parquet as pq

    parts = sorted((directory / "features").glob("*.parquet"))
    train_table = pa.concat_tables([pq.read_table(p) for p in parts]) if parts else None
    if train_table is None or not train_table.num_rows:
        raise BaiduFormatError(f"{directory}: the converted log has no documents")
    # distinct pairs: the feature rows of one pair are identical (one corpus), keep the first
    train_table = train_table.take(pa.array(first_rows(train_table.column("query_id").to_numpy(),
                                                       train_table.column("doc_id").to_numpy())))
    judged = pq.read_table(annotations)
    train_table = _with_feature_set(train_table, features, directory)
    judged_features = _with_feature_set(judged, features, directory)
    train = RankingData.from_table(train_table.append_column(
        "label", pa.array(np.zeros(train_table.num_rows, np.int8))), name=f"{directory} (log documents)")
    test_mask = split_annotations(judged.column("query_id").to_numpy(), judged.column("frequency_bucket").to_numpy())
    test_of_row = pa.array(test_mask)
    columns = ["query_id", "doc_id", "label", "features"]
    vali = RankingData.from_table(judged_features.filter(pc.invert(test_of_row)).select(columns),
                                  name=f"{directory} (annotations, validation)")
    test = RankingData.from_table(judged_features.filter(test_of_row).select(columns),
                                  name=f"{directory} (annotations, test)")
    q = judged.column("query_id").to_numpy()
    b = judged.column("frequency_bucket").to_numpy()
    groups = {int(query): frequency_group(int(bucket)) for query, bucket in zip(*np.unique(
        np.stack([q, b]), axis=1))}
    return Dataset(f"baidu:{directory}", train, vali, test, MAX_GRADE, query_groups=groups,
                   train_labels=False, test_metrics=BAIDU_METRICS)


__all__ = ["BAIDU_METRICS", "BaiduFormatError", "FREQUENCY_GROUPS", "ParseStats", "ParsedBlock", "annotations_table",
           "doc_ids_from_md5", "iter_partition", "load_baidu_dataset", "parse_block", "read_annotations",
           "split_annotations", "stable_id"]

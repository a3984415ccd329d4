"""Synthetic partitions in the exact Baidu-ULTR raw format, for tests, benchmarks and trying the converter.

Sessions have a query of 1-6 tokens and 8-12 results at positions 1..n; some results are placeholders
(title ``21429`` or ``-``), some are the "what other people searched" box, and clicks follow a position-based
model whose attraction grows with the query tokens a title shares. Deterministic for a seed.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
from pathlib import Path

import numpy as np

from .baidu import DOCUMENT_FIELDS, FIELDS, PLACEHOLDER_TITLES, RELATED_SEARCHES_TITLE

EXAMINATION = np.array([1.0, 0.75, 0.55, 0.42, 0.33, 0.27, 0.22, 0.18, 0.15, 0.13, 0.11, 0.10])


@dataclasses.dataclass
class SyntheticSession:
    """What a synthetic session holds, to compare with a conversion."""

    query: list[int]
    urls: list[str]
    positions: list[int]
    clicks: list[int]
    titles: list[str]
    abstracts: list[str]
    dwell_time: list[float]
    displayed_time: list[float]
    media_type: list[int]
    serp_height: list[int]
    slipoff_count: list[int]
    skip: list[int]


def synthetic_sessions(num_sessions: int, seed: int = 0, num_queries: int = 50,
                       num_urls: int = 400) -> list[SyntheticSession]:
    rng = np.random.default_rng(seed)
    vocabulary = 3000
    queries = [list(rng.integers(1, vocabulary, size=rng.integers(1, 7))) for _ in range(num_queries)]
    url_tokens = [list(rng.integers(1, vocabulary, size=rng.integers(3, 15))) for _ in range(num_urls)]
    abstract_tokens = [list(rng.integers(1, vocabulary, size=rng.integers(0, 40))) for _ in range(num_urls)]
    urls = [hashlib.md5(f"url-{i}".encode()).hexdigest() for i in range(num_urls)]
    candidates = [rng.choice(num_urls, size=20, replace=False) for _ in range(num_queries)]
    # some titles contain query tokens: those are the attractive results
    for q, docs in enumerate(candidates):
        for d in docs[:6]:
            url_tokens[d] = url_tokens[d] + list(rng.choice(queries[q], size=min(2, len(queries[q]))))
    sessions = []
    for _ in range(num_sessions):
        q = int(rng.integers(num_queries))
        n = int(rng.integers(8, 13))
        shown = rng.permutation(candidates[q])[:n]
        titles, abstracts, clicks, doc_urls = [], [], [], []
        for rank, d in enumerate(shown):
            kind = rng.random()
            if kind < 0.04:
                title = PLACEHOLDER_TITLES[int(rng.integers(2))]
            elif kind < 0.06:
                title = RELATED_SEARCHES_TITLE
            else:
                title = "\x01".join(map(str, url_tokens[d]))
            url = hashlib.md5(f"related-{q}".encode()).hexdigest() if title == RELATED_SEARCHES_TITLE else urls[d]
            overlap = len(set(url_tokens[d]) & set(queries[q])) if title not in PLACEHOLDER_TITLES else 0
            attraction = 0.1 + 0.6 * (overlap > 0)
            clicks.append(int(rng.random() < EXAMINATION[rank] * attraction))
            titles.append(title)
            abstracts.append("\x01".join(map(str, abstract_tokens[d])) if abstract_tokens[d] else "-")
            doc_urls.append(url)
        sessions.append(SyntheticSession(
            query=queries[q], urls=doc_urls, positions=list(range(1, n + 1)), clicks=clicks, titles=titles,
            abstracts=abstracts,
            dwell_time=[float(np.round(rng.exponential(30), 1)) if c else 0.0 for c in clicks],
            displayed_time=[float(np.round(rng.exponential(5), 2)) for _ in range(n)],
            media_type=[int(rng.integers(0, 20)) for _ in range(n)],
            serp_height=[int(rng.integers(100, 400)) for _ in range(n)],
            slipoff_count=[int(rng.integers(0, 3)) for _ in range(n)],
            skip=[int(rng.random() < 0.1) for _ in range(n)],
        ))
    return sessions


def format_sessions(sessions: list[SyntheticSession], first_qid: int = 0) -> bytes:
    """The sessions as raw Baidu-ULTR text (query lines and 32-field document lines)."""
    lines = []
    for i, session in enumerate(sessions):
        lines.append(f"{first_qid + i}\t{chr(1).join(map(str, session.query))}\t0")
        for k in range(len(session.urls)):
            fields = ["0"] * DOCUMENT_FIELDS
            values = {"position": session.positions[k], "url_md5": session.urls[k], "title": session.titles[k],
                      "abstract": session.abstracts[k], "media_type": session.media_type[k],
                      "click": session.clicks[k], "skip": session.skip[k], "serp_height": session.serp_height[k],
                      "displayed_time": session.displayed_time[k], "dwell_time": session.dwell_time[k],
                      "slipoff_count": session.slipoff_count[k]}
            for name, value in values.items():
                fields[FIELDS[name]] = str(value)
            lines.append("\t".join(fields))
    return ("\n".join(lines) + "\n").encode()


def write_partition(path: str | Path, sessions: list[SyntheticSession], first_qid: int = 0) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb", compresslevel=1) as handle:
        handle.write(format_sessions(sessions, first_qid))
    return path


def write_partitions(directory: str | Path, num_partitions: int, sessions_per_partition: int,
                     seed: int = 0) -> list[list[SyntheticSession]]:
    """``part-00000.gz`` ... in ``directory``; returns each partition's sessions."""
    written = []
    for p in range(num_partitions):
        sessions = synthetic_sessions(sessions_per_partition, seed=seed * 1000 + p)
        write_partition(Path(directory) / f"part-{p:05d}.gz", sessions, first_qid=p * sessions_per_partition)
        written.append(sessions)
    return written


__all__ = ["SyntheticSession", "format_sessions", "synthetic_sessions", "write_partition", "write_partitions"]

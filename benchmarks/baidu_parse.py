"""Baidu-ULTR conversion speed: ultr's vectorised parser against a straightforward per-line Python parser.

Both parse the same decompressed partition text (generated in the exact raw format) in memory; the ratio is
measured in this run. Then one partition is converted end to end (gzip, parse, Parquet, corpus statistics)
in a child process whose peak memory is reported, and the time for all of Baidu-ULTR is projected
(1.2B sessions in about 2,000 partitions) for this machine's cores and for 64 cores.

Run: python benchmarks/baidu_parse.py [--sessions 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulators.baidu import parse_block  # noqa: E402
from simulators.baidu_synthetic import format_sessions, synthetic_sessions, write_partition  # noqa: E402

BAIDU_SESSIONS = 1_200_000_000
BAIDU_PARTITIONS = 2_000


def naive_parse(data: bytes) -> list[dict]:
    """The reference: split each line, convert each field and token in Python, apply the same cleaning."""
    sessions, current = [], None
    for number, line in enumerate(data.decode().split("\n"), start=1):
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) == 3:
            current = {"query": [int(t) for t in fields[1].split("\x01") if t not in ("", "-")], "docs": []}
            sessions.append(current)
        elif len(fields) == 32 and current is not None:
            position = int(fields[0])
            if not 1 <= position <= 30:
                raise ValueError(f"line {number}: position {position}")
            if fields[2] in ("21429", "-"):
                continue
            current["docs"].append({
                "position": position, "url": fields[1], "doc_id": int(fields[1][:15], 16),
                "title": [int(t) for t in fields[2].split("\x01") if t not in ("", "-")],
                "abstract": [int(t) for t in fields[3].split("\x01") if t not in ("", "-")],
                "media_type": int(fields[4]), "click": int(fields[5]), "skip": int(fields[8]),
                "serp_height": int(fields[9]), "displayed_time": float(fields[10]),
                "dwell_time": float(fields[16]), "slipoff_count": int(fields[21])})
        else:
            raise ValueError(f"line {number}: {len(fields)} fields")
    return [s for s in sessions if len(s["docs"]) >= 5]


def best_of(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
from simulators.baidu_convert import convert_partition
started = time.perf_counter()
summary = convert_partition({path!r}, 0, {out!r}, block_bytes={block})
# VmHWM: this process's peak resident memory (ru_maxrss would include the parent's from before exec)
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({{"seconds": time.perf_counter() - started, "sessions": summary["sessions_kept"],
                   "peak_mib": peak / 1024}}))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=100_000, help="sessions in the generated partition")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--block-mb", type=int, default=16)
    args = parser.parse_args()
    sessions = synthetic_sessions(args.sessions, seed=0, num_queries=2_000, num_urls=50_000)
    data = format_sessions(sessions)
    lines = data.count(b"\n")
    print(f"partition: {args.sessions:,} sessions, {lines:,} lines, {len(data) / 2**20:.0f} MiB of text")
    chunk = 1 << 24  # what one worker parses at a time (the converter's default block)
    pieces = []
    start = 0
    while start < len(data):  # cut at query lines, as the converter does
        end = min(start + chunk, len(data))
        if end < len(data):
            end = data.rfind(b"\n", start, end) + 1
            while data.count(b"\t", end, data.find(b"\n", end)) != 2:
                end = data.find(b"\n", end) + 1
        pieces.append(data[start:end])
        start = end
    vectorised = best_of(lambda: [parse_block(p, where="bench") for p in pieces], args.repeats)
    naive = best_of(lambda: naive_parse(data), args.repeats)
    print(f"per-line Python parser : {naive:7.2f} s  ({args.sessions / naive:10,.0f} sessions/s)")
    print(f"ultr parser            : {vectorised:7.2f} s  ({args.sessions / vectorised:10,.0f} sessions/s)")
    print(f"ratio                  : {naive / vectorised:7.1f}x faster (goal: at least 5x)")
    with tempfile.TemporaryDirectory() as tmp:
        path = write_partition(Path(tmp) / "part-00000.gz", sessions)
        code = CHILD.format(root=str(ROOT), path=str(path), out=str(Path(tmp) / "out"), block=args.block_mb << 20)
        result = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                           check=True).stdout.strip().splitlines()[-1])
    rate = result["sessions"] / result["seconds"]
    print(f"one partition end to end (gzip, parse, Parquet, corpus statistics): {result['seconds']:.2f} s, "
          f"{rate:,.0f} sessions/s, peak memory {result['peak_mib']:.0f} MiB per worker "
          f"(block {args.block_mb} MiB)")
    cores = os.cpu_count() or 1
    for workers in (cores, 64):
        hours = BAIDU_SESSIONS / rate / workers / 3600
        print(f"projected for all {BAIDU_PARTITIONS:,} partitions ({BAIDU_SESSIONS / 1e9:.1f}B sessions) on "
              f"{workers} cores: {hours:,.1f} h")


if __name__ == "__main__":
    main()

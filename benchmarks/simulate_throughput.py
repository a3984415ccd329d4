"""End-to-end simulation to Parquet: sessions per second and peak memory, against a bare numpy+pyarrow writer.

Run by hand: ``python benchmarks/simulate_throughput.py [--data PATH] [--sessions N] [--memory-sessions M]``.
Goals on a 2-core CPU: >= 1M sessions/s (PBM, 10 positions); at least 0.9x the bare writer; peak memory < 1 GiB
for 20M sessions. Uses MQ2008 Fold1 from ../shared/data when present, else the synthetic dataset.

The bare writer, written here, draws PBM clicks for the production ranking with numpy (queries uniform, the
ranking precomputed per query, one ``random`` per position) and writes the very schema of ``ultr simulate``
(the same columns, snappy, no dictionary, a row group per chunk of 100,000 sessions, files of 1,000,000
sessions, two files at a time in threads), without ultr's atomic renames, manifest or checksums.
"""

import argparse
import concurrent.futures
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from click_models.logs import LIST_SIZE_METADATA_KEY
from simulators.datasets import load_dataset
from simulators.simulation import SimulationConfig, Simulator

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mq2008" / "Fold1"


def _list(values_2d: np.ndarray, mask: np.ndarray, value_type) -> pa.ListArray:
    offsets = np.zeros(len(mask) + 1, np.int32)
    np.cumsum(mask.sum(1), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values_2d[mask], type=value_type))


def bare_writer(simulator: Simulator, out: Path, sessions: int, chunk: int = 100_000, per_file: int = 1_000_000,
                workers: int = 2) -> float:
    """Seconds for the bare numpy+pyarrow writer to write ``sessions`` PBM sessions into ``out``."""
    K = simulator.config.list_size
    scores = np.where(simulator.labels >= 0, simulator.policies[0].scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :K]
    docs = np.take_along_axis(simulator.doc_ids, order, 1).astype(np.int64)
    grades = np.take_along_axis(simulator.labels, order, 1)
    shown = np.arange(K)[None, :] < np.minimum(simulator.list_sizes, K)[:, None]
    attraction = np.float32(0.05) + np.float32(0.9) * (2.0 ** grades.clip(0) - 1) / (2.0 ** simulator.max_label - 1)
    theta = np.asarray(simulator.rank_parameters["examination"], np.float32)[:K]
    Q = len(docs)

    def one_file(index):
        rng = np.random.default_rng([0, index])
        first, stop = index * per_file, min((index + 1) * per_file, sessions)
        writer = None
        for start in range(first, stop, chunk):
            n = min(chunk, stop - start)
            q = rng.integers(0, Q, n)
            mask = shown[q]
            clicks = rng.random((n, K), dtype=np.float32) < attraction[q] * theta
            table = pa.table({
                "session_id": pa.array(np.arange(start, start + n, dtype=np.int64)),
                "query_id": pa.array(simulator.query_ids[q].astype(np.int64)),
                "doc_ids": _list(docs[q], mask, pa.int64()),
                "clicks": _list(clicks, mask, pa.bool_()),
                "labels": _list(grades[q].astype(np.int8), mask, pa.int8()),
                "examination": _list(np.broadcast_to(theta, (n, K)), mask, pa.float32()),
                "policy": pa.array(np.zeros(n, np.int32)),
                "intervention": pa.array(np.zeros(n, np.int32)),
            }).replace_schema_metadata({LIST_SIZE_METADATA_KEY: str(K).encode()})
            if writer is None:
                writer = pq.ParquetWriter(out / f"part-{index:05d}.parquet", table.schema, compression="snappy",
                                          use_dictionary=False)
            writer.write_table(table)
        writer.close()

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one_file, range(-(-sessions // per_file))))
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(DEFAULT_DATA) if DEFAULT_DATA.exists() else "synthetic")
    parser.add_argument("--sessions", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--memory-sessions", type=int, default=20_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="medians of this many rounds")
    args = parser.parse_args()
    dataset = load_dataset(args.data)
    simulator = Simulator(dataset, SimulationConfig(click_model="pbm"), seed=0)
    print(f"data: {args.data} ({dataset.train.num_queries} training queries); PBM, 10 positions, production policy; "
          f"medians of {args.rounds} rounds")
    for n in args.sessions:
        ours, bare = [], []
        for _ in range(args.rounds):  # interleaved, so that both see the same state of the machine
            out = Path(tempfile.mkdtemp(prefix="ultr-bench-"))
            try:
                summary = simulator.run(out / "log", n, progress=False)
                ours.append(n / summary["seconds"])
                size = sum(f.stat().st_size for f in (out / "log").glob("*.parquet")) / 2**20
                (out / "bare").mkdir()
                bare.append(n / bare_writer(simulator, out / "bare", n))
                bare_size = sum(f.stat().st_size for f in (out / "bare").glob("*.parquet")) / 2**20
            finally:
                shutil.rmtree(out, ignore_errors=True)
        rate, reference = float(np.median(ours)), float(np.median(bare))
        print(f"{n:>12,} sessions: ultr {rate / 1e6:.2f}M sessions/s (goal 1M: {'ok' if rate >= 1e6 else 'MISSED'}), "
              f"{len(summary['files'])} files, {size:.0f} MiB; bare writer {reference / 1e6:.2f}M sessions/s, "
              f"{bare_size:.0f} MiB; ultr / bare {rate / reference:.2f} "
              f"(goal 0.9: {'ok' if rate >= 0.9 * reference else 'MISSED'})", flush=True)
    if args.memory_sessions:
        out = Path(tempfile.mkdtemp(prefix="ultr-bench-"))
        try:
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "ultr", "simulate", "--data", args.data, "--sessions",
                            str(args.memory_sessions), "--out", str(out / "logs")],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            elapsed = time.perf_counter() - started
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB -> GiB
            print(f"{args.memory_sessions:>12,} sessions through 'ultr simulate': {elapsed:.1f}s wall "
                  f"(with start-up and policy training), peak memory {peak:.2f} GiB "
                  f"(goal < 1 GiB: {'ok' if peak < 1 else 'MISSED'})")
        finally:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()

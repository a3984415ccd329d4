"""End-to-end simulation to Parquet: sessions per second and peak memory.

Run by hand: ``python benchmarks/simulate_throughput.py [--data PATH] [--sessions N] [--memory-sessions M]``.
Goals on a 2-core CPU: >= 1M sessions/s (PBM, 10 positions); peak memory < 1 GiB for 20M sessions.
Uses MQ2008 Fold1 from ../shared/data when present, else the synthetic dataset.
"""

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from simulators.datasets import load_dataset
from simulators.simulation import SimulationConfig, Simulator

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mq2008" / "Fold1"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(DEFAULT_DATA) if DEFAULT_DATA.exists() else "synthetic")
    parser.add_argument("--sessions", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--memory-sessions", type=int, default=20_000_000)
    args = parser.parse_args()
    dataset = load_dataset(args.data)
    simulator = Simulator(dataset, SimulationConfig(click_model="pbm"), seed=0)
    print(f"data: {args.data} ({dataset.train.num_queries} training queries); PBM, 10 positions, production policy")
    for n in args.sessions:
        out = Path(tempfile.mkdtemp(prefix="ultr-bench-"))
        try:
            summary = simulator.run(out, n, progress=False)
            size = sum(f.stat().st_size for f in out.glob("*.parquet")) / 2**20
            rate = summary["sessions_per_second"]
            print(f"{n:>12,} sessions: {summary['seconds']:.2f}s, {rate / 1e6:.2f}M sessions/s "
                  f"(goal 1M: {'ok' if rate >= 1e6 else 'MISSED'}), {len(summary['files'])} files, {size:.0f} MiB")
        finally:
            shutil.rmtree(out, ignore_errors=True)
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

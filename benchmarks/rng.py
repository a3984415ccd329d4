"""Key implementations in the simulator: throughput and chunk-size consistency of threefry2x32 (the default), rbg
and unsafe_rbg.

Run by hand: ``python benchmarks/rng.py [--data PATH]``. Each implementation is chosen with
``SimulationConfig(generator=...)`` (``ultr simulate --generator``) in its own process; the simulator's compiled
chunk is timed without writing, and the clicks of sessions 0..49,999 are compared between chunks of 3,000 and of
50,000 sessions (the rbg generators draw in aligned blocks of ``RBG_BLOCK`` sessions, so they must not differ).
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

from simulators.simulation import GENERATORS

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mq2008" / "Fold1"

ONE = """
import json, sys, time
import numpy as np
from simulators.datasets import load_dataset
from simulators.simulation import SimulationConfig, Simulator
dataset = load_dataset(sys.argv[2])
out = {}
for model in ("pbm", "cascade", "dbn"):
    simulator = Simulator(dataset, SimulationConfig(click_model=model, generator=sys.argv[1]), seed=0)
    simulator.simulate_chunk(0, 100_000)
    started = time.perf_counter()
    for i in range(5):
        simulator.simulate_chunk(i * 100_000, 100_000)
    out[model] = 500_000 / (time.perf_counter() - started)
small = np.concatenate([simulator.simulate_chunk(s, 3_000)["clicks"] for s in range(0, 51_000, 3_000)])[:50_000]
large = simulator.simulate_chunk(0, 50_000)["clicks"]
out["differing"] = float(np.mean(np.any(small != large, axis=1)))
print(json.dumps(out))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(DEFAULT_DATA) if DEFAULT_DATA.exists() else "synthetic")
    args = parser.parse_args()
    print(f"data: {args.data}; the simulator's chunk of 100,000 sessions, no writing")
    print("| generator | PBM | Cascade | DBN | sessions differing between chunks of 3,000 and 50,000 |")
    print("| --- | --- | --- | --- | --- |")
    for impl in GENERATORS:
        done = subprocess.run([sys.executable, "-c", ONE, impl, args.data], capture_output=True, text=True, check=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"| {impl} | {r['pbm'] / 1e6:.2f}M/s | {r['cascade'] / 1e6:.2f}M/s | {r['dbn'] / 1e6:.2f}M/s | "
              f"{r['differing']:.1%} |")


if __name__ == "__main__":
    main()

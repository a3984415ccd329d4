"""How time and peak memory grow with the log: ``ultr simulate``, ``ultr fit`` and ``ultr propensity`` at 1M, 4M and
16M sessions (MQ2008 Fold1 from ../shared/data when present, else the synthetic dataset; PBM, 10 positions).

Run by hand: ``python benchmarks/memory.py [--sessions 1000000 4000000 16000000]``.
Goal: peak memory flat in the log size and under 1 GiB for every command (the readers stream with bounded
read-ahead). Each command runs in its own process; its peak resident memory is that process's ``ru_maxrss``.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mq2008" / "Fold1"

#: runs a command line in a child and prints its wall time and peak memory (the child's alone)
MEASURE = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
if done.returncode:
    sys.exit(done.stderr[-2000:])
print(json.dumps({"seconds": time.perf_counter() - started,
                  "peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def measure(*command) -> dict:
    done = subprocess.run([sys.executable, "-c", MEASURE, sys.executable, "-m", "ultr", *command],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(DEFAULT_DATA) if DEFAULT_DATA.exists() else "synthetic")
    parser.add_argument("--sessions", type=int, nargs="+", default=[1_000_000, 4_000_000, 16_000_000])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ultr-memory-"))
    print(f"data: {args.data}; PBM logs, 10 positions; each command in its own process")
    print(f"| command | {' | '.join(f'{n:,} sessions' for n in args.sessions)} |")
    print("| --- |" + " --- |" * len(args.sessions))
    rows = {"simulate": [], "fit (pbm, em)": [], "propensity (ctr)": []}
    try:
        for n in args.sessions:
            logs = work / f"logs-{n}"
            rows["simulate"].append(measure("simulate", "--data", args.data, "--sessions", str(n), "--out", str(logs)))
            rows["fit (pbm, em)"].append(measure("fit", "--logs", str(logs), "--out", str(work / f"fit-{n}")))
            rows["propensity (ctr)"].append(measure("propensity", "--logs", str(logs), "--estimator", "ctr",
                                                    "--bootstrap", "0", "--out", str(work / f"ctr-{n}.json")))
            shutil.rmtree(logs)
        worst = 0.0
        for name, cells in rows.items():
            worst = max(worst, *(c["peak_mib"] for c in cells))
            print(f"| `{name}` | " + " | ".join(f"{c['seconds']:.1f} s, {c['peak_mib']:,.0f} MiB" for c in cells)
                  + " |")
        print(f"largest peak {worst:,.0f} MiB (goal < 1,024 MiB: {'ok' if worst < 1024 else 'MISSED'})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

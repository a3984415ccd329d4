"""EM over sessions with and without SQUAREM: passes over the log, seconds and held-out log-likelihood.

Run by hand: ``python benchmarks/fit_em.py [--sessions 800000] [--models dbn ccm]``. Each model's log is
simulated from MQ2008 Fold1 (../shared/data, else the synthetic dataset) with that click model, then fitted by
``fit_log`` (EM, 10 % of the sessions held out) both ways, one after the other in this process.
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from click_models import fitting
from click_models.fit_log import fit_log
from simulators.datasets import load_dataset
from simulators.simulation import SimulationConfig, Simulator

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mq2008" / "Fold1"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(DEFAULT_DATA) if DEFAULT_DATA.exists() else "synthetic")
    parser.add_argument("--sessions", type=int, default=800_000)
    parser.add_argument("--models", nargs="+", default=["dbn", "ccm"])
    args = parser.parse_args()
    dataset = load_dataset(args.data)
    work = Path(tempfile.mkdtemp(prefix="ultr-em-"))
    plain_em = fitting._em_generic
    print(f"data: {args.data}, {args.sessions:,} sessions per log")
    print("| model | EM | passes | seconds | held-out log-likelihood per session |")
    print("| --- | --- | --- | --- | --- |")
    try:
        for model in args.models:
            logs = work / model
            Simulator(dataset, SimulationConfig(click_model=model), seed=0).run(logs, args.sessions, progress=False)
            fit_log(logs, model, "em", max_iterations=1)  # compile the E-step outside the timings
            results = {}
            for label, accelerate in (("plain", False), ("SQUAREM", True)):
                fitting._em_generic = lambda *a, _acc=accelerate: plain_em(*a[:10], _acc)
                started = time.perf_counter()
                fitted = fit_log(logs, model, "em", max_iterations=1_000)
                seconds = time.perf_counter() - started
                results[label] = (fitted.metrics["passes"], seconds)
                print(f"| {model} | {label} | {fitted.metrics['passes']} | {seconds:.1f} | "
                      f"{fitted.metrics['held_out_log_likelihood']:.6f} |", flush=True)
            (p0, s0), (p1, s1) = results["plain"], results["SQUAREM"]
            print(f"| {model} | ratio | {p0 / p1:.2f}x fewer | {s0 / s1:.2f}x faster | |")
    finally:
        fitting._em_generic = plain_em
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

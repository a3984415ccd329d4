"""Are the propensity estimators' 95% intervals calibrated? Coverage and bias over many seeds.

MQ2008 Fold1, PBM with the DLA paper's propensities (eta = 1), production ranker on 1% of the training
queries, the same logs as experiments/propensity_estimation.py (RandTop-k over the top 10 in every session;
rank 1 swapped with a uniform rank k in half of the sessions; four production rankers for intervention
harvesting). For every seed a fresh log is simulated and each estimator's interval is checked against the
truth, rank by rank. Reports, per estimator and rank, the share of seeds whose interval covers the truth,
the bias (mean estimate minus truth, with its standard error over seeds) and the mean interval width.
Writes docs/results/coverage.md (and coverage.json beside it).

Run: python experiments/coverage.py [--seeds 20] [--sessions 1000000]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from click_models.logs import atomic_write_json, atomic_write_text
from simulators.datasets import load_dataset
from simulators.simulation import SimulationConfig, Simulator
from ultr.propensity import estimate, true_examination

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "mq2008" / "Fold1"
LOGS = {
    "randtopk": SimulationConfig(intervention="randtopk"),
    "swap": SimulationConfig(intervention="swap", intervention_rate=0.5),
    "harvest": SimulationConfig(policies=("production",) * 4),
}
#: estimators with intervals, and the log each needs (em and dla report none)
RUNS = [("randtopk", "randtopk"), ("trust-bias", "randtopk"), ("swap", "swap"), ("pivot", "harvest"),
        ("adjacent", "harvest"), ("allpairs", "harvest")]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/ultr-coverage"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "coverage.md")
    args = parser.parse_args()
    dataset = load_dataset(str(DATA))
    started = time.perf_counter()
    estimates = {run: [] for run in RUNS}  # run -> [(examination, low, high)] per seed
    truth = None
    for seed in range(args.seeds):
        for log_name, config in LOGS.items():
            logs = args.work / f"{log_name}-{seed}"
            Simulator(dataset, config, seed=seed).run(logs, args.sessions, progress=False, overwrite=True)
            truth = true_examination(logs)
            for estimator, needed in RUNS:
                if needed != log_name:
                    continue
                result = estimate(logs, estimator, seed=seed)
                estimates[(estimator, needed)].append((np.asarray(result.examination), np.asarray(result.ci_low),
                                                       np.asarray(result.ci_high)))
            shutil.rmtree(logs)
        print(f"seed {seed} done after {time.perf_counter() - started:.0f}s", flush=True)
    K = len(truth)
    rows, payload = [], {"seeds": args.seeds, "sessions": args.sessions, "truth": truth.tolist(), "estimators": {}}
    for (estimator, log_name), values in estimates.items():
        theta = np.stack([v[0] for v in values])
        low, high = np.stack([v[1] for v in values]), np.stack([v[2] for v in values])
        covered = (low <= truth) & (truth <= high)
        bias = theta.mean(0) - truth
        standard_error = theta.std(0, ddof=1) / np.sqrt(len(theta)) if len(theta) > 1 else np.full(K, np.nan)
        width = (high - low).mean(0)
        payload["estimators"][estimator] = {"logs": log_name, "coverage": covered.mean(0).tolist(),
                                            "bias": bias.tolist(), "bias_standard_error": standard_error.tolist(),
                                            "mean_width": width.tolist()}
        ranks = range(1, K)  # rank 1 is the reference (exactly 1)
        rows.append(f"| {estimator} ({log_name} logs) | " + " | ".join(f"{covered[:, k].mean():.0%}" for k in ranks)
                    + f" | {covered[:, 1:].mean():.0%} |")
        rows.append("| bias x 1000 | " + " | ".join(f"{1000 * bias[k]:+.1f} ± {1000 * standard_error[k]:.1f}"
                                                   for k in ranks) + " | |")
        rows.append("| interval width x 1000 | " + " | ".join(f"{1000 * width[k]:.1f}" for k in ranks) + " | |")
    header = "| estimator | " + " | ".join(f"rank {k}" for k in range(2, K + 1)) + " | all |"
    text = "\n".join([
        "# Propensity estimators: coverage of the 95% intervals, and bias",
        "",
        f"MQ2008 Fold1, PBM with the DLA paper's propensities, eta = 1, production ranker on 1% of the training "
        f"queries; {args.seeds} seeds (a fresh log each), {args.sessions:,} sessions per log. Per estimator and rank: "
        "the share of seeds whose 95% bootstrap interval covers the true examination (at least 90% is expected), "
        "the bias (mean estimate minus truth over the seeds, ± its standard error) and the mean interval width. "
        "`em` and `dla` report no interval and are left out.",
        "",
        f"Regenerate: `python experiments/coverage.py --seeds {args.seeds} --sessions {args.sessions}` "
        f"({time.perf_counter() - started:.0f} s on a 2-core CPU).",
        "",
        header,
        "| --- " * (K + 1) + "|",
        *rows,
        "",
        "Logs: randtopk = the top 10 shuffled in every session; swap = rank 1 swapped with a uniform rank in half "
        "of the sessions; harvest = four production rankers trained on different 1% samples of the training "
        "queries, one drawn per session. Intervals: Poisson bootstrap of the impressions and clicks of every "
        "(query, document, rank) cell (randtopk, swap), or over (query, document) clusters (harvesting, "
        "trust-bias).",
        "",
    ])
    atomic_write_text(text, args.out)
    atomic_write_json(payload, args.out.with_suffix(".json"))
    print(text)


if __name__ == "__main__":
    main()

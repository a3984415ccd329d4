"""Policy-aware IPS and doubly robust learning under stochastic top-k logging (issue 14, result 2).

A Plackett-Luce logging policy (temperature 1 over a production ranker's scores) samples a ranking of the
20 candidates of each query per session and shows the top 5; PBM clicks (eta = 1). Per-rank IPS corrects
for examination only, so candidates a session did not show are missing from its loss; policy-aware IPS
(Oosterhuis and de Rijke, SIGIR 2020) and doubly robust learning (Oosterhuis, TOIS 2023) weight by each
document's expected examination over the policy's rankings. The full-information skyline is the target.
Writes docs/results/policy_aware.md and .json (mean and standard deviation over seeds).

Run: python experiments/policy_aware.py [--seeds 0 1 2] [--sessions 300000] [--epochs 6]
Runs are saved under --work and resumed.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from click_models.logs import atomic_write_json, atomic_write_text
from simulators.datasets import load_dataset
from simulators.simulation import SimulationConfig, Simulator
from ultr.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
DATASET = "synthetic:queries=500,docs=20,features=20,seed=0"
LEARNERS = ["naive", "ips", "policy-oblivious-ips", "policy-aware-ips", "doubly-robust", "skyline"]
NEEDS_PROPENSITIES = {"ips", "policy-oblivious-ips", "policy-aware-ips", "doubly-robust"}


def production_score_spread(dataset, top_k: int, seed: int) -> float:
    """Standard deviation of the production ranker's scores over the training documents: the production
    ranker of some seeds scores on a larger scale, which at one fixed temperature makes their Plackett-Luce
    policy almost deterministic (documents never shown, whose relevance no estimator can recover)."""
    simulator = Simulator(dataset, SimulationConfig(click_model="pbm", eta=1.0, list_size=top_k,
                                                    policies=("plackett-luce",)), seed=seed)
    scores = simulator.policies[0].scores
    return float(np.std(scores[np.isfinite(scores)]))  # padding is -inf


def simulate_log(dataset, logs: Path, sessions: int, seed: int, top_k: int = 5, temperature: float = 1.0) -> None:
    """The seed's stochastic top-k log (temperature in units of the production ranker's score spread); a log
    of N sessions is the first N sessions of any longer one."""
    temperature *= production_score_spread(dataset, top_k, seed)
    config = SimulationConfig(click_model="pbm", eta=1.0, list_size=top_k, policies=("plackett-luce",),
                              temperature=temperature)
    Simulator(dataset, config, seed=seed).run(logs, sessions, progress=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sessions", type=int, default=300_000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="Plackett-Luce temperature in units of the production ranker's score spread")
    parser.add_argument("--learners", nargs="+", choices=LEARNERS, default=LEARNERS)
    parser.add_argument("--work", type=Path, default=Path("/tmp/ultr-policy-aware"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from the saved JSON")
    args = parser.parse_args()
    settings = {k: getattr(args, k) for k in ("sessions", "epochs", "top_k", "temperature")}
    if args.report_only:
        saved = json.loads((args.out / "policy_aware.json").read_text())
        write_report(saved["runs"], saved["settings"], args.out)
        return
    dataset = load_dataset(DATASET)
    saved_runs = args.work / "runs.json"
    saved = json.loads(saved_runs.read_text()) if saved_runs.exists() else {}
    runs = saved.get("runs", {}) if saved.get("settings") == settings else {}
    for seed in args.seeds:
        logs = args.work / f"seed{seed}"
        todo = [learner for learner in args.learners if all(r["seed"] != seed for r in runs.get(learner, []))]
        if todo and not (logs / "simulation.json").exists():
            simulate_log(dataset, logs, args.sessions, seed, args.top_k, args.temperature)
        for learner in todo:
            started = time.perf_counter()
            config = TrainConfig(learner=learner, seed=seed, epochs=args.epochs, patience=10**6,
                                 propensities="oracle" if learner in NEEDS_PROPENSITIES else None)
            result = train(logs, dataset, config, progress=False)
            runs.setdefault(learner, []).append({"seed": seed, **result.test, "steps": result.steps,
                                                 "seconds": time.perf_counter() - started})
            atomic_write_json({"settings": settings, "runs": runs}, saved_runs)
            print(f"seed {seed} {learner:>16}: nDCG@10 {result.test['ndcg@10']:.4f} "
                  f"({time.perf_counter() - started:.0f}s)", flush=True)
    write_report({k: [r for r in v if r["seed"] in args.seeds] for k, v in runs.items()}, settings, args.out,
                 args.seeds)


def write_report(runs, settings, out: Path, seeds=None):
    seeds = seeds or sorted({r["seed"] for v in runs.values() for r in v})
    lines = [
        "# Policy-aware IPS and doubly robust learning under stochastic top-k logging",
        "",
        f"`{DATASET}`; a Plackett-Luce logging policy (temperature {settings['temperature']} times the standard "
        f"deviation of the production ranker's scores, so that every seed's policy is equally random) over the "
        f"scores of a production ranker trained on 1% of the training queries samples a ranking of each query's 20 "
        f"candidates per session and shows the top {settings['top_k']}; PBM clicks with eta = 1; "
        f"{settings['sessions']:,} sessions per seed, seeds {seeds}. Every learner trains the default MLP "
        f"(64-32, Adagrad 0.05) for {settings['epochs']} passes, keeping the ranker with the best validation "
        "nDCG@10; propensities from the simulation (`--propensities oracle`). Test metrics over queries with a "
        "relevant document; mean ± standard deviation over seeds.",
        "",
        f"Regenerate: `python experiments/policy_aware.py --seeds {' '.join(map(str, seeds))} --sessions "
        f"{settings['sessions']} --epochs {settings['epochs']}` (`--report-only` rewrites this page from the JSON "
        "beside it). What the learners do: [docs/learners.md](../learners.md#policy-aware-ips-stochastic-top-k-logging).",
        "",
        "| learner | nDCG@10 | nDCG@5 | ERR@10 | per seed (nDCG@10) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for learner in LEARNERS:
        if learner not in runs or not runs[learner]:
            continue
        rows = sorted(runs[learner], key=lambda r: r["seed"])
        cells = []
        for metric in ("ndcg@10", "ndcg@5", "err@10"):
            values = np.array([r[metric] for r in rows])
            cells.append(f"{values.mean():.4f} ± {values.std(ddof=1) if len(values) > 1 else 0:.4f}")
        per_seed = ", ".join(f"{r['ndcg@10']:.4f}" for r in rows)
        lines.append(f"| {learner} | " + " | ".join(cells) + f" | {per_seed} |")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text("\n".join(lines) + "\n", out / "policy_aware.md")
    atomic_write_json({"settings": settings, "runs": runs}, out / "policy_aware.json")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

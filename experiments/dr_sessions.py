"""Doubly robust against IPS as the number of sessions grows (issue 14, result 3).

The setup of experiments/policy_aware.py (a Plackett-Luce policy shows the top 5 of 20 candidates, PBM
clicks, the temperature the production ranker's score spread): per-rank IPS, policy-aware IPS and doubly
robust learning trained on the first N sessions of each seed's log, N from 10^3 to 10^6. Every run trains for
at least --min-steps steps (small logs get more passes) and keeps the ranker with the best validation
nDCG@10. Writes docs/results/dr_sessions.md, .json and dr_sessions.png (nDCG@10 against sessions, mean and
standard deviation over seeds).

Run: python experiments/dr_sessions.py [--seeds 0 1 2] [--sessions 1000 10000 100000 1000000]
Runs are saved under --work and resumed.
"""

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from click_models.logs import atomic_path, atomic_write_json, atomic_write_text
from policy_aware import DATASET, simulate_log
from simulators.datasets import load_dataset
from ultr.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
LEARNERS = ["ips", "policy-aware-ips", "doubly-robust"]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--min-steps", type=int, default=1_500)
    parser.add_argument("--learners", nargs="+", choices=LEARNERS, default=LEARNERS)
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="the logging policy's temperature in units of the production ranker's score spread "
                             "(policy_aware.py's; lower is closer to deterministic)")
    parser.add_argument("--work", type=Path, default=None, help="default: /tmp/ultr-dr-sessions[-temperatureT]")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--train-up-to", type=int, default=None,
                        help="train only at session counts up to this; larger ones come from policy_aware.json")
    args = parser.parse_args()
    settings = {"epochs": args.epochs, "min_steps": args.min_steps}
    if args.temperature != 1.0:
        settings["temperature"] = args.temperature
    if args.work is None:
        suffix = "" if args.temperature == 1.0 else f"-temperature{args.temperature:g}"
        args.work = Path(f"/tmp/ultr-dr-sessions{suffix}")
    if args.report_only:
        saved = json.loads((args.out / f"{report_stem(settings)}.json").read_text())
        write_report(saved["runs"], saved["settings"], args.out)
        return
    dataset = load_dataset(DATASET)
    saved_file = args.work / "runs.json"
    saved = json.loads(saved_file.read_text()) if saved_file.exists() else {}
    runs = saved.get("runs", []) if saved.get("settings") == settings else []
    runs += reused_policy_aware_runs(args, runs)
    for sessions in sorted(args.sessions):
        for seed in args.seeds:
            logs = args.work / f"seed{seed}-{sessions}"
            if args.train_up_to is not None and sessions > args.train_up_to:
                continue
            for learner in args.learners:
                if any(r["seed"] == seed and r["sessions"] == sessions and r["learner"] == learner for r in runs):
                    continue
                if not (logs / "simulation.json").exists():  # the first N sessions of the seed's log
                    simulate_log(dataset, logs, sessions, seed, 5, args.temperature)
                steps = max(args.epochs * math.ceil(sessions / 256), args.min_steps)
                started = time.perf_counter()
                result = train(logs, dataset, TrainConfig(learner=learner, seed=seed, max_steps=steps,
                                                          patience=10**6, propensities="oracle"), progress=False)
                runs.append({"learner": learner, "seed": seed, "sessions": sessions, "steps": result.steps,
                             "seconds": time.perf_counter() - started, **result.test})
                atomic_write_json({"settings": settings, "runs": runs}, saved_file)
                print(f"{sessions:>8} seed {seed} {learner:>16}: nDCG@10 {result.test['ndcg@10']:.4f} "
                      f"({time.perf_counter() - started:.0f}s)", flush=True)
    write_report([r for r in runs if r["seed"] in args.seeds and r["sessions"] in args.sessions], settings, args.out)


def reused_policy_aware_runs(args, runs) -> list[dict]:
    """The runs of docs/results/policy_aware.json at its session count: the same logs (same seed and
    simulation) and the same training (its passes equal this script's step count), so not trained twice."""
    path = args.out / "policy_aware.json"
    if not path.exists():
        return []
    saved = json.loads(path.read_text())
    config = saved["settings"]
    n = config["sessions"]
    if n not in args.sessions or config["epochs"] != args.epochs or config["top_k"] != 5 \
            or config["temperature"] != args.temperature or args.epochs * math.ceil(n / 256) < args.min_steps:
        return []
    have = {(r["learner"], r["seed"], r["sessions"]) for r in runs}
    return [{"learner": learner, "sessions": n, **r, "reused": "policy_aware.json"}
            for learner, rows in saved["runs"].items() if learner in args.learners
            for r in rows if r["seed"] in args.seeds and (learner, r["seed"], n) not in have]


def report_stem(settings) -> str:
    """dr_sessions, or dr_sessions_temperatureT for another logging temperature."""
    temperature = settings.get("temperature", 1.0)
    return "dr_sessions" if temperature == 1.0 else f"dr_sessions_temperature{temperature:g}"


def write_report(runs, settings, out: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sessions = sorted({r["sessions"] for r in runs})
    seeds = sorted({r["seed"] for r in runs})
    stem = report_stem(settings)
    temperature = settings.get("temperature", 1.0)
    policy = ("" if temperature == 1.0 else
              f" but at temperature {temperature:g} times the production ranker's score spread (closer to "
              "deterministic: many candidates are rarely shown)")
    lines = [
        "# Doubly robust against IPS as the sessions grow" + ("" if temperature == 1.0 else
                                                               f" (logging temperature {temperature:g})"),
        "",
        f"The setup of [policy_aware.md](policy_aware.md){policy}: a Plackett-Luce policy shows the top 5 of each "
        "query's 20 candidates, PBM clicks, `synthetic:queries=500,docs=20,features=20,seed=0`. Each learner trains the default "
        f"MLP on the first N sessions of the seed's log for {settings['epochs']} passes or at least "
        f"{settings['min_steps']} steps, keeping the ranker with the best validation nDCG@10; propensities from the "
        f"simulation. Test nDCG@10, mean ± standard deviation over seeds {seeds}."
        + (" The runs at the session count of policy_aware.md are that page's (the same logs and training)."
           if temperature == 1.0 else ""),
        "",
        f"Regenerate: `python experiments/dr_sessions.py --seeds {' '.join(map(str, seeds))} --sessions "
        f"{' '.join(map(str, sessions))} --min-steps {settings['min_steps']}"
        + ("" if temperature == 1.0 else f" --temperature {temperature:g}") + "` (`--report-only` redraws the table and "
        "plot from the JSON beside it). Each cell gives the number of seeds behind it when fewer than all.",
        "",
        "| sessions | " + " | ".join(LEARNERS) + " |",
        "| --- | " + " | ".join("---" for _ in LEARNERS) + " |",
    ]
    fig, ax = plt.subplots(figsize=(6, 4))
    for learner in LEARNERS:
        means, stds = [], []
        for n in sessions:
            values = np.array([r["ndcg@10"] for r in runs if r["learner"] == learner and r["sessions"] == n])
            means.append(values.mean() if len(values) else np.nan)
            stds.append(values.std(ddof=1) if len(values) > 1 else 0.0)
        ax.errorbar(sessions, means, yerr=stds, marker="o", capsize=3, label=learner)
    for n in sessions:
        cells = []
        for learner in LEARNERS:
            values = np.array([r["ndcg@10"] for r in runs if r["learner"] == learner and r["sessions"] == n])
            count = "" if len(values) == len(seeds) else f" ({len(values)} seeds)"
            cells.append(f"{values.mean():.4f} ± {values.std(ddof=1) if len(values) > 1 else 0:.4f}{count}"
                         if len(values) else "")
        lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
    ax.set_xscale("log")
    ax.set_xlabel("sessions")
    ax.set_ylabel("test nDCG@10 (mean ± s.d. over seeds)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / f"{stem}.png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    lines += ["", f"![nDCG@10 against sessions]({stem}.png)", ""]
    atomic_write_text("\n".join(lines), out / f"{stem}.md")
    atomic_write_json({"settings": settings, "runs": runs}, out / f"{stem}.json")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

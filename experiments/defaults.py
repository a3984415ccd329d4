"""Which training settings work out of the box? Naive, IPS, DLA and the skyline under candidate defaults.

For every dataset we have (MQ2008 Fold1, the Yahoo and MSLR-WEB samples, the built-in synthetic set), a PBM
log (eta = 1) from the production ranker (``ultr simulate``'s defaults), then each learner under each
candidate setting. Reports test nDCG@10 (mean over seeds) and whether IPS (oracle propensities) and DLA beat
Naive. The chosen setting became the default of ``ultr train`` and ``ultr run``.
Writes docs/results/defaults.md.

Each (dataset, seed, setting, learner) result is kept in docs/results/defaults.json, so a run resumes where an
earlier one stopped and more seeds can be added later; the table averages the seeds asked for.

Run: python experiments/defaults.py [--sessions 100000] [--seeds 0 1 2] [--settings NAME ...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from click_models.logs import atomic_write_text
from simulators.datasets import load_dataset
from simulators.simulation import SimulationConfig, Simulator
from ultr.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DATASETS = {
    "MQ2008 Fold1": str(SHARED / "mq2008" / "Fold1"),
    "Yahoo sample": str(SHARED / "yahoo-lightgbm-sample"),
    "MSLR-WEB sample": str(SHARED / "mslr-web-sample"),
    "synthetic": "synthetic",
}
#: candidate settings: short name -> (description, TrainConfig keys)
SETTINGS = {
    "before": ("before (MLP 512-256-128, AdamW 1e-3, 1 pass)", {
        "ranker": "mlp", "hidden": (512, 256, 128), "optimizer": "adamw", "learning_rate": 1e-3, "epochs": 1}),
    "mlp-adagrad": ("MLP 64-32, Adagrad 0.05, 3 passes", {
        "ranker": "mlp", "hidden": (64, 32), "optimizer": "adagrad", "learning_rate": 0.05, "epochs": 3}),
    "linear-adagrad": ("linear, Adagrad 0.05, 3 passes", {
        "ranker": "linear", "optimizer": "adagrad", "learning_rate": 0.05, "epochs": 3}),
}
LEARNERS = ["naive", "ips", "dla", "skyline"]


def config_of(learner: str, setting: dict, seed: int) -> TrainConfig:
    values = dict(setting)
    if values.get("optimizer") != "adamw":
        values["weight_decay"] = 0.0 if "weight_decay" not in values else values["weight_decay"]
    if values.get("ranker") == "linear":
        values.pop("hidden", None)
    extra = {}
    if learner == "ips":
        extra["propensities"] = "oracle"
    return TrainConfig(learner=learner, seed=seed, **values, **extra)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS)[:3])
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--report-only", action="store_true", help="write the table from the saved results")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ultr-defaults"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "defaults.md")
    args = parser.parse_args()
    started = time.perf_counter()
    store = args.out.with_suffix(".json")
    saved = json.loads(store.read_text()) if store.exists() else {}

    def key(name, seed, setting_name, learner):
        return f"{name} | sessions {args.sessions} | seed {seed} | {SETTINGS[setting_name][0]} | {learner}"

    for name in args.datasets:
        dataset = None
        for seed in args.seeds:
            missing = [(s, l) for s in args.settings for l in LEARNERS if key(name, seed, s, l) not in saved]
            if not missing or args.report_only:
                continue
            dataset = dataset or load_dataset(DATASETS[name])
            logs = args.work / f"{name.replace(' ', '-')}-{seed}"
            Simulator(dataset, SimulationConfig(), seed=seed).run(logs, args.sessions, progress=False, overwrite=True)
            for setting_name, learner in missing:
                run_started = time.perf_counter()
                result = train(logs, dataset, config_of(learner, SETTINGS[setting_name][1], seed), progress=False)
                saved[key(name, seed, setting_name, learner)] = {
                    "ndcg@10": result.test["ndcg@10"], "seconds": round(time.perf_counter() - run_started, 1)}
                atomic_write_text(json.dumps(saved, indent=1, sort_keys=True) + "\n", store)
                print(f"{name} seed {seed} | {setting_name} | {learner}: {result.test['ndcg@10']:.4f} "
                      f"({time.perf_counter() - started:.0f}s)", flush=True)
            shutil.rmtree(logs)
    rows = []
    seconds = 0.0
    for name in args.datasets:
        for setting_name in args.settings:
            seeds = [seed for seed in args.seeds
                     if all(key(name, seed, setting_name, learner) in saved for learner in LEARNERS)]
            if not seeds:
                continue
            cells = {learner: [saved[key(name, seed, setting_name, learner)] for seed in seeds]
                     for learner in LEARNERS}
            seconds += sum(cell["seconds"] or 0.0 for column in cells.values() for cell in column)
            means = {learner: float(np.mean([cell["ndcg@10"] for cell in cells[learner]])) for learner in LEARNERS}
            beats = "yes" if means["ips"] > means["naive"] and means["dla"] > means["naive"] else "no"
            wins = sum(cells["ips"][i]["ndcg@10"] > cells["naive"][i]["ndcg@10"]
                       and cells["dla"][i]["ndcg@10"] > cells["naive"][i]["ndcg@10"] for i in range(len(seeds)))
            beats += f" ({wins} of {len(seeds)} seeds)"
            rows.append(f"| {name} | {SETTINGS[setting_name][0]} | {', '.join(map(str, seeds))} | "
                        + " | ".join(f"{means[l]:.4f}" for l in LEARNERS) + f" | {beats} |")
    text = "\n".join([
        "# Training defaults: which settings let IPS and DLA beat Naive without tuning",
        "",
        f"PBM clicks (eta = 1, ``ultr simulate``'s defaults: production ranker on 1% of the training queries, top "
        f"10), {args.sessions:,} sessions, seeds {', '.join(map(str, args.seeds))} (mean test nDCG@10 shown). IPS "
        "uses the oracle propensities; every other option is the learner's default.",
        "",
        f"Regenerate: `python experiments/defaults.py --sessions {args.sessions} --settings mlp-adagrad "
        f"linear-adagrad --seeds 0 1 2` and `python experiments/defaults.py --sessions {args.sessions} --settings "
        f"before --seeds 0` ({seconds:.0f} s of training on a 2-core CPU for the results whose time was recorded, "
        f"seeds 1 and 2; each result is kept in "
        f"`{store.name}`, and `--report-only` rewrites this table from it).",
        "",
        "The default of `ultr train` and `ultr run` is now the MLP 64-32 with Adagrad 0.05 for three passes: IPS and "
        "DLA beat Naive on every dataset on average, and on 8 of the 9 dataset-seed pairs (the exception: IPS on "
        "MQ2008, seed 0). The linear ranker is the better choice on MQ2008 (IPS 0.7213) but its DLA falls below "
        "Naive on the MSLR-WEB sample at seed 0; the old default (MLP 512-256-128, AdamW 1e-3, one pass) lost to "
        "Naive on MQ2008 already at seed 0 and was not run further.",
        "",
        "| dataset | setting | seeds | naive | IPS | DLA | skyline | IPS and DLA beat naive |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
    ])
    atomic_write_text(text, args.out)
    print(text)


if __name__ == "__main__":
    main()

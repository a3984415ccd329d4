"""Which training settings work out of the box? Naive, IPS, DLA and the skyline under candidate defaults.

For every dataset we have (MQ2008 Fold1, the Yahoo and MSLR-WEB samples, the built-in synthetic set), a PBM
log (eta = 1) from the production ranker (``ultr simulate``'s defaults), then each learner under each
candidate setting. Reports test nDCG@10 (mean over seeds) and whether IPS (oracle propensities) and DLA beat
Naive. The chosen setting became the default of ``ultr train`` and ``ultr run``.
Writes docs/results/defaults.md.

Run: python experiments/defaults.py [--sessions 200000] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
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
#: candidate settings: TrainConfig keys (DLA also gets its own keys)
SETTINGS = {
    "before (MLP 512-256-128, AdamW 1e-3, 1 pass)": {
        "ranker": "mlp", "hidden": (512, 256, 128), "optimizer": "adamw", "learning_rate": 1e-3, "epochs": 1},
    "MLP 64-32, Adagrad 0.05, 3 passes": {
        "ranker": "mlp", "hidden": (64, 32), "optimizer": "adagrad", "learning_rate": 0.05, "epochs": 3},
    "linear, Adagrad 0.05, 3 passes": {
        "ranker": "linear", "optimizer": "adagrad", "learning_rate": 0.05, "epochs": 3},
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
    parser.add_argument("--sessions", type=int, default=200_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--work", type=Path, default=Path("/tmp/ultr-defaults"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "defaults.md")
    args = parser.parse_args()
    started = time.perf_counter()
    results: dict[tuple[str, str, str], list[float]] = {}
    for name in args.datasets:
        dataset = load_dataset(DATASETS[name])
        for seed in args.seeds:
            logs = args.work / f"{name.replace(' ', '-')}-{seed}"
            Simulator(dataset, SimulationConfig(), seed=seed).run(logs, args.sessions, progress=False, overwrite=True)
            for setting_name, setting in SETTINGS.items():
                for learner in LEARNERS:
                    result = train(logs, dataset, config_of(learner, setting, seed), progress=False)
                    results.setdefault((name, setting_name, learner), []).append(result.test["ndcg@10"])
                    print(f"{name} seed {seed} | {setting_name} | {learner}: {result.test['ndcg@10']:.4f} "
                          f"({time.perf_counter() - started:.0f}s)", flush=True)
            shutil.rmtree(logs)
    rows = []
    for name in args.datasets:
        for setting_name in SETTINGS:
            means = {learner: float(np.mean(results[(name, setting_name, learner)])) for learner in LEARNERS}
            beats = "yes" if means["ips"] > means["naive"] and means["dla"] > means["naive"] else "no"
            rows.append(f"| {name} | {setting_name} | " + " | ".join(f"{means[l]:.4f}" for l in LEARNERS)
                        + f" | {beats} |")
    text = "\n".join([
        "# Training defaults: which settings let IPS and DLA beat Naive without tuning",
        "",
        f"PBM clicks (eta = 1, ``ultr simulate``'s defaults: production ranker on 1% of the training queries, top "
        f"10), {args.sessions:,} sessions, seeds {', '.join(map(str, args.seeds))} (mean test nDCG@10 shown). IPS "
        "uses the oracle propensities; every other option is the learner's default.",
        "",
        f"Regenerate: `python experiments/defaults.py --sessions {args.sessions} --seeds "
        f"{' '.join(map(str, args.seeds))}` ({time.perf_counter() - started:.0f} s on a 2-core CPU).",
        "",
        "| dataset | setting | naive | IPS | DLA | skyline | IPS and DLA beat naive |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
    ])
    atomic_write_text(text, args.out)
    print(text)


if __name__ == "__main__":
    main()

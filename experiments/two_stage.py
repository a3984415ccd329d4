"""Two-stage counterfactual learning to rank (issue 14, result 1): joint training of the candidate generator
and the ranker against each stage trained alone, the top-1 candidate-only method, a single-stage learner and
Naive, over seeds, on a large-pool synthetic set and on MQ2008 (all documents of a query as the pool).

The logging pipeline draws K2 candidates per session (Plackett-Luce over a production ranker's scores) and
ranks them (Plackett-Luce over the same scores), showing the top K; PBM clicks. Both temperatures are the
production ranker's score spread (see experiments/policy_aware.py). Every learner is evaluated as deployed:
the candidate generator's top K2, ordered by the ranker (single-stage learners rank the whole pool).
"independent" puts the separately trained stages (two-stage-candidates' generator, two-stage-ranker's
ranker) together. Writes docs/results/two_stage.md and .json.

Run: python experiments/two_stage.py [--setups synthetic mq2008] [--seeds 0 1 2]
Runs are saved under --work and resumed.
"""

import argparse
import json
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from click_models.logs import atomic_write_json, atomic_write_text
from policy_aware import production_score_spread
from simulators.datasets import load_dataset
from simulators.simulation import SimulationConfig, Simulator
from ultr.data import FeatureStore
from ultr.learners import TwoStagePipeline
from ultr.training import TEST_METRICS, TrainConfig, evaluate_learner, train

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SETUPS = {
    "synthetic": {"dataset": "synthetic:queries=50,docs=2000,features=20,relevant=1,seed=0", "candidates": 100, "top_k": 10,
                  "sessions": 200_000},
    "mq2008": {"dataset": str(SHARED / "mq2008" / "Fold1"), "candidates": 10, "top_k": 5, "sessions": 200_000},
}
# (name in the table, registered learner, learner options)
RUNS = [
    ("logging policy", "logging-policy", {}),
    ("naive", "naive", {}),
    ("single-stage policy-aware IPS", "policy-aware-ips", {"aggregate": True}),
    ("top-1 candidate generator", "two-stage-top1", {}),
    ("candidate generator alone", "two-stage-candidates", {}),
    ("ranker alone", "two-stage-ranker", {}),
    ("joint, REINFORCE", "two-stage", {"candidate_gradient": "reinforce"}),
    ("joint, credit-assigned", "two-stage", {"candidate_gradient": "credit-assigned"}),
    ("skyline (full information)", "skyline", {}),
]
INDEPENDENT = "independent stages"
TWO_STAGE = {"two-stage", "two-stage-top1", "two-stage-candidates", "two-stage-ranker"}
NEEDS_PROPENSITIES = TWO_STAGE | {"policy-aware-ips"}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--setups", nargs="+", choices=sorted(SETUPS), default=sorted(SETUPS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sessions", type=int, default=None, help="sessions per log (default: the setup's)")
    parser.add_argument("--steps", type=int, default=1000, help="training steps of the two-stage learners")
    parser.add_argument("--epochs", type=int, default=4, help="passes of the session learners")
    parser.add_argument("--lists", type=int, default=8, help="query lists per step of the list learners")
    parser.add_argument("--pipeline-samples", type=int, default=8, help="pipelines sampled per list and step")
    parser.add_argument("--clip", type=float, default=0.01,
                        help="smallest logging exposure in the IPS relevance (policy-aware IPS and two-stage)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ultr-two-stage"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    saved_path = args.out / "two_stage.json"
    if args.report_only:
        saved = json.loads(saved_path.read_text())
        write_report(saved["results"], saved["settings"], args.out)
        return
    work_file = args.work / "runs.json"
    saved = json.loads(work_file.read_text()) if work_file.exists() else {}
    settings = {"steps": args.steps, "epochs": args.epochs, "sessions": args.sessions, "lists": args.lists,
                "pipeline_samples": args.pipeline_samples, "clip": args.clip}
    results = saved.get("results", {}) if saved.get("settings") == settings else {}
    published = json.loads(saved_path.read_text()) if saved_path.exists() else {}
    if not results and published.get("settings") == settings:  # resume from the published runs
        results = published["results"]
    for setup_name in args.setups:
        setup = SETUPS[setup_name]
        dataset = load_dataset(setup["dataset"])
        sessions = args.sessions or setup["sessions"]
        for seed in args.seeds:
            key = f"{setup_name}/{seed}"
            done = results.setdefault(key, {})
            if all(name in done for name, _, _ in RUNS) and INDEPENDENT in done:
                continue
            logs = args.work / setup_name / f"seed{seed}"
            if not (logs / "simulation.json").exists():
                spread = production_score_spread(dataset, setup["top_k"], seed)
                config = SimulationConfig(click_model="pbm", eta=1.0, list_size=setup["top_k"],
                                          policies=("plackett-luce",), temperature=spread,
                                          candidates=setup["candidates"])
                Simulator(dataset, config, seed=seed).run(logs, sessions, progress=False)
            models = {}
            for name, learner, options in RUNS:
                if name in done and (INDEPENDENT in done
                                     or learner not in ("two-stage-candidates", "two-stage-ranker")):
                    continue  # the stages trained alone are retrained only to compose the independent stages
                started = time.perf_counter()
                if learner in TWO_STAGE:
                    options = {"candidates": setup["candidates"], "pipeline_samples": args.pipeline_samples,
                               "exposure_clip": args.clip, **options}
                elif learner == "policy-aware-ips":
                    options = {**options, "clip": args.clip}
                lists = learner in NEEDS_PROPENSITIES  # trained on per-query IPS relevance over whole pools
                config = TrainConfig(learner=learner, seed=seed, epochs=args.epochs, patience=10**6,
                                     max_steps=args.steps if lists else None,
                                     # list learners: batch_size / 16 lists per step (the skyline: / 8)
                                     batch_size=args.lists * (16 if lists else 8) if lists or learner == "skyline"
                                     else 256,
                                     propensities="oracle" if learner in NEEDS_PROPENSITIES else None,
                                     learner_options=options)
                result = train(logs, dataset, config, progress=False)
                models[learner] = result.model
                done[name] = {**result.test, "steps": result.steps, "seconds": time.perf_counter() - started}
                print(f"{key} {name:>30}: nDCG@10 {result.test['ndcg@10']:.4f} "
                      f"({time.perf_counter() - started:.0f}s)", flush=True)
                atomic_write_json({"settings": settings, "results": results}, work_file)
            if INDEPENDENT not in done:
                done[INDEPENDENT] = independent_stages(models, dataset, setup["candidates"])
                print(f"{key} {INDEPENDENT:>30}: nDCG@10 {done[INDEPENDENT]['ndcg@10']:.4f}", flush=True)
                atomic_write_json({"settings": settings, "results": results}, work_file)
    write_report(results, settings, args.out)


def independent_stages(models, dataset, candidates: int) -> dict:
    """The generator trained alone and the ranker trained alone, deployed together, on the test split."""
    generator = models["two-stage-candidates"].ranker.candidate_generator
    ranker = models["two-stage-ranker"].ranker.ranker
    learner = models["two-stage-ranker"]  # its pipeline is swapped for the composed one
    learner.ranker = TwoStagePipeline(generator, ranker, candidates)
    test_store = FeatureStore.fit(dataset.train).for_split(dataset.test)
    metrics, _ = evaluate_learner(learner, jnp.asarray(test_store.table), test_store.labelled_lists(),
                                  tuple(dataset.test_metrics or TEST_METRICS), max_label=dataset.max_label)
    return metrics


def write_report(results, settings, out: Path):
    names = [name for name, _, _ in RUNS[:6]] + [INDEPENDENT] + [name for name, _, _ in RUNS[6:]]
    lines = [
        "# Two-stage counterfactual learning to rank",
        "",
        "A two-stage logging pipeline (candidates drawn by Plackett-Luce over a production ranker's scores, then "
        "ranked by Plackett-Luce over the same scores; both temperatures the production ranker's score spread) "
        "logs PBM clicks (eta = 1) on the top K of its K2 candidates. Every learner is evaluated as deployed: "
        "the candidate generator's top K2 of the query's whole pool, ordered by the ranker; single-stage "
        "learners rank the whole pool. nDCG@10 on the test split, mean ± standard deviation over seeds "
        "(per seed in brackets).",
        "",
        f"Regenerate: `python experiments/two_stage.py --setups synthetic mq2008 --seeds 0 1 2 --steps "
        f"{settings['steps']} --epochs {settings['epochs']} --lists {settings['lists']} --pipeline-samples "
        f"{settings['pipeline_samples']} --clip {settings['clip']}` (`--report-only` rewrites this page from the JSON "
        "beside it). The learners: [docs/learners.md](../learners.md#two-stage-counterfactual-learning-to-rank).",
        "",
    ]
    for setup_name, setup in SETUPS.items():
        rows = {k: v for k, v in results.items() if k.startswith(setup_name + "/")}
        if not rows:
            continue
        seeds = sorted(int(k.split("/")[1]) for k in rows)
        lines += [f"## {setup_name}: `{Path(setup['dataset']).name if setup_name == 'mq2008' else setup['dataset']}`",
                  "",
                  f"K2 = {setup['candidates']} candidates, top K = {setup['top_k']} shown, "
                  f"{settings['sessions'] or setup['sessions']:,} sessions per seed, seeds {seeds}. The learners "
                  f"on per-query IPS relevance (two-stage, single-stage policy-aware IPS) train "
                  f"{settings['steps']} steps of {settings['lists']} query lists ({settings['pipeline_samples']} "
                  f"sampled pipelines per list), with the logging exposure clipped at {settings['clip']}; Naive "
                  f"{settings['epochs']} passes over the sessions; the skyline at least 4,000 steps of "
                  f"{settings['lists']} lists; every learner keeps the state with the best validation nDCG@10.",
                  "",
                  "| learner | nDCG@10 | nDCG@5 | per seed (nDCG@10) |",
                  "| --- | --- | --- | --- |"]
        for name in names:
            values = [rows[f"{setup_name}/{s}"].get(name) for s in seeds]
            values = [v for v in values if v is not None]
            if not values:
                continue
            cells = []
            for metric in ("ndcg@10", "ndcg@5"):
                x = np.array([v[metric] for v in values])
                cells.append(f"{x.mean():.4f} ± {x.std(ddof=1) if len(x) > 1 else 0:.4f}")
            per_seed = ", ".join(f"{v['ndcg@10']:.4f}" for v in values)
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {per_seed} |")
        lines.append("")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text("\n".join(lines), out / "two_stage.md")
    atomic_write_json({"settings": settings, "results": results}, out / "two_stage.json")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

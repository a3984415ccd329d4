"""ultr run: grids, caching, outputs and config errors reported before any work."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from ultr.cli import main

SMALL = '''
name = "small"
data = "synthetic:queries=60,docs=10,features=8,seed=1"
sessions = [5000, 10000]
seeds = [0, 1]
learners = ["naive", "ips"]
estimators = ["randtopk"]
metrics = ["ndcg@10", "precision@5"]

[simulation]
click_model = "pbm"
intervention = "randtopk"

[training]
ranker = "linear"
propensities = "oracle"
max_steps = 30
eval_every = 10
learning_rate = 0.02

[training.ips]
clip = 0.05
'''


@pytest.mark.slow
def test_run_grid_with_cached_logs_tables_and_plots(tmp_path, capsys, monkeypatch):
    from matplotlib.figure import Figure

    saved = {}
    original = Figure.savefig

    def keep(fig, path, *args, **kwargs):  # every figure the run writes, inspected below before it is saved
        saved[Path(path).name] = fig
        return original(fig, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    config = tmp_path / "small.toml"
    config.write_text(SMALL)
    assert main(["run", str(config), "--out-root", str(tmp_path / "runs")]) == 0
    assert set(saved) == {"ndcg_at_10_per_learner.png", "ndcg_at_10_vs_sessions.png", "propensities.png"}
    bars = saved["ndcg_at_10_per_learner.png"].axes[0]
    assert bars.get_ylim()[0] == 0 and bars.get_ylabel() == "test ndcg@10"
    assert "95% bootstrap interval of the mean" in bars.get_title()
    assert {t.get_text() for t in bars.get_xticklabels()} == {"naive", "ips"}
    assert all(t.get_rotation() == 30 for t in bars.get_xticklabels())
    assert bars.get_legend().get_title().get_text() == "sessions"
    curve = saved["ndcg_at_10_vs_sessions.png"].axes[0]
    assert curve.get_xscale() == "log" and curve.get_xlabel() == "sessions"
    panels = saved["propensities.png"].axes
    assert sorted(ax.get_title() for ax in panels) == ["sessions=10000", "sessions=5000"]  # one per grid point
    for ax in panels:
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert "truth" in labels and "randtopk" in labels
        assert ax.get_ylabel() == "examination (normalised at rank 1)"
    out = tmp_path / "runs" / "small"
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 2 * 2 * 2  # sessions x seeds x learners
    assert {r["learner"] for r in rows} == {"naive", "ips"} and {r["sessions"] for r in rows} == {"5000", "10000"}
    assert all(0 < float(r["ndcg@10"]) <= 1 and 0 <= float(r["precision@5"]) <= 1 for r in rows)
    for name in ("results.md", "results.json", "ndcg_at_10_per_learner.png", "ndcg_at_10_vs_sessions.png",
                 "propensities.png"):
        assert (out / name).stat().st_size > 0, name
    assert "randtopk" in (out / "results.md").read_text()
    first = capsys.readouterr().out
    assert first.count("simulating") == 4
    assert main(["run", str(config), "--out-root", str(tmp_path / "runs")]) == 0
    assert capsys.readouterr().out.count("reusing cached logs") == 4


@pytest.mark.parametrize("text,message", [
    ("colour = 1\n", "colour: unknown key"),
    ("[simulation]\ncolour = 1\n", "simulation.colour: unknown key"),
    ("[simulation]\nclick_model = 'nope'\n", "simulation: click_model: unknown 'nope'"),
    ("learners = ['naive', 'magic']\n", "learners[1]: unknown learner 'magic'"),
    ("seeds = 3\n", "seeds: must be a list"),
    ("data = 'no/such/file.txt'\n", "data: no/such/file.txt does not exist"),
    ("sessions = [1000, -5]\n", "sessions: must be a positive integer"),
    ("metrics = ['ndcg@10', 'f1']\n", "metrics[1]: unknown metric 'f1'"),
    ("[training]\noptimizer = 'lbfgs'\n", "training: unknown optimizer 'lbfgs'"),
    ("[training.dla]\nspeed = 2\n", "training.dla.speed: unknown key"),
    ("name = 'x'\nname = 'y'\n", "line 2"),
])
def test_config_errors_name_the_key_before_any_work(tmp_path, capsys, text, message):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    assert main(["run", str(config), "--out-root", str(tmp_path / "runs")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_missing_config_file(tmp_path, capsys):
    assert main(["run", str(tmp_path / "none.toml")]) == 2
    assert "no such config file" in capsys.readouterr().err


def test_example_configs_are_valid(tmp_path):
    from pathlib import Path

    from ultr.experiment import load_config, validate

    examples = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.toml"))
    assert len(examples) >= 5
    for path in examples:
        config = load_config(path)
        data = config.get("data", "")
        if data.startswith("baidu:"):  # a converted directory the user makes first: a stand-in of that layout
            (tmp_path / "baidu" / "logs").mkdir(parents=True, exist_ok=True)
            config["data"], config["logs"] = f"baidu:{tmp_path / 'baidu'}", str(tmp_path / "baidu" / "logs")
        if data.startswith("../shared"):
            config["data"] = str(path.parents[1] / data)
            if not Path(config["data"]).exists():
                pytest.skip(f"shared data not available: {config['data']}")
        assert validate(config), path


def test_dla_reproduction_report_states_what_is_met(tmp_path):
    # the report of experiments/dla_reproduction.py: gap shares and propensity errors from saved runs
    import argparse
    import importlib.util

    from simulators.toy import DLA_EXAMINATION

    path = Path(__file__).resolve().parents[1] / "experiments" / "dla_reproduction.py"
    spec = importlib.util.spec_from_file_location("dla_reproduction", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    truth = (DLA_EXAMINATION / DLA_EXAMINATION[0]).tolist()
    metrics = ("ndcg@10", "ndcg@1", "ndcg@3", "ndcg@5", "err@10", "mrr@10")

    def runs(values, propensities=None):
        return [{"seed": seed, **{m: v for m in metrics}, "propensities": propensities[seed] if propensities else None}
                for seed, v in enumerate(values)]

    close = [truth, [t + (0.03 if k == 2 else 0.0) for k, t in enumerate(truth)]]
    results = {"toy": {"naive": runs([0.60, 0.62]), "ips": runs([0.69, 0.71]), "dla": runs([0.64, 0.66], close),
                       "skyline": runs([0.70, 0.72])}}
    args = argparse.Namespace(seeds=[0, 1], sessions=1000, ranker="linear", hidden="64,32", optimizer="adagrad",
                              learning_rate=0.05, bias_learning_rate=None, epochs=5, out=tmp_path)
    module.write_report(results, args)
    report = (tmp_path / "dla_reproduction.md").read_text()
    assert "closed by IPS (true propensities): 90%, by DLA: 40%" in report
    assert ("IPS closes at least 80% of the gap: met; DLA closes at least 80% of the gap: **not met**; DLA's "
            "propensities within 0.05, mean over seeds: met; every seed within 0.05: met.") in report
    saved = json.loads((tmp_path / "dla_reproduction.json").read_text())
    assert np.allclose(saved["summary"]["toy"]["dla_max_error"], [0.0, 0.03])
    assert np.isclose(saved["summary"]["toy"]["dla_mean_curve_error"], 0.015)


def test_summary_table_shows_a_spread_only_where_there_is_one():
    import pandas as pd

    from ultr.experiment import _summary_table

    frame = pd.DataFrame({"learner": ["a", "a", "b"], "ndcg@10": [0.5, 0.7, 0.4]})
    table = _summary_table(frame, ["ndcg@10"], ["learner"])
    assert "| a | 0.6000 ± 0.1414 |" in table and "| b | 0.4000 |" in table and "± 0.0000" not in table


@pytest.mark.slow
def test_propensity_plots_draw_the_mean_examination_of_cascade_logs(tmp_path):
    """A cascade log has no examination curve: the plot draws its sessions' mean examination as the truth."""
    from simulators import SimulationConfig, Simulator, load_dataset
    from ultr.plots import results_figures
    from ultr.propensity import mean_log_examination

    dataset = load_dataset("synthetic:queries=30,docs=10,features=8,seed=1")
    Simulator(dataset, SimulationConfig(click_model="cascade"), seed=0).run(tmp_path / "logs", 2000, progress=False)
    log = __import__("click_models").read_click_log(tmp_path / "logs")
    mean = mean_log_examination(tmp_path / "logs")
    expected = np.where(log.mask, log.examination.astype(np.float64), 0).sum(0) / log.mask.sum(0)
    np.testing.assert_allclose(mean, expected / expected[0], rtol=1e-6)
    assert mean[0] == 1 and np.all(np.diff(mean) <= 1e-12)  # a cascade examines less and less far down
    import pandas as pd

    frame = pd.DataFrame({"click_model": ["cascade"], "learner": ["naive"], "seed": [0], "ndcg@10": [0.5]})
    entry = {"click_model": "cascade", "seed": 0, "estimator": "ctr", "examination": list(mean * 0.9),
             "truth": list(mean), "truth_kind": "mean"}
    figures = results_figures(frame, [entry], "ndcg@10", ["click_model"])
    assert "one seed: no interval" in figures["ndcg_at_10_per_learner.png"].axes[0].get_title()
    labels = [t.get_text() for t in figures["propensities.png"].axes[0].get_legend().get_texts()]
    assert "truth (mean examination in the log)" in labels

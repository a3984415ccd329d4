"""The ``ultr fit`` command: default job, real logs, errors."""

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from click_models.logs import atomic_write_parquet, sessions_to_table
from simulators import simulate_toy_log, true_parameters
from ultr.cli import main


@pytest.mark.slow
def test_fit_without_logs_simulates_the_toy_log_and_recovers_examination(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", "--out", str(out), "--sessions", "100000", "--max-iterations", "1000"]) == 0
    params = json.loads((out / "params.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    truth = json.loads((out / "logs" / "true_params.json").read_text())
    assert params["model"] == "pbm" and len(params["examination"]) == 10
    true_normalised = np.array(truth["examination"]) / truth["examination"][0]
    assert np.abs(np.array(params["examination_normalized"]) - true_normalised).max() < 0.05
    assert set(metrics) >= {"held_out_log_likelihood", "perplexity", "perplexity_per_rank",
                            "conditional_perplexity_per_rank"}
    assert 1.0 < metrics["perplexity"] < 2.0 and len(metrics["perplexity_per_rank"]) == 10
    documents = pq.read_table(out / "documents.parquet")
    assert documents.column_names == ["query_id", "doc_id", "attraction"]
    assert documents.num_rows == 10_000
    assert "held-out log-likelihood" in capsys.readouterr().out


@pytest.mark.parametrize("model,method", [("dbn", "em"), ("dcm", "counting"), ("cascade", "gradient")])
@pytest.mark.slow
def test_fit_on_a_parquet_log(tmp_path, model, method):
    truth = true_parameters(model, 20, 5, seed=0)
    log = simulate_toy_log(model, truth, 20, 5, 20_000, seed=1)
    atomic_write_parquet(sessions_to_table(log.session_id, log.query_id, log.doc_ids, log.clicks),
                         tmp_path / "logs" / "part-0.parquet")
    out = tmp_path / "out"
    budget = {"em": ["--max-iterations", "30"], "gradient": ["--epochs", "20"], "counting": []}[method]
    code = main(["fit", "--logs", str(tmp_path / "logs"), "--click-model", model, "--method", method,
                 "--out", str(out), *budget, "--batch-size", "8192"])
    assert code == 0
    params = json.loads((out / "params.json").read_text())
    assert params["model"] == model and params["method"] == method
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["held_out_sessions"] > 1000
    assert metrics["perplexity"] < 2.0
    if model == "dbn":
        assert abs(params["continuation"] - 0.9) < 0.05
    names = pq.read_table(out / "documents.parquet").column_names
    assert "attraction" in names and (model != "dbn" or "satisfaction" in names)


@pytest.mark.slow
def test_errors_are_reported_clearly(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ultr", "fit", "--click-model", "nope"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "unknown click model 'nope'" in result.stderr
    result = subprocess.run([sys.executable, "-m", "ultr", "fit", "--logs", str(tmp_path / "missing")],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2 and "no such click log" in result.stderr
    with pytest.raises(SystemExit, match="counting exists for cascade, sdbn and dcm"):
        main(["fit", "--click-model", "pbm", "--method", "counting", "--out", str(tmp_path / "x")])


def test_every_option_with_a_default_shows_it_in_help():
    import argparse

    from ultr.cli import build_parser

    def options(parser, prefix):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from options(sub, prefix + [name])
            elif action.option_strings and action.default not in (None, False, argparse.SUPPRESS) \
                    and action.help != argparse.SUPPRESS and not isinstance(action, argparse._HelpAction):
                yield " ".join(prefix + [action.option_strings[-1]]), action

    missing = [name for name, action in options(build_parser(), ["ultr"]) if "default" not in (action.help or "")]
    assert not missing, f"options whose --help hides their default: {missing}"

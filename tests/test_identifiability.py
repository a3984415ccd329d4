"""The rank-graph diagnostic (Hager et al., ICTIR 2025): every command that estimates position bias says
when its log cannot identify it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from click_models.counts import aggregate_cells_from_arrays
from click_models.identifiability import rank_graph, rank_graph_of_log
from simulators.datasets import load_dataset
from simulators.simulation import SimulationConfig, Simulator
from ultr.cli import main

DATA = "synthetic:queries=60,docs=12,seed=2"


def _graph(rows, K):
    doc = np.array(rows)
    shown = doc >= 0
    num_documents = doc.max() + 1
    return rank_graph(aggregate_cells_from_arrays([(np.where(shown, doc, num_documents), shown & False, shown,
                                                    None)], num_documents, K))


def test_components_follow_the_documents_shown_at_several_ranks():
    graph = _graph([[0, 1, 2, 3], [1, 0, 2, 3], [4, 5, 6, 7]], 4)
    assert graph.components == [[1, 2], [3], [4]] and not graph.connected
    assert graph.documents == 8 and graph.multi_rank_documents == 2
    chain = _graph([[0, 1, 2, 3], [1, 2, 0, 3], [9, 8, 3, 2]], 4)  # 0: ranks 1,3; 1: 1,2; 2: 2,3,4; 3: 3,4
    assert chain.components == [[1, 2, 3, 4]] and chain.connected and chain.warning() is None
    assert _graph([[0, 1, -1], [2, 3, -1]], 3).components == [[1], [2]]  # rank 3 never shown: left out


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    root = tmp_path_factory.mktemp("identifiability")
    dataset = load_dataset(DATA)
    out = {}
    for name, config in {"deterministic": SimulationConfig(),
                         "randomised": SimulationConfig(intervention="randtopk", intervention_rate=0.2),
                         "two-policies": SimulationConfig(policies=("production", "noisy-oracle"))}.items():
        Simulator(dataset, config, seed=0).run(root / name, 5_000, progress=False)
        out[name] = root / name
    return out


@pytest.mark.slow
def test_simulated_logs(logs):
    deterministic = rank_graph_of_log(logs["deterministic"])
    assert len(deterministic.components) == 10 and deterministic.share_multi_rank == 0.0
    assert "not identifiable" in deterministic.warning()
    assert rank_graph_of_log(logs["randomised"]).connected
    two = rank_graph_of_log(logs["two-policies"])
    assert two.connected and 0 < two.share_multi_rank < 1


@pytest.mark.slow
def test_commands_warn_record_and_can_refuse(logs, tmp_path, capsys):
    deterministic = str(logs["deterministic"])
    assert main(["propensity", "--logs", deterministic, "--estimator", "ctr", "--bootstrap", "0",
                 "--out", str(tmp_path / "p.json")]) == 0
    assert "warning: position bias is not identifiable" in capsys.readouterr().err
    assert json.loads((tmp_path / "p.json").read_text())["identifiability"]["identifiable"] is False
    with pytest.raises(SystemExit) as refused:
        main(["propensity", "--logs", deterministic, "--estimator", "ctr", "--require-identifiable",
              "--out", str(tmp_path / "q.json")])
    assert refused.value.code == 2
    assert "(--require-identifiable)" in capsys.readouterr().err and not (tmp_path / "q.json").exists()

    assert main(["fit", "--logs", deterministic, "--max-iterations", "5", "--out", str(tmp_path / "fit")]) == 0
    err = capsys.readouterr().err
    assert "not identifiable" in err and "without converging" in err
    assert json.loads((tmp_path / "fit" / "metrics.json").read_text())["identifiability"]["components"][0] == [1]
    assert main(["fit", "--logs", deterministic, "--click-model", "sdbn", "--method", "counting",
                 "--out", str(tmp_path / "c")]) == 0
    assert "not identifiable" not in capsys.readouterr().err  # the SDBN model has no position parameter
    with pytest.raises(SystemExit) as zero:  # several clicks per session: probability 0 under cascade
        main(["fit", "--logs", deterministic, "--click-model", "cascade", "--max-iterations", "2",
              "--out", str(tmp_path / "cascade")])
    assert zero.value.code == 2 and "gives some sessions of this log probability 0" in capsys.readouterr().err

    randomised = str(logs["randomised"])
    assert main(["propensity", "--logs", randomised, "--estimator", "randtopk", "--bootstrap", "0",
                 "--require-identifiable", "--out", str(tmp_path / "r.json")]) == 0
    assert "warning" not in capsys.readouterr().err
    assert json.loads((tmp_path / "r.json").read_text())["identifiability"]["identifiable"] is True

    assert main(["train", "--logs", deterministic, "--data", DATA, "--learner", "dla", "--ranker", "linear",
                 "--max-steps", "5", "--out", str(tmp_path / "dla")]) == 0
    assert "not identifiable" in capsys.readouterr().err
    metrics = json.loads((tmp_path / "dla" / "metrics.json").read_text())
    assert metrics["identifiability"]["identifiable"] is False
    assert main(["train", "--logs", deterministic, "--data", DATA, "--learner", "naive", "--ranker", "linear",
                 "--max-steps", "5", "--out", str(tmp_path / "naive")]) == 0
    assert "not identifiable" not in capsys.readouterr().err  # naive estimates no position bias

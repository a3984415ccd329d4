"""Propensity estimators: known answers on hand-built logs, recovery on simulated logs, clear errors."""

import json

import numpy as np
import pytest

from click_models.logs import atomic_write_parquet, sessions_to_table
from conftest import shared
from simulators.datasets import load_letor_dataset
from simulators.simulation import SimulationConfig, Simulator
from ultr.cli import main
from ultr.propensity import MissingInterventionError, estimate


def write_log(path, doc_ids, clicks, intervention=None, query_ids=None):
    doc_ids, clicks = np.asarray(doc_ids), np.asarray(clicks, bool)
    n = len(doc_ids)
    table = sessions_to_table(np.arange(n), np.zeros(n) if query_ids is None else np.asarray(query_ids), doc_ids,
                              clicks, intervention=None if intervention is None else np.asarray(intervention))
    atomic_write_parquet(table, path / "part-00000.parquet")
    return path


def test_ctr_and_randtopk_on_a_hand_built_log(tmp_path):
    logs = write_log(tmp_path, [[1, 2, 3]] * 4,
                     [[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0]],
                     intervention=[1, 1, 1, 0])
    ctr = estimate(logs, "ctr", bootstrap=0)
    np.testing.assert_allclose(ctr.examination, [1.0, 0.5, 0.5])  # CTR 2/4, 1/4, 1/4
    randtopk = estimate(logs, "randtopk", bootstrap=0)
    np.testing.assert_allclose(randtopk.examination, [1.0, 0.5, 0.5])  # 2/3, 1/3, 1/3 over the three shuffled
    assert randtopk.sessions == 3


def test_swap_on_a_hand_built_log(tmp_path):
    # no intervention: the top document is clicked in 2 of 4 sessions; swapped to rank 3: 1 of 4
    doc_ids = [[1, 2, 3]] * 4 + [[3, 2, 1]] * 4
    clicks = [[1, 0, 0], [1, 0, 0], [0, 0, 0], [0, 1, 0],
              [0, 0, 1], [0, 0, 0], [1, 0, 0], [0, 0, 0]]
    logs = write_log(tmp_path, doc_ids, clicks, intervention=[0] * 4 + [3] * 4)
    result = estimate(logs, "swap", bootstrap=50)
    assert result.examination[0] == 1.0 and np.isnan(result.examination[1])
    assert np.isclose(result.examination[2], 0.25 / 0.5)
    assert result.ci_low[2] <= result.examination[2] <= result.ci_high[2]
    assert np.isnan(result.ci_low[1]) and np.isnan(result.ci_high[1])  # rank 2 is never swapped: no interval


def test_harvesting_on_a_hand_built_log(tmp_path):
    # document 7 is shown at rank 1 (2 clicks in 4) and at rank 2 (1 click in 4) by two policies
    doc_ids = [[7, 8]] * 4 + [[9, 7]] * 4
    clicks = [[1, 0], [1, 0], [0, 0], [0, 0], [0, 1], [0, 0], [0, 0], [0, 0]]
    logs = write_log(tmp_path, doc_ids, clicks)
    for estimator in ("pivot", "adjacent", "allpairs"):
        np.testing.assert_allclose(estimate(logs, estimator, bootstrap=0).examination, [1.0, 0.5])


def test_missing_interventions_are_explained(tmp_path, capsys):
    logs = write_log(tmp_path, [[1, 2]] * 3, [[1, 0], [0, 1], [0, 0]])
    with pytest.raises(MissingInterventionError, match="needs RandTop-k sessions"):
        estimate(logs, "randtopk")
    with pytest.raises(MissingInterventionError, match="swap estimator needs swap sessions"):
        estimate(logs, "swap")
    with pytest.raises(MissingInterventionError, match="shown at two different ranks"):
        estimate(logs, "pivot")
    assert main(["propensity", "--logs", str(logs), "--estimator", "randtopk", "--out", str(tmp_path / "p.json")]) == 2
    assert "--intervention randtopk" in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()


@pytest.fixture(scope="module")
def mq2008():
    return load_letor_dataset(shared("mq2008", "Fold1"))


@pytest.mark.parametrize("estimator,config", [
    ("randtopk", SimulationConfig(intervention="randtopk")),
    ("swap", SimulationConfig(intervention="swap", intervention_rate=0.5)),
    ("pivot", SimulationConfig(policies=("production",) * 4)),
    ("allpairs", SimulationConfig(policies=("production",) * 4)),
    ("em", SimulationConfig(intervention="randtopk")),
])
@pytest.mark.slow
def test_estimators_recover_the_simulated_propensities(mq2008, tmp_path, estimator, config):
    logs = tmp_path / "logs"
    Simulator(mq2008, config, seed=1).run(logs, 300_000, progress=False)
    out = tmp_path / "p.json"
    replicates = ["--bootstrap", "20"] if estimator != "em" else []  # em reports no interval
    assert main(["propensity", "--logs", str(logs), "--estimator", estimator, "--out", str(out),
                 *replicates, "--plot", str(tmp_path / "p.png")]) == 0
    result = json.loads(out.read_text())
    assert result["estimator"] == estimator and result["examination"][0] == 1.0
    assert result["bootstrap"] == (20 if estimator != "em" else 0)
    assert result["max_abs_error"] < 0.03, result
    assert (tmp_path / "p.png").stat().st_size > 1000
    if estimator != "em":
        low, high, value = (np.array(result[k], float) for k in ("ci_low", "ci_high", "examination"))
        assert np.all(low <= value + 1e-9) and np.all(value <= high + 1e-9)


@pytest.mark.slow
def test_ctr_is_biased_and_ips_accepts_a_propensity_file(mq2008, tmp_path):
    logs = tmp_path / "logs"
    Simulator(mq2008, SimulationConfig(), seed=2).run(logs, 200_000, progress=False)
    assert main(["propensity", "--logs", str(logs), "--estimator", "ctr", "--out", str(tmp_path / "ctr.json")]) == 0
    ctr = json.loads((tmp_path / "ctr.json").read_text())
    assert ctr["max_abs_error"] > 0.05  # relevance and position are confounded without interventions
    assert main(["train", "--logs", str(logs), "--data", str(shared("mq2008", "Fold1")), "--learner", "ips",
                 "--propensities", str(tmp_path / "ctr.json"), "--ranker", "linear", "--max-steps", "100",
                 "--eval-every", "50", "--out", str(tmp_path / "ips")]) == 0
    assert json.loads((tmp_path / "ips" / "metrics.json").read_text())["config"]["propensities"].endswith("ctr.json")


@pytest.mark.slow
def test_trust_bias_estimator_recovers_click_probabilities_of_relevant_and_other_documents(tmp_path):
    from simulators import simulate_toy_log, true_parameters

    queries, K = 100, 10
    truth = true_parameters("trust_bias", queries, K, seed=0)
    truth["relevance"] = (np.random.default_rng(0).uniform(size=queries * K + 1) < 0.4).astype(float)
    log = simulate_toy_log("trust_bias", truth, queries, K, 200_000, seed=1)  # documents shown in random orders
    write_log(tmp_path, log.doc_ids, log.clicks, query_ids=log.query_id)
    out = tmp_path / "tb.json"
    assert main(["propensity", "--logs", str(tmp_path), "--estimator", "trust-bias", "--out", str(out),
                 "--bootstrap", "5"]) == 0
    result = json.loads(out.read_text())
    a = truth["examination"] * truth["epsilon_pos"]
    b = truth["examination"] * truth["epsilon_neg"]
    np.testing.assert_allclose(result["click_if_relevant"], a, atol=0.01)
    np.testing.assert_allclose(result["click_if_irrelevant"], b, atol=0.01)
    # the file feeds the affine correction: examination x epsilon gives back a and b
    exam, pos, neg = (np.array(result[k]) for k in ("examination", "epsilon_pos", "epsilon_neg"))
    np.testing.assert_allclose(exam * pos, result["click_if_relevant"], rtol=1e-9)
    np.testing.assert_allclose(exam * neg, result["click_if_irrelevant"], rtol=1e-9)

"""The click simulator: CTR matches the configured model, determinism, interventions, policies, CLI."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from click_models.logs import read_click_log
from conftest import shared
from simulators.datasets import load_letor_dataset, synthetic_dataset
from simulators.simulation import SimulationConfig, Simulator, session_click_model
from ultr.cli import main


@pytest.fixture(scope="module")
def mq2008():
    return load_letor_dataset(shared("mq2008", "Fold1"))


@pytest.fixture(scope="module")
def small_synthetic():
    return synthetic_dataset(num_queries=200, docs_per_query=15, num_features=8, seed=1)


@pytest.mark.parametrize("click_model", ["pbm", "cascade", "dbn", "trust_bias"])
@pytest.mark.slow
def test_ctr_per_rank_and_label_matches_the_configured_model_on_mq2008(mq2008, click_model):
    config = SimulationConfig(click_model=click_model)
    simulator = Simulator(mq2008, config, seed=1)
    sessions = simulator.simulate_chunk(0, 300_000)
    labels, shown, clicks = sessions["labels"], sessions["mask"], sessions["clicks"]
    params = {k: jnp.asarray(v, jnp.float32) for k, v in simulator.rank_parameters.items()}
    model = session_click_model(click_model, jnp.asarray(labels), jnp.asarray(shown), params,
                                simulator.max_label, config.eps_pos, config.eps_neg)
    expected = np.asarray(model.click_probs(), np.float64)
    np.testing.assert_allclose(sessions["examination"], np.asarray(model.examination_probs()), atol=1e-6)
    checked = 0
    for k in range(config.list_size):
        for y in range(simulator.max_label + 1):
            cell = shown[:, k] & (labels[:, k] == y)
            n = cell.sum()
            if n < 1000:
                continue
            p = expected[cell, k]
            empirical = clicks[cell, k].mean()
            sd = np.sqrt(np.sum(p * (1 - p))) / n
            assert abs(empirical - p.mean()) < 5 * sd + 1e-4, (k, y, empirical, p.mean())
            if click_model == "pbm":  # closed form: attraction(y) * rho_k
                attraction = 0.1 + 0.9 * (2**y - 1) / (2**2 - 1)
                np.testing.assert_allclose(p, attraction * simulator.rank_parameters["examination"][k], rtol=1e-5)
            checked += 1
    assert checked >= 15
    assert not (clicks & ~shown).any()


@pytest.mark.slow
def test_same_seed_same_log_whatever_the_chunk_size(mq2008, tmp_path):
    simulator = Simulator(mq2008, SimulationConfig(click_model="dbn", intervention="randtopk",
                                                   policies=("production", "plackett-luce")), seed=7)
    simulator.run(tmp_path / "small", 200_000, chunk_size=1_000, rows_per_file=100_000, progress=False)
    simulator.run(tmp_path / "large", 200_000, chunk_size=100_000, rows_per_file=100_000, progress=False)
    small, large = read_click_log(tmp_path / "small"), read_click_log(tmp_path / "large")
    for field in ("session_id", "query_id", "doc_ids", "clicks", "mask", "labels", "examination", "policy",
                  "intervention"):
        np.testing.assert_array_equal(getattr(small, field), getattr(large, field), err_msg=field)
    assert small.clicks.any() and (small.intervention == 1).any()
    other_seed = Simulator(mq2008, SimulationConfig(click_model="dbn"), seed=8).simulate_chunk(0, 1000)
    assert not np.array_equal(other_seed["clicks"], small.clicks[:1000])
    meta = json.loads((tmp_path / "small" / "simulation.json").read_text())
    assert meta["config"]["click_model"] == "dbn" and meta["summary"]["sessions"] == 200_000
    assert sorted(p.name for p in (tmp_path / "small").glob("*.parquet")) == ["part-00000.parquet",
                                                                             "part-00001.parquet"]


def production_order(simulator, query_index, K):
    order = np.argsort(-simulator.policies[0].scores[query_index], kind="stable")[:K]
    return simulator.doc_ids[query_index, order]


def query_index_of(simulator, query_ids):
    lookup = {q: i for i, q in enumerate(simulator.query_ids)}
    return np.array([lookup[q] for q in query_ids])


@pytest.mark.slow
def test_randtopk_shuffles_exactly_the_top_k_uniformly(small_synthetic):
    K, k = 10, 4
    simulator = Simulator(small_synthetic, SimulationConfig(intervention="randtopk", intervention_k=k), seed=0)
    sessions = simulator.simulate_chunk(0, 40_000)
    queries = query_index_of(simulator, sessions["query_id"])
    first_position = []
    for row, q in enumerate(queries[:5000]):
        original = production_order(simulator, q, K)
        shown = sessions["doc_ids"][row]
        assert sorted(shown[:k]) == sorted(original[:k])
        np.testing.assert_array_equal(shown[k:], original[k:])
        first_position.append(int(np.flatnonzero(shown == original[0])[0]))
    assert (sessions["intervention"] == 1).all()
    frequencies = np.bincount(first_position, minlength=k) / len(first_position)
    np.testing.assert_allclose(frequencies, 1 / k, atol=0.03)


@pytest.mark.slow
def test_swap_exchanges_rank_one_with_a_uniform_rank(small_synthetic):
    K = 10
    simulator = Simulator(small_synthetic, SimulationConfig(intervention="swap", intervention_rate=0.5), seed=0)
    sessions = simulator.simulate_chunk(0, 40_000)
    codes = sessions["intervention"]
    assert abs((codes > 0).mean() - 0.5) < 0.02
    swapped_ranks = codes[codes > 0]
    np.testing.assert_allclose(np.bincount(swapped_ranks, minlength=K + 1)[2:] / len(swapped_ranks), 1 / (K - 1),
                               atol=0.02)
    queries = query_index_of(simulator, sessions["query_id"])
    for row in range(3000):
        original = production_order(simulator, queries[row], K)
        expected = original.copy()
        if codes[row]:
            j = codes[row] - 1
            expected[0], expected[j] = original[j], original[0]
        np.testing.assert_array_equal(sessions["doc_ids"][row], expected)


@pytest.mark.slow
def test_several_logging_policies_are_recorded(small_synthetic):
    simulator = Simulator(small_synthetic, SimulationConfig(policies=("production", "noisy-oracle")), seed=0)
    sessions = simulator.simulate_chunk(0, 20_000)
    assert abs(sessions["policy"].mean() - 0.5) < 0.02
    queries = query_index_of(simulator, sessions["query_id"])
    for row in range(500):
        policy = simulator.policies[sessions["policy"][row]]
        order = np.argsort(-policy.scores[queries[row]], kind="stable")[:10]
        np.testing.assert_array_equal(sessions["doc_ids"][row], simulator.doc_ids[queries[row], order])
    # the oracle ranks by noisy labels: it shows more relevant documents at rank 1
    top_label = sessions["labels"][:, 0]
    assert top_label[sessions["policy"] == 1].mean() > top_label[sessions["policy"] == 0].mean()


@pytest.mark.slow
def test_uniform_policy_and_powerlaw_query_sampling(small_synthetic):
    simulator = Simulator(small_synthetic, SimulationConfig(policies=("uniform",), query_sampling="powerlaw",
                                                            powerlaw_exponent=1.0), seed=0)
    sessions = simulator.simulate_chunk(0, 60_000)
    queries = query_index_of(simulator, sessions["query_id"])
    frequencies = np.bincount(queries, minlength=len(simulator.query_ids)) / len(queries)
    np.testing.assert_allclose(frequencies, simulator.query_probabilities, atol=0.006)
    top = queries == np.argmax(simulator.query_probabilities)
    first_docs = sessions["doc_ids"][top, 0]
    counts = np.bincount(first_docs, minlength=15) / top.sum()
    np.testing.assert_allclose(counts, 1 / 15, atol=0.03)  # every document equally likely at rank 1


def test_bad_configurations_are_rejected(small_synthetic):
    with pytest.raises(ValueError, match="click_model"):
        Simulator(small_synthetic, SimulationConfig(click_model="nope"))
    with pytest.raises(ValueError, match="policies"):
        Simulator(small_synthetic, SimulationConfig(policies=("best",)))
    with pytest.raises(ValueError, match="examination must be 10 probabilities"):
        Simulator(small_synthetic, SimulationConfig(examination=[0.5, 0.2]))


@pytest.mark.slow
def test_simulate_cli_end_to_end_then_fit(tmp_path, capsys):
    config = tmp_path / "sim.toml"
    config.write_text('click_model = "dbn"\ncontinuation = 0.7\npolicy = "production"\n')
    out = tmp_path / "logs"
    args = ["simulate", "--data", str(shared("mq2008", "Fold1")), "--config", str(config), "--eta", "2",
            "--sessions", "30000", "--chunk-size", "10000", "--out", str(out), "--seed", "3"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "sessions/s" in printed and "CTR per rank" in printed
    meta = json.loads((out / "simulation.json").read_text())
    assert meta["config"]["click_model"] == "dbn" and meta["config"]["eta"] == 2.0
    assert meta["rank_parameters"]["continuation"] == 0.7
    log = read_click_log(out)
    assert log.num_sessions == 30000 and log.labels is not None and log.examination is not None
    with pytest.raises(SystemExit, match="already holds a click log"):
        main(args)
    assert main(args + ["--overwrite"]) == 0
    assert main(["fit", "--logs", str(out), "--click-model", "dbn", "--out", str(tmp_path / "fit"),
                 "--max-iterations", "50"]) == 0
    fitted = json.loads((tmp_path / "fit" / "params.json").read_text())
    assert abs(fitted["continuation"] - 0.7) < 0.1
    config.write_text("colour = 3\n")
    with pytest.raises(SystemExit, match="unknown key 'colour'"):
        main(args + ["--overwrite"])
    with pytest.raises(SystemExit, match="--tau needs three numbers"):
        main(["simulate", "--tau", "0.5", "--out", str(tmp_path / "x")])


@pytest.mark.parametrize("generator", ["rbg", "unsafe_rbg"])
@pytest.mark.slow
def test_the_generator_is_part_of_the_log_and_chunk_invariant(small_synthetic, tmp_path, generator):
    config = SimulationConfig(click_model="dbn", intervention="randtopk", generator=generator)
    simulator = Simulator(small_synthetic, config, seed=5)
    simulator.run(tmp_path / "small", 10_000, chunk_size=1_500, rows_per_file=4_000, progress=False)
    simulator.run(tmp_path / "large", 10_000, chunk_size=10_000, rows_per_file=10_000, progress=False)
    small, large = read_click_log(tmp_path / "small"), read_click_log(tmp_path / "large")
    for field in ("query_id", "doc_ids", "clicks", "intervention"):
        np.testing.assert_array_equal(getattr(small, field), getattr(large, field), err_msg=field)
    assert json.loads((tmp_path / "small" / "simulation.json").read_text())["config"]["generator"] == generator
    threefry = Simulator(small_synthetic, SimulationConfig(click_model="dbn", intervention="randtopk"), seed=5)
    assert not np.array_equal(threefry.simulate_chunk(0, 10_000)["clicks"], small.clicks)
    with pytest.raises(ValueError, match="generator: unknown 'mt19937'"):
        Simulator(small_synthetic, SimulationConfig(generator="mt19937"))

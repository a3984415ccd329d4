"""Metrics against hand-computed values; unbiasedness of the IPS and affine losses; learners on simulated logs."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from click_models import PBM, TrustBias, enumerate_click_vectors
from simulators.datasets import synthetic_dataset
from simulators.simulation import SimulationConfig, Simulator
from ultr import learners as L
from ultr.data import ClickBatch
from ultr.metrics import average_relevant_position, dcg, err, evaluate_rankings, mrr, ndcg, precision
from ultr.rankers import LinearRanker, MLPRanker
from ultr.training import TrainConfig, make_learner, make_optimizer, train
from ultr.cli import main


@pytest.mark.slow
def test_metrics_match_hand_computed_values():
    scores = jnp.array([0.3, 0.9, 0.1, 0.5])  # ranking: doc1, doc3, doc0, doc2
    labels = jnp.array([1.0, 0.0, 2.0, 1.0])
    d = 1 / np.log2(np.arange(2, 6))
    expected_dcg = 1 * d[1] + 1 * d[2] + 3 * d[3]  # gains 2^y - 1 at ranks 2, 3, 4
    ideal = 3 * d[0] + 1 * d[1] + 1 * d[2]
    assert np.isclose(dcg(scores, labels), expected_dcg, rtol=1e-6)
    assert np.isclose(ndcg(scores, labels), expected_dcg / ideal, rtol=1e-6)
    assert np.isclose(ndcg(scores, labels, topn=2), (1 * d[1]) / (3 * d[0] + 1 * d[1]), rtol=1e-6)
    assert np.isclose(mrr(scores, labels), 0.5)
    assert np.isclose(precision(scores, labels, topn=2), 0.5)
    assert np.isclose(average_relevant_position(scores, labels), (2 + 3 + 4) / 3)
    # ERR with R = (2^y - 1) / 2^ymax, ymax = 2: ranks hold R = 0, 1/4, 1/4, 3/4
    r = [0, 0.25, 0.25, 0.75]
    expected_err, reach = 0.0, 1.0
    for rank, stop in enumerate(r, start=1):
        expected_err += reach * stop / rank
        reach *= 1 - stop
    assert np.isclose(err(scores, labels), expected_err, rtol=1e-6)
    assert np.isclose(err(scores, labels, topn=2), 0.25 / 2, rtol=1e-6)


@pytest.mark.slow
def test_metrics_with_ties_padding_and_no_relevant_documents():
    # ties are broken by position: the earlier document ranks first
    tied = jnp.array([1.0, 1.0, 0.0])
    assert np.isclose(mrr(tied, jnp.array([0.0, 1.0, 0.0])), 0.5)
    assert np.isclose(mrr(tied, jnp.array([1.0, 0.0, 0.0])), 1.0)
    # a padded document with the best score and label is ignored
    scores = jnp.array([0.2, 0.1, 9.0])
    labels = jnp.array([0.0, 1.0, 4.0])
    where = jnp.array([True, True, False])
    assert np.isclose(ndcg(scores, labels, where=where), 1 / np.log2(3), rtol=1e-6)
    assert np.isclose(err(scores, labels, where=where), 0.5 / 2, rtol=1e-6)
    # no relevant document: every metric is 0, and the query is left out of the means
    none = jnp.zeros(3)
    for metric in (ndcg, dcg, mrr, precision, err, average_relevant_position):
        assert float(metric(scores, none)) == 0.0
    batch_scores = jnp.array([[0.2, 0.1, 0.0], [0.0, 0.1, 0.2]])
    batch_labels = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    result = evaluate_rankings(batch_scores, batch_labels, jnp.ones((2, 3), bool), ("ndcg@10",))
    assert result == {"ndcg@10": 1.0, "num_queries": 1}
    both = evaluate_rankings(batch_scores, batch_labels, jnp.ones((2, 3), bool), ("ndcg@10",), skip_no_relevant=False)
    assert both["ndcg@10"] == 0.5


def _expected_loss(loss_fn, model, K):
    """Exact expectation of ``loss_fn(clicks)`` over the click distribution of ``model``."""
    vectors = enumerate_click_vectors(K)
    probabilities = np.exp(np.asarray(model.log_prob(jnp.asarray(vectors)), np.float64))
    return sum(p * float(loss_fn(jnp.asarray(v)[None])) for p, v in zip(probabilities, vectors))


class FixedScores(nnx.Module):
    def __init__(self, scores):
        self.scores = nnx.Param(jnp.asarray(scores))

    def __call__(self, features):
        return jnp.broadcast_to(self.scores[...], features.shape[:-1])


@pytest.mark.parametrize("loss", ["softmax", "sigmoid"])
@pytest.mark.slow
def test_ips_loss_is_unbiased(loss):
    K = 5
    rng = np.random.default_rng(0)
    relevance = rng.uniform(0.05, 0.95, K)
    examination = np.array([1.0, 0.7, 0.5, 0.3, 0.2])
    scores = rng.normal(size=K)
    learner = L.IPS(FixedScores(scores), K, loss, clip=0.0)
    features = jnp.zeros((1, K, 1))

    def ips_loss(clicks):
        batch = ClickBatch(None, clicks, jnp.ones((1, K), bool), jnp.asarray(examination, jnp.float32)[None])
        return learner.loss(features, batch)

    expected = _expected_loss(ips_loss, PBM(relevance, examination), K)
    full_information = float(L.ranking_loss(loss, jnp.asarray(scores)[None], jnp.asarray(relevance)[None],
                                            jnp.ones((1, K), bool)))
    assert np.isclose(expected, full_information, rtol=1e-5)
    naive = L.Naive(FixedScores(scores), K, loss)
    biased = _expected_loss(lambda c: naive.loss(features, ClickBatch(None, c, jnp.ones((1, K), bool), None)),
                            PBM(relevance, examination), K)
    assert not np.isclose(biased, full_information, rtol=1e-2)


@pytest.mark.slow
def test_affine_correction_is_unbiased_under_trust_bias():
    K = 4
    rng = np.random.default_rng(1)
    relevance = rng.uniform(0.05, 0.95, K)
    theta = np.array([1.0, 0.6, 0.4, 0.2])
    eps_pos, eps_neg = np.array([0.95, 0.9, 0.9, 0.85]), np.array([0.3, 0.2, 0.1, 0.05])
    scores = rng.normal(size=K)
    learner = L.Affine(FixedScores(scores), K, theta, eps_pos, eps_neg)
    features = jnp.zeros((1, K, 1))
    expected = _expected_loss(
        lambda c: learner.loss(features, ClickBatch(None, c, jnp.ones((1, K), bool), None)),
        TrustBias(theta, eps_pos, eps_neg, relevance), K)
    full_information = float(L.ranking_loss("softmax", jnp.asarray(scores)[None], jnp.asarray(relevance)[None],
                                            jnp.ones((1, K), bool)))
    assert np.isclose(expected, full_information, rtol=1e-5)


@pytest.mark.slow
def test_rankers_score_lists():
    features = jnp.ones((3, 10, 7))
    assert LinearRanker(7, rngs=nnx.Rngs(0))(features).shape == (3, 10)
    mlp = MLPRanker(7, (16, 8), dropout=0.1, rngs=nnx.Rngs(0))
    assert mlp(features).shape == (3, 10)


@pytest.mark.parametrize("learner", ["dla", "two-tower"])
@pytest.mark.slow
def test_bias_learning_rate_moves_only_the_bias_model(learner):
    # SGD with a zero ranker rate and a positive bias rate: one step changes the bias model only
    config = TrainConfig(learner=learner, ranker="linear", optimizer="sgd", learning_rate=0.0, bias_learning_rate=0.5)
    model = make_learner(config, num_features=4, list_size=5)
    before = jax.tree.map(jnp.copy, nnx.state(model, nnx.Param))
    optimizer = nnx.Optimizer(model, make_optimizer(config), wrt=nnx.Param)
    clicks = jnp.array([[True, False, True, False, False], [False, True, False, False, True]])
    batch = ClickBatch(rows=jnp.zeros((2, 5), jnp.int32), clicks=clicks, mask=jnp.ones((2, 5), bool),
                       propensity=jnp.ones((2, 5)))
    features = jax.random.normal(jax.random.key(0), (2, 5, 4))
    grads = nnx.grad(lambda m: m.loss(features, batch))(model)
    optimizer.update(model, grads)
    after = nnx.state(model, nnx.Param)
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), before, after)
    assert not any(jax.tree.leaves(changed["ranker"]))
    assert all(leaf for key, sub in changed.items() if key != "ranker" for leaf in jax.tree.leaves(sub))
    with pytest.raises(ValueError, match="bias_learning_rate"):
        TrainConfig(bias_learning_rate=0.0).validate()


@pytest.fixture(scope="module")
def biased_logs(tmp_path_factory):
    """Strong position bias (eta = 2) on a small synthetic set."""
    dataset = synthetic_dataset(num_queries=300, docs_per_query=15, num_features=8, seed=2)
    out = tmp_path_factory.mktemp("logs")
    Simulator(dataset, SimulationConfig(click_model="pbm", eta=2.0, production_fraction=0.05), seed=0).run(
        out, 200_000, progress=False)
    return dataset, out


def _train(dataset, logs, learner, **kwargs):
    if learner in ("ips", "affine"):  # the propensity source is explicit: here the simulation's truth
        kwargs.setdefault("propensities", "oracle")
    # the default ranker, optimiser and learning rate (MLP 64-32, Adagrad 0.05), one pass to keep the test short
    config = TrainConfig(learner=learner, eval_every=100, patience=5, epochs=1, **kwargs)
    return train(logs, dataset, config, progress=False)


@pytest.mark.slow
def test_ips_and_dla_beat_naive_under_strong_position_bias(biased_logs):
    dataset, logs = biased_logs
    naive = _train(dataset, logs, "naive").test["ndcg@10"]
    ips = _train(dataset, logs, "ips").test["ndcg@10"]
    dla = _train(dataset, logs, "dla")
    assert ips > naive + 0.01, (ips, naive)
    assert dla.test["ndcg@10"] > naive + 0.01, (dla.test["ndcg@10"], naive)
    assert len(dla.propensities) == 10 and dla.propensities[0] == 1.0


@pytest.mark.parametrize("learner", ["rem", "two-tower", "paird", "affine", "skyline", "logging-policy"])
@pytest.mark.slow
def test_every_learner_trains_and_evaluates(biased_logs, learner):
    dataset, logs = biased_logs
    result = _train(dataset, logs, learner, max_steps=300)
    assert 0.0 < result.test["ndcg@10"] <= 1.0
    if learner in ("rem", "two-tower", "paird"):
        props = np.asarray(result.propensities)
        assert props.shape == (10,) and props[0] == 1.0 and np.all(np.isfinite(props))


@pytest.mark.slow
def test_train_cli_writes_metrics_run_file_and_propensities(biased_logs, tmp_path, capsys):
    dataset, logs = biased_logs
    out = tmp_path / "dla"
    # the synthetic dataset of the fixture is not the default one: rebuild it from its spec
    code = main(["train", "--logs", str(logs), "--data", "synthetic:queries=300,docs=15,features=8,seed=2",
                 "--learner", "dla", "--ranker", "linear", "--learning-rate", "0.02", "--max-steps", "200",
                 "--eval-every", "100", "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["test"]) >= {"ndcg@1", "ndcg@3", "ndcg@5", "ndcg@10", "err@10", "mrr@10"}
    assert json.loads((out / "propensities.json").read_text())["estimator"] == "dla"
    run = [line.split() for line in (out / "test.run").read_text().splitlines()]
    assert all(len(fields) == 6 and fields[1] == "Q0" for fields in run)
    by_query = {}
    for qid, _, doc, rank, score, tag in run:
        by_query.setdefault(qid, []).append((int(rank), float(score)))
    for ranks in by_query.values():
        assert [r for r, _ in ranks] == list(range(1, len(ranks) + 1))
        assert all(a[1] >= b[1] for a, b in zip(ranks, ranks[1:]))
    qrels = (out / "test.qrels").read_text().splitlines()
    assert len(qrels) == len(run)
    with pytest.raises(SystemExit, match="needs --logs"):
        main(["train", "--data", "synthetic", "--learner", "ips", "--out", str(tmp_path / "x")])


@pytest.mark.slow
def test_train_rejects_logs_from_another_dataset(biased_logs, tmp_path):
    _, logs = biased_logs
    other = synthetic_dataset(num_queries=50, docs_per_query=5, num_features=8, seed=9)
    with pytest.raises(Exception, match="not in the dataset"):
        train(logs, other, TrainConfig(learner="naive", ranker="linear", max_steps=5), progress=False)

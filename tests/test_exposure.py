"""Policy-aware propensities: Plackett-Luce rank marginals and the unbiasedness of policy-aware IPS."""

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simulators.datasets import synthetic_dataset
from simulators.metadata import LogMetadata
from simulators.simulation import SimulationConfig, Simulator
from ultr.data import ClickBatch, FeatureStore, candidate_batches
from ultr.exposure import (expected_examination, logging_exposure, plackett_luce_rank_marginals,
                           plackett_luce_rank_marginals_exact)
from ultr.training import TrainConfig, train


def _brute_force_marginals(scores, top_k):
    """Every full permutation with its Plackett-Luce probability (independent of the prefix enumeration)."""
    w = np.exp(np.asarray(scores, np.float64))
    n = len(w)
    marginals = np.zeros((n, top_k))
    for ranking in itertools.permutations(range(n)):
        p, left = 1.0, w.sum()
        for d in ranking:
            p *= w[d] / left
            left -= w[d]
        for k in range(top_k):
            marginals[ranking[k], k] += p
    return marginals


def test_exact_marginals_match_full_permutations():
    scores = np.array([1.2, -0.3, 0.5, 0.0, 2.0])
    exact = plackett_luce_rank_marginals_exact(scores, top_k=2)
    assert np.allclose(exact, _brute_force_marginals(scores, 2), atol=1e-12)
    assert np.allclose(exact.sum(axis=0), 1.0)  # each rank holds exactly one document
    full = plackett_luce_rank_marginals_exact(scores, top_k=5)
    assert np.allclose(full.sum(axis=1), 1.0)  # each document is somewhere


@pytest.mark.slow
def test_monte_carlo_marginals_agree_within_their_error():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(3, 6)).astype(np.float32)
    where = np.ones((3, 6), bool)
    where[2, 4:] = False  # a shorter list: its padding is never ranked
    samples = 40_000
    estimate = np.asarray(plackett_luce_rank_marginals(scores, top_k=3, key=jax.random.key(1), samples=samples,
                                                       where=where, batch=4_000))
    for q in range(3):
        exact = plackett_luce_rank_marginals_exact(scores[q], top_k=3, where=where[q])
        error = np.sqrt(exact * (1 - exact) / samples)
        assert np.all(np.abs(estimate[q] - exact) <= 5 * error + 1e-6), q
    assert np.all(estimate[2, 4:] == 0)


def test_temperature_scales_the_scores():
    scores = np.array([1.0, 0.0, -1.0])
    hot = plackett_luce_rank_marginals_exact(scores, top_k=1, temperature=2.0)
    assert np.allclose(hot, plackett_luce_rank_marginals_exact(scores / 2.0, top_k=1))


def test_policy_aware_ips_is_unbiased_by_enumeration_and_per_rank_ips_is_not():
    """Stochastic top-2 logging over 5 documents, PBM clicks: enumerate every shown prefix and click vector."""
    scores = np.array([0.8, 0.1, -0.4, 0.3, -1.0])
    relevance = np.array([0.9, 0.2, 0.6, 0.4, 0.7])
    theta = np.array([1.0, 0.6])
    metric = np.array([1.0, -2.0, 0.5, 3.0, 1.5])  # any per-document linear utility g(d)
    truth = float(relevance @ metric)
    marginals = plackett_luce_rank_marginals_exact(scores, top_k=2)
    rho = marginals @ theta  # float64; expected_examination gives the same in float32
    assert np.allclose(np.asarray(expected_examination(marginals, theta)), rho, rtol=1e-6)
    w = np.exp(scores)
    policy_aware, per_rank = 0.0, 0.0
    for prefix in itertools.permutations(range(5), 2):
        p_prefix = w[prefix[0]] / w.sum() * w[prefix[1]] / (w.sum() - w[prefix[0]])
        for clicks in itertools.product([0, 1], repeat=2):
            p_clicks = np.prod([theta[k] * relevance[d] if c else 1 - theta[k] * relevance[d]
                                for k, (d, c) in enumerate(zip(prefix, clicks))])
            p = p_prefix * p_clicks
            policy_aware += p * sum(c / rho[d] * metric[d] for d, c in zip(prefix, clicks))
            per_rank += p * sum(c / theta[k] * metric[d] for k, (d, c) in enumerate(zip(prefix, clicks)))
    assert policy_aware == pytest.approx(truth, rel=1e-10)
    assert abs(per_rank - truth) > 0.5  # per-rank IPS only sees the documents that were shown


def test_expected_examination_batches():
    marginals = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 3, 4)))
    theta = jnp.array([1.0, 0.5, 0.25, 0.1])
    rho = expected_examination(marginals, theta)
    assert np.allclose(rho, np.asarray(marginals) @ np.asarray(theta), rtol=1e-6)


# ---------------------------------------------------------------------- the learner and its data


@pytest.fixture(scope="module")
def top_k_logs(tmp_path_factory):
    """A stochastic top-3 Plackett-Luce policy over 8 candidates per query."""
    dataset = synthetic_dataset(num_queries=40, docs_per_query=8, num_features=6, seed=3)
    out = tmp_path_factory.mktemp("pl-logs")
    config = SimulationConfig(click_model="pbm", list_size=3, policies=("plackett-luce",), temperature=1.0)
    Simulator(dataset, config, seed=0).run(out, 20_000, progress=False)
    return dataset, out


@pytest.mark.slow
def test_logging_exposure_matches_the_exact_marginals(top_k_logs):
    dataset, logs = top_k_logs
    metadata = LogMetadata.read(logs)
    theta = np.asarray(metadata.rank_parameters["examination"])
    rho = logging_exposure(metadata, dataset.train, theta, samples=20_000)
    model = metadata.policy_models[0]
    data = dataset.train
    scores = ((data.features - np.asarray(model["mean"])) / np.asarray(model["scale"])) @ np.asarray(model["weights"])
    for q in range(3):
        start, size = data.query_offsets[q], data.list_sizes[q]
        exact = plackett_luce_rank_marginals_exact(scores[start:start + size].astype(np.float32), top_k=3) @ theta[:3]
        assert np.allclose(rho[start:start + size], exact, atol=0.02)
    # a deterministic policy: exactly theta at the rank the simulator shows each document, else 0
    deterministic = dict(metadata.policy_models[0], temperature=0.0)
    fixed = logging_exposure(dataclasses.replace(metadata, policy_models=[deterministic]), data, theta)
    top = np.argsort(-scores[:8].astype(np.float32), kind="stable")[:3]
    assert np.allclose(fixed[top], theta[:3]) and np.count_nonzero(fixed[:8]) == 3


@pytest.mark.slow
def test_candidate_batches_put_clicks_on_their_documents_slots(top_k_logs):
    dataset, _ = top_k_logs
    store = FeatureStore.fit(dataset.train)
    data = dataset.train
    # one session of query 1 showing its documents 5, 2, 7 (clicks on the first and last), one padding session
    first = data.query_offsets[1]
    rows = np.array([[first + 5, first + 2, first + 7], [store.padding_row] * 3], np.int32)
    batch = ClickBatch(rows, np.array([[True, False, True], [False] * 3]), np.array([[True] * 3, [False] * 3]),
                       np.ones((2, 3), np.float32))
    rho = np.linspace(0.1, 0.9, data.num_documents)
    (wide,) = list(candidate_batches(iter([batch]), store, rho))
    assert wide.rows.shape == (2, 8)
    assert wide.rows[0].tolist() == list(range(first, first + 8))
    assert np.flatnonzero(wide.clicks[0]).tolist() == [5, 7]
    assert wide.mask[0].all() and not wide.mask[1].any() and not wide.clicks[1].any()
    assert np.allclose(wide.propensity[0], rho[first:first + 8])


@pytest.mark.parametrize("learner", ["policy-aware-ips", "doubly-robust"])
@pytest.mark.slow
def test_exposure_learners_train_on_a_top_k_log(top_k_logs, learner):
    dataset, logs = top_k_logs
    config = TrainConfig(learner=learner, propensities="oracle", epochs=1, eval_every=20,
                         learner_options={"exposure_samples": 2_000})
    result = train(logs, dataset, config, progress=False)
    assert result.steps > 0 and 0 < result.test["ndcg@10"] <= 1


@pytest.mark.slow
def test_policy_aware_ips_refuses_what_it_cannot_model(top_k_logs, tmp_path):
    dataset, logs = top_k_logs
    config = TrainConfig(learner="policy-aware-ips", propensities="oracle", epochs=1)
    oracle_logs = tmp_path / "oracle"
    Simulator(dataset, SimulationConfig(click_model="pbm", list_size=3, policies=("noisy-oracle",)),
              seed=0).run(oracle_logs, 2_000, progress=False)
    with pytest.raises(ValueError, match="noisy-oracle logging policy cannot be recomputed"):
        train(oracle_logs, dataset, config, progress=False)
    with pytest.raises(ValueError, match="policy-aware-ips learner needs"):
        train(logs, dataset, TrainConfig(learner="policy-aware-ips", epochs=1), progress=False)
    trust_logs = tmp_path / "trust"
    Simulator(dataset, SimulationConfig(click_model="trust_bias", list_size=3, policies=("plackett-luce",)),
              seed=0).run(trust_logs, 2_000, progress=False)
    with pytest.raises(ValueError, match="position-based model.*trust_bias"):
        train(trust_logs, dataset, config, progress=False)


@pytest.mark.slow
def test_aggregated_doubly_robust_statistics_equal_the_session_averages(top_k_logs):
    """--aggregate true: the labels c/rho + r(1 - theta/rho) from the per-query statistics equal the mean over
    the query's sessions of the per-session labels, and the rank-wise click cross-entropy equals the
    per-session one with each query's impressions averaged over its sessions."""
    from ultr.data import FeatureStore, candidate_batches, click_batches
    from ultr.losses import aggregated_doubly_robust, doubly_robust_labels
    from ultr.training import _aggregated_click_source, _logging_propensities, resolve_propensities

    dataset, logs = top_k_logs
    config = TrainConfig(learner="doubly-robust", propensities="oracle", batch_size=64,
                         learner_options={"aggregate": True, "exposure_samples": 2_000, "clip": 0.05})
    store = FeatureStore.fit(dataset.train)
    cls = config.learner_class
    propensities = resolve_propensities("oracle", logs, data=dataset, seed=0, list_size=3)
    theta = np.asarray(propensities.examination[:3], np.float32)
    assert len(set(theta.tolist())) == 3  # distinct per rank: a rank mix-up shows
    batches, _, _ = _aggregated_click_source(cls, logs, store, config, 3, propensities)
    aggregated = list(batches(0))
    rows = np.concatenate([b.rows for b in aggregated])
    stats = np.concatenate([b.labels for b in aggregated])
    mask = np.concatenate([b.mask for b in aggregated])
    predicted = np.linspace(0.1, 0.9, store.padding_row + 1).astype(np.float32)  # any fixed regression
    rho = _logging_propensities(cls, logs, store, config, propensities)
    assert (rho < 0.05).any()  # the clip is exercised
    n = store.padding_row + 1
    labels_sum, entropy, impressions, sessions = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    session_batches = click_batches(logs, store, 256, propensities=propensities.examination, list_size=3)
    for batch in candidate_batches(session_batches, store, rho):
        labels = np.asarray(doubly_robust_labels(batch.clicks, batch.examination, batch.propensity,
                                                 predicted[batch.rows], where=batch.mask, clip=0.05))
        np.add.at(labels_sum, batch.rows[batch.mask], labels[batch.mask])
        np.add.at(sessions, batch.rows[batch.mask], 1)
        shown = batch.mask & (batch.examination > 0)
        p = batch.examination[shown] * predicted[batch.rows[shown]]
        np.add.at(entropy, batch.rows[shown], -np.where(batch.clicks[shown], np.log(p), np.log1p(-p)))
        np.add.at(impressions, batch.rows[shown], 1)
    logits = np.log(predicted / (1 - predicted))[rows]
    labels, loss = aggregated_doubly_robust(jnp.asarray(logits), jnp.asarray(stats), jnp.asarray(theta),
                                            where=jnp.asarray(mask))
    session_mean = labels_sum / np.maximum(sessions, 1)
    assert np.allclose(np.asarray(labels)[mask], session_mean[rows[mask]], atol=1e-5)
    per_session = np.maximum(sessions, 1)
    expected_loss = np.sum(entropy / per_session) / np.sum(impressions / per_session)
    assert np.isclose(float(loss), expected_loss, rtol=1e-4)


@pytest.mark.slow
def test_doubly_robust_trains_on_aggregated_statistics(top_k_logs):
    dataset, logs = top_k_logs
    config = TrainConfig(learner="doubly-robust", propensities="oracle", epochs=2, eval_every=5,
                         learner_options={"exposure_samples": 2_000, "aggregate": True})
    result = train(logs, dataset, config, progress=False)
    assert result.steps > 0 and 0 < result.test["ndcg@10"] <= 1


def _enumerate_dr(scores, relevance, predicted, theta, metric):
    """E[labels] and the variances of the DR and policy-aware IPS utility estimates, by enumeration."""
    from ultr.losses import doubly_robust_labels

    n = len(scores)
    rho = plackett_luce_rank_marginals_exact(scores, top_k=len(theta)) @ theta
    w = np.exp(scores)
    expected, moments = np.zeros(n), np.zeros(2)
    for prefix in itertools.permutations(range(n), len(theta)):
        p_prefix = w[prefix[0]] / w.sum() * w[prefix[1]] / (w.sum() - w[prefix[0]])
        for clicks in itertools.product([0, 1], repeat=len(theta)):
            p_clicks = np.prod([theta[k] * relevance[d] if c else 1 - theta[k] * relevance[d]
                                for k, (d, c) in enumerate(zip(prefix, clicks))])
            c, exam = np.zeros(n), np.zeros(n)
            for k, (d, click) in enumerate(zip(prefix, clicks)):
                c[d], exam[d] = click, theta[k]
            labels = np.asarray(doubly_robust_labels(jnp.asarray(c), jnp.asarray(exam), jnp.asarray(rho),
                                                     jnp.asarray(predicted), clip=0.0), np.float64)
            expected += p_prefix * p_clicks * labels
            moments += p_prefix * p_clicks * np.array([(labels @ metric) ** 2, (c / rho @ metric) ** 2])
    truth = relevance @ metric
    return expected, moments - truth ** 2


def test_doubly_robust_is_unbiased_by_enumeration_and_a_good_regression_lowers_the_variance():
    """The same top-2 of 5 policy and PBM clicks."""
    scores = np.array([0.8, 0.1, -0.4, 0.3, -1.0])
    relevance = np.array([0.9, 0.2, 0.6, 0.4, 0.7])
    theta = np.array([1.0, 0.6])
    metric = np.array([1.0, -2.0, 0.5, 3.0, 1.5])
    wrong = np.array([0.1, 0.8, 0.5, 0.5, 0.2])
    expected, _ = _enumerate_dr(scores, relevance, wrong, theta, metric)
    assert np.allclose(expected, relevance, atol=1e-5)  # unbiased whatever the regression (float32 labels)
    expected, (variance_dr, variance_ips) = _enumerate_dr(scores, relevance, relevance, theta, metric)
    assert np.allclose(expected, relevance, atol=1e-5)
    assert variance_dr < 0.8 * variance_ips  # the exact regression removes the variance of the exposure

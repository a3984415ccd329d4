"""Two-stage ranking: joint exposure, the two-stage IPS estimator and the policy gradients, against
brute-force enumeration of every candidate set and ranking."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ultr.two_stage import (credit_assigned_surrogate, deterministic_pipeline_scores, inclusion_probabilities,
                            plackett_luce_log_prob, reinforce_surrogates, sample_two_stage, two_stage_exposure,
                            two_stage_exposure_exact, two_stage_ips_value)


def brute_force_two_stage(candidate_logits, ranker_logits, K2, K):
    """``{(candidate prefix, ranking): probability}`` of the two-stage Plackett-Luce pipeline, in float64."""
    wc, wr = np.exp(np.asarray(candidate_logits, np.float64)), np.exp(np.asarray(ranker_logits, np.float64))
    n = len(wc)
    outcomes = {}
    for prefix in itertools.permutations(range(n), K2):
        p, left = 1.0, set(range(n))
        for d in prefix:
            p *= wc[d] / sum(wc[j] for j in left)
            left.remove(d)
        for ranking in itertools.permutations(prefix, K):
            q, left_r = 1.0, set(prefix)
            for d in ranking:
                q *= wr[d] / sum(wr[j] for j in left_r)
                left_r.remove(d)
            outcomes[(prefix, ranking)] = p * q
    return outcomes


def brute_force_exposure(candidate_logits, ranker_logits, examination, K2):
    rho = np.zeros(len(candidate_logits))
    for (_, ranking), p in brute_force_two_stage(candidate_logits, ranker_logits, K2, len(examination)).items():
        for k, d in enumerate(ranking):
            rho[d] += p * examination[k]
    return rho


SC = np.array([0.3, -0.5, 1.2, 0.0, 0.8, -1.0])
SR = np.array([1.0, 0.4, -0.2, 0.9, -0.7, 0.3])
THETA = np.array([1.0, 0.6])


def test_pipeline_probabilities_sum_to_one():
    outcomes = brute_force_two_stage(SC, SR, 4, 2)
    assert np.isclose(sum(outcomes.values()), 1.0)


@pytest.mark.slow
def test_joint_exposure_exact_equals_brute_force():
    """6 documents, K2 = 4 candidates, K = 2 shown: every candidate prefix and ranking enumerated."""
    expected = brute_force_exposure(SC, SR, THETA, 4)
    actual = np.asarray(two_stage_exposure_exact(jnp.asarray(SC, jnp.float32), jnp.asarray(SR, jnp.float32),
                                                 THETA, candidates=4))
    np.testing.assert_allclose(actual, expected, atol=2e-6)
    assert np.isclose(actual.sum(), THETA.sum(), atol=1e-5)  # every shown rank is someone's


@pytest.mark.slow
def test_joint_exposure_monte_carlo_within_its_error():
    """The Monte-Carlo exposure is within 5 standard errors (at most max(theta) / (2 sqrt(S))) of the truth,
    vectorised over a batch of lists with padding."""
    samples = 40_000
    candidate = jnp.asarray(np.stack([SC, SC[::-1]]), jnp.float32)
    ranker = jnp.asarray(np.stack([SR, SR[::-1]]), jnp.float32)
    where = jnp.array([[True] * 6, [True] * 5 + [False]])
    rho = np.asarray(two_stage_exposure(candidate, ranker, THETA, candidates=4, key=jax.random.key(3),
                                        samples=samples, where=where))
    bound = 5 * THETA.max() / (2 * np.sqrt(samples))
    np.testing.assert_allclose(rho[0], brute_force_exposure(SC, SR, THETA, 4), atol=bound)
    np.testing.assert_allclose(rho[1, :5], brute_force_exposure(SC[::-1][:5], SR[::-1][:5], THETA, 4), atol=bound)
    assert rho[1, 5] == 0.0


@pytest.mark.slow
def test_plackett_luce_log_prob_matches_enumeration():
    logits = jnp.asarray(SC, jnp.float32)
    total = 0.0
    for prefix in itertools.permutations(range(6), 3):
        total += float(jnp.exp(plackett_luce_log_prob(logits, jnp.array(prefix), jnp.ones(3, bool))))
    assert np.isclose(total, 1.0, atol=1e-5)


def test_two_stage_ips_value_is_unbiased_by_enumeration():
    """Expected over the logging pipeline's candidate sets, rankings and PBM clicks, the two-stage IPS
    estimate equals the target pipeline's true value sum_d rho(d) R(d)."""
    relevance = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2])
    logging_c, logging_r = np.zeros(6), np.linspace(0.5, -0.5, 6)  # a stochastic logging pipeline
    rho_0 = brute_force_exposure(logging_c, logging_r, THETA, 4)
    target = brute_force_exposure(SC, SR, THETA, 4)
    probabilities, click_vectors = [], []
    for (_, ranking), p in brute_force_two_stage(logging_c, logging_r, 4, 2).items():
        for clicks in itertools.product([0, 1], repeat=2):  # PBM: independent clicks at the shown ranks
            q = 1.0
            c = np.zeros(6)
            for k, (d, click) in enumerate(zip(ranking, clicks)):
                pc = THETA[k] * relevance[d]
                q *= pc if click else 1 - pc
                c[d] = click
            probabilities.append(p * q)
            click_vectors.append(c)
    estimates = np.asarray(two_stage_ips_value(target, np.array(click_vectors), rho_0), np.float64)
    assert np.isclose(np.sum(probabilities), 1.0)
    assert np.isclose(np.array(probabilities) @ estimates, float(target @ relevance), atol=1e-5)


def _exact_value(candidate_logits, ranker_logits, relevance, examination, K2):
    return two_stage_exposure_exact(candidate_logits, ranker_logits, examination, candidates=K2) @ relevance


def _gradient_draws(fn, keys):
    return jax.vmap(fn)(keys)


@pytest.mark.slow
@pytest.mark.parametrize("baseline", [False, True])
def test_reinforce_averages_to_the_exact_gradient(baseline):
    """Mean of many REINFORCE gradients (each stage) = jax.grad of the enumerated expected utility, within
    5 standard errors of the mean."""
    sc, sr = jnp.asarray(SC, jnp.float32), jnp.asarray(SR, jnp.float32)
    relevance = jnp.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2])
    exact_c, exact_r = jax.grad(_exact_value, argnums=(0, 1))(sc, sr, relevance, THETA, 4)

    def draw(key):
        def surrogate(c, r):
            sc_, sr_, _ = reinforce_surrogates(key, c, r, relevance, THETA, candidates=4, samples=64,
                                               baseline=baseline)
            return sc_, sr_
        grad_c = jax.grad(lambda c: surrogate(c, sr)[0])(sc)
        grad_r = jax.grad(lambda r: surrogate(sc, r)[1])(sr)
        return grad_c, grad_r

    grads_c, grads_r = jax.jit(lambda keys: _gradient_draws(draw, keys))(jax.random.split(jax.random.key(0), 600))
    for grads, exact in ((grads_c, exact_c), (grads_r, exact_r)):
        mean, se = np.mean(grads, 0), np.std(grads, 0) / np.sqrt(len(grads))
        np.testing.assert_array_less(np.abs(mean - np.asarray(exact)), 5 * se + 1e-4)


@pytest.mark.slow
def test_inclusion_probabilities_and_their_gradient_are_unbiased():
    """The Rao-Blackwellised P(d in y_c) and its gradient average to the enumerated inclusion probability of
    a Plackett-Luce top-K2 draw and its jax.grad."""
    sc = jnp.asarray(SC, jnp.float32)
    prefixes = jnp.asarray(list(itertools.permutations(range(6), 3)))
    weights = jnp.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2])

    def exact(c):
        p = jnp.exp(plackett_luce_log_prob(c, prefixes, jnp.ones(prefixes.shape, bool)))
        member = jnp.any(prefixes[..., None] == jnp.arange(6), axis=1).astype(jnp.float32)
        return p @ member

    def estimate(c, key):
        perturbed = c + jax.random.gumbel(key, (512, 6))
        return jnp.mean(inclusion_probabilities(perturbed, c, candidates=3), axis=0)

    keys = jax.random.split(jax.random.key(1), 200)
    values = jax.vmap(lambda k: estimate(sc, k))(keys)
    grads = jax.vmap(lambda k: jax.grad(lambda c: estimate(c, k) @ weights)(sc))(keys)
    truth, truth_grad = exact(sc), jax.grad(lambda c: exact(c) @ weights)(sc)
    np.testing.assert_allclose(np.asarray(truth).sum(), 3.0, atol=1e-5)
    for draws, target in ((values, truth), (grads, truth_grad)):
        mean, se = np.mean(draws, 0), np.std(draws, 0) / np.sqrt(len(draws))
        np.testing.assert_array_less(np.abs(mean - np.asarray(target)), 5 * se + 1e-4)


@pytest.mark.slow
def test_credit_assigned_gradient_is_exact_when_the_ranker_shows_every_candidate_alike():
    """With K = K2 and equal rank weights, a candidate's rank weight does not depend on the other candidates:
    the credit-assigned gradient is then unbiased for the candidate generator's exact gradient."""
    sc, sr = jnp.asarray(SC, jnp.float32), jnp.asarray(SR, jnp.float32)
    relevance = jnp.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2])
    theta = np.ones(3)
    exact = jax.grad(_exact_value)(sc, sr, relevance, theta, 3)
    grads = jax.jit(jax.vmap(lambda key: jax.grad(lambda c: credit_assigned_surrogate(
        key, c, sr, relevance, theta, candidates=3, samples=64))(sc)))(jax.random.split(jax.random.key(2), 400))
    mean, se = np.mean(grads, 0), np.std(grads, 0) / np.sqrt(len(grads))
    np.testing.assert_array_less(np.abs(mean - np.asarray(exact)), 5 * se + 1e-4)


@pytest.mark.slow
def test_credit_assigned_gradient_has_lower_variance_than_reinforce():
    """Same problem (a pool of 200, K2 = 20, K = 5, a session's sparse IPS relevance), same samples per
    gradient: the candidate generator's credit-assigned gradient varies far less than REINFORCE's, with or
    without its baseline."""
    rng = np.random.default_rng(0)
    n, K2 = 200, 20
    sc = jnp.asarray(rng.normal(size=n), jnp.float32)
    sr = jnp.asarray(rng.normal(size=n), jnp.float32)
    relevance = jnp.asarray((rng.random(n) < 0.1) * 2.0, jnp.float32)
    theta = np.array([1.0, 0.8, 0.6, 0.5, 0.4])
    keys = jax.random.split(jax.random.key(4), 200)

    def variance(fn):
        grads = jax.jit(jax.vmap(lambda key: jax.grad(lambda c: fn(key, c))(sc)))(keys)
        return float(np.sum(np.var(np.asarray(grads), axis=0)))

    reinforce = variance(lambda key, c: reinforce_surrogates(key, c, sr, relevance, theta, candidates=K2,
                                                             samples=16, baseline=False)[0])
    baseline = variance(lambda key, c: reinforce_surrogates(key, c, sr, relevance, theta, candidates=K2,
                                                            samples=16, baseline=True)[0])
    credit = variance(lambda key, c: credit_assigned_surrogate(key, c, sr, relevance, theta, candidates=K2,
                                                               samples=16))
    assert baseline < reinforce
    assert credit < baseline / 10, (reinforce, baseline, credit)


@pytest.mark.slow
def test_sampled_pipelines_show_only_candidates():
    out = sample_two_stage(jax.random.key(0), jnp.asarray(SC), jnp.asarray(SR), candidates=4, top_k=2, samples=500)
    shown_is_candidate = jnp.take_along_axis(out["member"], out["ranking"], axis=-1)
    assert bool(jnp.all(shown_is_candidate)) and bool(jnp.all(out["member"].sum(-1) == 4))


@pytest.mark.slow
def test_deployed_pipeline_ranks_the_candidates_by_the_ranker():
    c = jnp.array([[5.0, 4.0, 3.0, 2.0, 1.0, -jnp.inf]])
    r = jnp.array([[0.0, 2.0, 1.0, 9.0, 8.0, 7.0]])
    scores = deterministic_pipeline_scores(c, r, candidates=3, where=jnp.array([[True] * 5 + [False]]))
    order = np.argsort(-np.asarray(scores[0]), kind="stable")
    assert order.tolist()[:5] == [1, 2, 0, 3, 4]
    assert scores[0, 5] == -jnp.inf


# ---------------------------------------------------------------------- two-stage logs and learners
@pytest.fixture(scope="module")
def two_stage_log(tmp_path_factory):
    from simulators.datasets import load_dataset
    from simulators.simulation import SimulationConfig, Simulator

    dataset = load_dataset("synthetic:queries=12,docs=30,features=8,seed=3")
    config = SimulationConfig(click_model="pbm", list_size=3, policies=("plackett-luce",), temperature=3.0,
                              candidates=8, candidate_temperature=0.7)
    logs = tmp_path_factory.mktemp("two-stage") / "logs"
    Simulator(dataset, config, seed=1).run(logs, 40_000, chunk_size=10_000, progress=False)
    return dataset, logs


@pytest.mark.slow
def test_two_stage_log_records_candidate_sets(two_stage_log):
    import pyarrow.parquet as pq

    dataset, logs = two_stage_log
    table = pq.read_table(sorted(logs.glob("part-*.parquet"))[0])
    shown, candidates = table.column("doc_ids").to_pylist(), table.column("candidates").to_pylist()
    assert all(set(s) <= set(c) and len(c) == 8 and len(set(c)) == 8 for s, c in zip(shown, candidates))


@pytest.mark.slow
def test_simulated_exposure_matches_the_recomputed_joint_exposure(two_stage_log):
    """The examination each document got in the simulated sessions, averaged per query, agrees with the joint
    exposure recomputed from simulation.json (Monte-Carlo) within the sampling error of both."""
    from simulators.metadata import LogMetadata
    from ultr.data import FeatureStore, click_batches
    from ultr.exposure import logging_exposure

    dataset, logs = two_stage_log
    metadata = LogMetadata.read(logs)
    theta = np.asarray(metadata.rank_parameters["examination"])  # as the log's examination column, not normalised
    samples = 20_000
    rho = logging_exposure(metadata, dataset.train, theta, samples=samples, seed=0)
    store = FeatureStore.fit(dataset.train)
    data = store.data
    totals, sessions = np.zeros(data.num_documents + 1), np.zeros(data.num_queries)
    query_of_row = np.append(np.repeat(np.arange(data.num_queries), data.list_sizes), -1)
    for batch in click_batches(logs, store, 1024, seed=0, epoch=0, propensities=None):
        np.add.at(totals, batch.rows[batch.mask], batch.propensity[batch.mask])
        first = query_of_row[batch.rows[:, 0]]
        np.add.at(sessions, first[first >= 0], 1)
    n = sessions[query_of_row[:-1]]
    empirical = totals[:-1] / n
    # both are means of draws in [0, max theta]: variance at most mean * max theta
    bound = 5 * np.sqrt(theta.max() * (np.maximum(empirical, rho) / n + rho / samples)) + 1e-4
    np.testing.assert_array_less(np.abs(empirical - rho), bound)
    assert rho.min() > 0  # every document can be shown: the estimator is unbiased for all


@pytest.mark.slow
@pytest.mark.parametrize("learner, options", [
    ("two-stage", {"candidates": 8, "pipeline_samples": 4}),
    ("two-stage", {"candidates": 8, "pipeline_samples": 4, "candidate_gradient": "reinforce", "alternate": 0}),
    ("two-stage-ranker", {"candidates": 8, "pipeline_samples": 4}),
    ("two-stage-candidates", {"candidates": 8, "pipeline_samples": 4}),
    ("two-stage-top1", {"candidates": 8, "pipeline_samples": 4}),
    ("policy-aware-ips", {"aggregate": True}),
])
@pytest.mark.slow
def test_two_stage_learners_train_from_a_two_stage_log(two_stage_log, learner, options):
    from ultr.training import TrainConfig, train

    dataset, logs = two_stage_log
    result = train(logs, dataset, TrainConfig(learner=learner, propensities="oracle", max_steps=40, eval_every=20,
                                              learner_options=options, seed=0), progress=False)
    assert result.steps == 40 and 0 < result.test["ndcg@10"] <= 1
    assert all(np.isfinite(h["train_loss"]) for h in result.history)


@pytest.mark.slow
def test_two_stage_pipeline_samples_follow_the_training_seed():
    """The pipelines sampled at a step come from the training seed: the same seed gives the same loss,
    another seed other samples (a fixed key would give every seed the same draws)."""
    from flax import nnx

    from ultr.data import LabelBatch
    from ultr.learners import LEARNERS
    from ultr.propensities import Propensities
    from ultr.rankers import LinearRanker

    rng = np.random.default_rng(0)
    features = jnp.asarray(rng.normal(size=(2, 12, 3)), jnp.float32)
    batch = LabelBatch(rows=None, labels=jnp.asarray(rng.uniform(size=(2, 12)), jnp.float32),
                       mask=jnp.ones((2, 12), bool))
    propensities = Propensities(source="oracle", kind="oracle", examination=np.array([1.0, 0.5, 0.3]))
    cls = LEARNERS["two-stage"]

    def loss(seed):
        learner = cls.build(LinearRanker(3, rngs=nnx.Rngs(0)), 3, propensities=propensities, seed=seed,
                            options=cls.make_options({"candidates": 5, "pipeline_samples": 2}))
        return float(learner.loss(features, batch))

    assert loss(0) == loss(0)
    assert loss(0) != loss(1)


@pytest.mark.slow
def test_two_stage_learners_refuse_a_loss_and_unused_options(two_stage_log):
    from ultr.training import TrainConfig, train

    dataset, logs = two_stage_log
    with pytest.raises(ValueError, match="takes no ranking loss"):
        train(logs, dataset, TrainConfig(learner="two-stage", propensities="oracle", loss="softmax", max_steps=2),
              progress=False)
    with pytest.raises(ValueError, match="candidate_gradient"):
        TrainConfig(learner="two-stage-ranker", propensities="oracle",
                    learner_options={"candidate_gradient": "reinforce"}).validate()


def test_two_stage_logging_config_is_checked():
    from simulators.simulation import SimulationConfig

    with pytest.raises(ValueError, match="candidates must be an integer of at least list_size"):
        SimulationConfig(list_size=10, candidates=5).validate()
    with pytest.raises(ValueError, match="candidate_temperature: only two-stage logging"):
        SimulationConfig(candidate_temperature=2.0).validate()


@pytest.mark.slow
def test_plackett_luce_log_prob_is_exact_far_below_the_first_document():
    """Documents more than 87 logits below the first: no underflow in the normaliser, and finite gradients
    when a masked document scores far above the others."""
    logits = jnp.array([0.0, -200.0, -201.0])
    value, grad = jax.value_and_grad(lambda s: plackett_luce_log_prob(s, jnp.array([0, 1]), jnp.ones(2, bool)))(logits)
    p = 1 / (1 + np.exp(-1.0))  # the second pick: e^-200 / (e^-200 + e^-201)
    assert np.isclose(float(value), np.log(p), atol=1e-5)
    np.testing.assert_allclose(np.asarray(grad), [0.0, 1 - p, -(1 - p)], atol=1e-5)
    masked = jax.grad(lambda s: plackett_luce_log_prob(s, jnp.array([0]), jnp.ones(1, bool),
                                                       where=jnp.array([True, True, False])))(
        jnp.array([0.0, -1.0, 100.0]))
    assert np.all(np.isfinite(np.asarray(masked))) and float(masked[2]) == 0.0


@pytest.mark.slow
def test_reinforce_is_unbiased_on_a_padded_list():
    """A list with 5 real documents padded to 6: the gradient of the real documents matches the exact one, the
    padding gets none."""
    where = jnp.array([True] * 5 + [False])
    sc, sr = jnp.asarray(SC, jnp.float32), jnp.asarray(SR, jnp.float32)
    relevance = jnp.array([0.9, 0.1, 0.5, 0.3, 0.7, 5.0])
    exact_c, exact_r = jax.grad(_exact_value, argnums=(0, 1))(sc[:5], sr[:5], relevance[:5], THETA, 4)

    def draw(key):
        grad_c = jax.grad(lambda c: reinforce_surrogates(key, c, sr, relevance, THETA, candidates=4, samples=64,
                                                         where=where)[0])(sc)
        grad_r = jax.grad(lambda r: reinforce_surrogates(key, sc, r, relevance, THETA, candidates=4, samples=64,
                                                         where=where)[1])(sr)
        return grad_c, grad_r

    grads_c, grads_r = jax.jit(jax.vmap(draw))(jax.random.split(jax.random.key(5), 600))
    for grads, exact in ((grads_c, exact_c), (grads_r, exact_r)):
        grads = np.asarray(grads)
        assert np.all(grads[:, 5] == 0.0)
        mean, se = grads[:, :5].mean(0), grads[:, :5].std(0) / np.sqrt(len(grads))
        np.testing.assert_array_less(np.abs(mean - np.asarray(exact)), 5 * se + 1e-4)

"""DLA's remedies for biased propensities: position balancing weights and propensity averaging."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ultr import losses as U
from ultr.data import ClickBatch
from ultr.learners import LEARNERS
from ultr.rankers import LinearRanker


def _confounded_batch(seed=0, B=4000, K=4):
    """One binary feature x per document; the logging policy shows x = 1 documents higher."""
    rng = np.random.default_rng(seed)
    q = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])  # q(rank | x)
    # each (session, rank) cell holds a document whose feature is drawn given the rank: P(x | k) ∝ P(x) q(k | x)
    p_x_given_k = q.T / q.T.sum(axis=1, keepdims=True)  # P(x) = 1/2 each
    x = (rng.uniform(size=(B, K)) < p_x_given_k[np.arange(K), 1]).astype(int)
    return x, q


def test_balancing_weights_make_the_rank_independent_of_the_features():
    x, q = _confounded_batch()
    B, K = x.shape
    logits = jnp.asarray(np.log(q)[x])  # the true position model: row k holds log q(. | x_k)
    weights, _ = U.position_balancing(logits)
    weights = np.asarray(weights)
    assert np.isclose(weights.mean(), 1.0, atol=1e-5)
    # weighted share of x = 1 documents at each rank: equal across ranks (it differs a lot unweighted)
    raw = x.mean(axis=0)
    balanced = (weights * x).sum(axis=0) / weights.sum(axis=0)
    assert raw.max() - raw.min() > 0.4
    assert balanced.max() - balanced.min() < 0.03


def test_balancing_weights_respect_the_mask_and_the_clip():
    logits = jnp.log(jnp.array([[[0.97, 0.01, 0.01, 0.01]] * 4]))  # q(k | x) = 0.01 for k > 1
    mask = jnp.array([[True, True, True, False]])
    weights, loss = U.position_balancing(logits, where=mask, max_weight=5.0)
    w = np.asarray(weights)[0]
    assert w[3] == 0.0
    assert np.isclose(w[:3].mean(), 1.0, atol=1e-6)
    assert np.isclose(w[1], w[2]) and w[1] / w[0] == pytest.approx(5.0 / (1 / 3 / 0.97), rel=1e-5)
    assert np.isclose(float(loss), -np.log([0.97, 0.01, 0.01]).mean(), rtol=1e-5)


@pytest.mark.slow
def test_position_loss_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(size=(3, 4, 4)), jnp.float32)
    f = lambda z: U.position_balancing(z)[1]
    grad = np.asarray(jax.grad(f)(logits))
    eps = 1e-2
    for index in [(0, 0, 0), (1, 2, 3), (2, 3, 1)]:
        step = np.zeros(logits.shape, np.float32)
        step[index] = eps
        numeric = (float(f(logits + step)) - float(f(logits - step))) / (2 * eps)
        assert grad[index] == pytest.approx(numeric, abs=2e-4)


@pytest.mark.slow
def test_unit_weights_leave_the_dla_losses_unchanged():
    rng = np.random.default_rng(0)
    scores = jnp.asarray(rng.normal(size=(5, 6)), jnp.float32)
    clicks = jnp.asarray(rng.uniform(size=(5, 6)) < 0.4).at[:, 0].set(True)
    logits = jnp.asarray(rng.normal(size=6), jnp.float32)
    plain = U.dla_losses(scores, clicks, logits)
    weighted = U.dla_losses(scores, clicks, logits, weights=jnp.ones((5, 6)))
    assert np.allclose(plain, weighted, rtol=1e-6)
    doubled = U.dla_losses(scores, clicks, logits, weights=2 * jnp.ones((5, 6)))
    assert np.allclose(np.asarray(doubled), 2 * np.asarray(plain), rtol=1e-5)


def _learner(**options):
    cls = LEARNERS["dla"]
    return cls.build(LinearRanker(3, rngs=nnx.Rngs(0)), 4, options=cls.make_options(options), num_features=3)


def test_averaged_propensities_are_the_mean_over_the_last_pass():
    learner = _learner(average_propensities=True)
    for epoch, logit_runs in enumerate([[0.0, -1.0], [-0.5, -2.0, -3.0]]):
        learner.begin_pass(epoch)
        seen = []
        for value in logit_runs:
            learner.propensity_logits[...] = jnp.array([0.0, value, value, value])
            learner.update_statistics(None, None)
            seen.append(np.exp(value))
    assert np.allclose(learner.propensities()[1:], np.mean(seen), rtol=1e-6)  # the last pass only
    assert np.allclose(learner.final_propensities()[1:], np.exp(-3.0), rtol=1e-6)


@pytest.mark.slow
def test_a_balanced_dla_starts_from_unit_weights_and_trains():
    learner = _learner(balance_positions=True)
    batch = ClickBatch(rows=None, clicks=jnp.array([[True, False, True, False]] * 2),
                       mask=jnp.ones((2, 4), bool), propensity=jnp.ones((2, 4)))
    features = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 3)), jnp.float32)
    plain = _learner()
    # a uniform position model and full lists: weights 1, so the loss is DLA's plus log K
    assert float(learner.loss(features, batch)) == pytest.approx(float(plain.loss(features, batch)) + np.log(4),
                                                                  rel=1e-5)
    grads = nnx.grad(lambda m: m.loss(features, batch))(learner)
    assert np.abs(np.asarray(grads.position_model.kernel[...])).sum() > 0  # the position model learns


def test_balancing_needs_the_feature_width():
    cls = LEARNERS["dla"]
    with pytest.raises(ValueError, match="balance_positions"):
        cls.build(LinearRanker(3, rngs=nnx.Rngs(0)), 4, options=cls.make_options({"balance_positions": True}))

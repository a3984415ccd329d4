"""One invariance battery for every loss of ultr.losses (as rax tests its losses), plus finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ultr import losses as U

B, K, PAD = 4, 6, 2  # lists, shown items, masked items appended


def _rank_params(rng, K):
    return {
        "propensities": jnp.asarray(rng.uniform(0.1, 1.0, K), jnp.float32),
        "logits": jnp.asarray(rng.normal(size=K), jnp.float32),
        "examination": jnp.asarray(rng.uniform(0.1, 0.9, K), jnp.float32),
        "bias": jnp.asarray(rng.normal(size=K), jnp.float32),
        "t_plus": jnp.asarray(rng.uniform(0.5, 1.5, K), jnp.float32),
        "t_minus": jnp.asarray(rng.uniform(0.5, 1.5, K), jnp.float32),
        "alpha": jnp.asarray(rng.uniform(0.3, 0.9, K), jnp.float32),
        "beta": jnp.asarray(rng.uniform(0.0, 0.1, K), jnp.float32),
    }


# name -> loss(scores, clicks, where, params, reduce_fn); params hold per-rank arrays [K]
LOSSES = {
    "softmax": lambda s, c, w, p, r: U.softmax_loss(s, c.astype(jnp.float32), where=w, reduce_fn=r),
    "sigmoid": lambda s, c, w, p, r: U.sigmoid_loss(s, c.astype(jnp.float32), where=w, reduce_fn=r),
    "pairwise": lambda s, c, w, p, r: U.pairwise_loss(s, c.astype(jnp.float32), where=w, reduce_fn=r),
    "lambdarank": lambda s, c, w, p, r: U.lambdarank_loss(s, c.astype(jnp.float32), where=w, reduce_fn=r),
    "mse": lambda s, c, w, p, r: U.mse_loss(s, c.astype(jnp.float32), where=w, reduce_fn=r),
    "bounded-softmax": lambda s, c, w, p, r: U.bounded_softmax_loss(s, c.astype(jnp.float32), where=w, reduce_fn=r),
    "doubly-robust": lambda s, c, w, p, r: U.bounded_softmax_loss(
        s, U.doubly_robust_labels(c, jnp.broadcast_to(p["examination"], s.shape),
                                  jnp.broadcast_to(p["propensities"], s.shape), jnp.broadcast_to(p["alpha"], s.shape),
                                  where=w),
        where=w, reduce_fn=r),
    "known-examination": lambda s, c, w, p, r: U.known_examination_loss(
        s, c, jnp.broadcast_to(p["examination"], s.shape), where=w, reduce_fn=r),
    "ips-softmax": lambda s, c, w, p, r: U.ips_loss(s, c.astype(jnp.float32), jnp.broadcast_to(p["propensities"], s.shape),
                                                    where=w, reduce_fn=r),
    "ips-sigmoid": lambda s, c, w, p, r: U.ips_loss(s, c.astype(jnp.float32), jnp.broadcast_to(p["propensities"], s.shape),
                                                    where=w, loss="sigmoid", reduce_fn=r),
    "dla-ranker": lambda s, c, w, p, r: U.dla_losses(s, c, p["logits"], where=w, reduce_fn=r)[0],
    "dla-propensity": lambda s, c, w, p, r: U.dla_losses(s, c, p["logits"], where=w, reduce_fn=r)[1],
    "regression-em": lambda s, c, w, p, r: U.regression_em_loss(s, c, p["examination"], where=w, reduce_fn=r),
    "two-tower-product": lambda s, c, w, p, r: U.two_tower_loss(s, c, p["bias"], where=w, reduce_fn=r),
    "two-tower-additive": lambda s, c, w, p, r: U.two_tower_loss(s, c, p["bias"], where=w, combination="additive",
                                                                 reduce_fn=r),
    "paird": lambda s, c, w, p, r: U.pairwise_debiasing_loss(s, c, p["t_plus"], p["t_minus"], where=w, reduce_fn=r),
    "paird-lambdarank": lambda s, c, w, p, r: U.pairwise_debiasing_loss(s, c, p["t_plus"], p["t_minus"], where=w,
                                                                        lambdarank=True, reduce_fn=r),
    "affine": lambda s, c, w, p, r: U.affine_loss(s, c, p["alpha"], p["beta"], where=w, reduce_fn=r),
}


def _inputs(seed=0, B=B, K=K):
    rng = np.random.default_rng(seed)
    scores = jnp.asarray(rng.normal(size=(B, K)), jnp.float32)
    clicks = jnp.asarray(rng.uniform(size=(B, K)) < 0.4)
    clicks = clicks.at[:, 0].set(True).at[:, 1].set(False)  # every list has a click and a skip
    return scores, clicks, _rank_params(rng, K)


def test_the_battery_covers_every_registered_ranking_loss():
    assert set(U.LOSSES) <= set(LOSSES)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.slow
def test_masking_equals_slicing(name):
    loss = LOSSES[name]
    scores, clicks, params = _inputs()
    rng = np.random.default_rng(1)
    # append PAD masked items with garbage scores, clicks and rank parameters
    padded_scores = jnp.concatenate([scores, jnp.asarray(rng.normal(size=(B, PAD)) * 50, jnp.float32)], axis=1)
    padded_clicks = jnp.concatenate([clicks, jnp.ones((B, PAD), bool)], axis=1)
    padded_params = {k: jnp.concatenate([v, jnp.asarray(rng.uniform(0.2, 0.8, PAD), jnp.float32)])
                     for k, v in params.items()}
    where = jnp.concatenate([jnp.ones((B, K), bool), jnp.zeros((B, PAD), bool)], axis=1)
    masked = loss(padded_scores, padded_clicks, where, padded_params, jnp.mean)
    sliced = loss(scores, clicks, jnp.ones((B, K), bool), params, jnp.mean)
    np.testing.assert_allclose(masked, sliced, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.slow
def test_vmap_equals_batching(name):
    loss = LOSSES[name]
    scores, clicks, params = _inputs()
    where = jnp.ones((B, K), bool).at[2, 4:].set(False)
    batched = loss(scores, clicks, where, params, None)
    one = jax.vmap(lambda s, c, w: loss(s[None], c[None], w[None], params, None)[0])(scores, clicks, where)
    np.testing.assert_allclose(batched, one, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.slow
def test_jit_equals_no_jit(name):
    loss = LOSSES[name]
    scores, clicks, params = _inputs()
    where = jnp.ones((B, K), bool).at[1, 3:].set(False)
    eager = loss(scores, clicks, where, params, jnp.mean)
    compiled = jax.jit(lambda s, c, w: loss(s, c, w, params, jnp.mean))(scores, clicks, where)
    np.testing.assert_allclose(eager, compiled, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.slow
def test_gradients_have_no_nan_for_all_masked_lists_and_extreme_probabilities(name):
    loss = LOSSES[name]
    scores, clicks, params = _inputs()
    where = jnp.ones((B, K), bool).at[0].set(False)  # one list entirely masked
    extreme = {k: v.at[0].set(1.0).at[1].set(0.0) if k in ("propensities", "examination") else v
               for k, v in params.items()}
    extreme["bias"] = params["bias"].at[0].set(40.0).at[1].set(-40.0)
    for p in (params, extreme):
        value, grad = jax.value_and_grad(lambda s: loss(s, clicks, where, p, jnp.mean))(scores * 30)
        assert np.isfinite(value), (name, value)
        assert np.all(np.isfinite(grad)), (name, grad)
        assert np.all(grad[0] == 0), "a masked list gets no gradient"
    everything_masked = loss(scores, clicks, jnp.zeros((B, K), bool), params, jnp.mean)
    assert np.isfinite(everything_masked)


# losses whose targets or weights are functions of the scores without gradient (EM targets, DLA's
# relevance weights) are differentiated with respect to their other input, or left to the others
FINITE_DIFFERENCES = {name: "scores" for name in LOSSES if name != "regression-em"}
FINITE_DIFFERENCES["dla-propensity"] = "logits"


@pytest.mark.parametrize("name", FINITE_DIFFERENCES)
@pytest.mark.slow
def test_gradients_match_finite_differences(name):
    loss = LOSSES[name]
    scores, clicks, params = _inputs(seed=3, B=2, K=4)
    where = jnp.ones((2, 4), bool).at[1, 3].set(False)
    jax.config.update("jax_enable_x64", True)
    try:
        scores64 = scores.astype(jnp.float64)
        params64 = {k: v.astype(jnp.float64) for k, v in params.items()}
        if FINITE_DIFFERENCES[name] == "scores":
            f = lambda s: loss(s, clicks, where, params64, jnp.mean)  # noqa: E731
            check_grads(f, (scores64,), order=1, modes=("rev",), atol=1e-5, rtol=1e-5)
        else:
            f = lambda logits: loss(scores64, clicks, where, {**params64, "logits": logits}, jnp.mean)  # noqa: E731
            check_grads(f, (params64["logits"],), order=1, modes=("rev",), atol=1e-5, rtol=1e-5)
    finally:
        jax.config.update("jax_enable_x64", False)


@pytest.mark.slow
def test_ips_with_true_propensities_recovers_the_full_information_loss_by_enumeration():
    from click_models import PBM, enumerate_click_vectors

    rng = np.random.default_rng(0)
    relevance, examination = rng.uniform(0.1, 0.9, 4), np.array([1.0, 0.6, 0.4, 0.2])
    scores = jnp.asarray(rng.normal(size=4), jnp.float32)
    vectors = enumerate_click_vectors(4)
    probabilities = np.exp(np.asarray(PBM(relevance, examination).log_prob(jnp.asarray(vectors)), np.float64))
    for name in ("softmax", "sigmoid"):
        expected = sum(p * float(U.ips_loss(scores, jnp.asarray(v, jnp.float32), jnp.asarray(examination),
                                            loss=name, clip=0.0)) for p, v in zip(probabilities, vectors))
        truth = float(U.LOSSES[name](scores, jnp.asarray(relevance, jnp.float32)))
        assert np.isclose(expected, truth, rtol=1e-5), name

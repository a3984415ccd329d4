"""Exact properties of every click model, checked by enumerating all 2^K click vectors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from click_models import CCM, DBN, DCM, MODELS, PBM, SDBN, UBM, Cascade, TrustBias, enumerate_click_vectors

BATCH = 3


def make_model(name, rng, K, batch=BATCH, mask=None):
    u = lambda *shape: rng.uniform(0.02, 0.98, size=shape)  # noqa: E731
    if name == "pbm":
        return PBM(u(batch, K), u(K), mask=mask)
    if name == "cascade":
        return Cascade(u(batch, K), mask=mask)
    if name == "dbn":
        return DBN(u(batch, K), u(batch, K), u(batch), mask=mask)
    if name == "sdbn":
        return SDBN(u(batch, K), u(batch, K), mask=mask)
    if name == "dcm":
        return DCM(u(batch, K), u(K), mask=mask)
    if name == "ubm":
        return UBM(u(batch, K), u(K, K), mask=mask)
    if name == "ubm_batched":
        return UBM(u(batch, K), u(batch, K, K), mask=mask)
    if name == "ccm":
        return CCM(u(batch, K), u(), u(), u(), mask=mask)
    if name == "trust_bias":
        return TrustBias(u(K), u(K), u(K), u(batch, K), mask=mask)
    raise KeyError(name)


NAMES = ["pbm", "cascade", "dbn", "sdbn", "dcm", "ubm", "ubm_batched", "ccm", "trust_bias"]


def masks(K, rng):
    mask = rng.uniform(size=(BATCH, K)) < 0.7
    mask[0] = True  # a full list
    mask[1, -1] = False  # padding at the end
    mask[2] = False  # everything masked
    return mask


def enumerated_probabilities(model, K, mask):
    vectors = jnp.asarray(enumerate_click_vectors(K))  # [2^K, K]
    log_p = model.log_prob(vectors[:, None, :])  # [2^K, B]
    allowed = np.ones((len(vectors), BATCH), bool)
    if mask is not None:
        allowed = ~(np.asarray(vectors)[:, None, :] & ~mask[None]).any(-1)
    return np.asarray(vectors), np.where(allowed, np.exp(np.asarray(log_p, np.float64)), 0.0)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("K", [1, 3, 6])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.slow
def test_enumeration_is_a_distribution_and_matches_marginals_and_conditionals(name, K, masked):
    rng = np.random.default_rng(K * 7 + masked)
    mask = masks(K, rng) if masked else None
    model = make_model(name, rng, K, mask=mask)
    vectors, probs = enumerated_probabilities(model, K, mask)

    np.testing.assert_allclose(probs.sum(0), 1.0, atol=2e-5)

    marginal = (probs[:, :, None] * vectors[:, None, :]).sum(0)
    np.testing.assert_allclose(np.asarray(model.click_probs()), marginal, atol=2e-5)

    conditional = np.asarray(model.conditional_click_probs(jnp.asarray(vectors)[:, None, :]))
    for k in range(K):
        same_prefix = (vectors[:, None, :k] == vectors[None, :, :k]).all(-1)  # [2^K, 2^K]
        denominator = same_prefix @ probs  # [2^K, B]
        numerator = same_prefix @ (probs * vectors[:, k, None])
        ok = denominator > 1e-6
        if mask is not None:
            ok &= mask[None, :, k]
            assert np.all(conditional[:, ~mask[:, k], k] == 0.0)
        expected = np.divide(numerator, denominator, out=np.zeros_like(numerator), where=ok)
        np.testing.assert_allclose(np.where(ok, conditional[:, :, k], 0.0), expected, atol=5e-5)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.slow
def test_sample_frequencies_match_exp_log_prob(name, masked):
    K, draws = 4, 200_000
    rng = np.random.default_rng(11)
    mask = masks(K, rng) if masked else None
    model = make_model(name, rng, K, mask=mask)
    vectors, probs = enumerated_probabilities(model, K, mask)
    samples = np.asarray(model.sample(jax.random.key(3), draws))
    assert samples.shape == (draws, BATCH, K) and samples.dtype == bool
    if mask is not None:
        assert not (samples & ~mask).any(), "masked positions clicked"
    codes = (samples * (1 << np.arange(K))).sum(-1)  # [draws, B]
    vector_codes = (vectors * (1 << np.arange(K))).sum(-1)
    frequencies = np.stack([(codes == c).mean(0) for c in vector_codes])  # [2^K, B]
    tolerance = 5 * np.sqrt(probs * (1 - probs) / draws) + 1e-4
    assert np.all(np.abs(frequencies - probs) <= tolerance)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("build", ["from_logits", "from_log_probabilities"])
@pytest.mark.slow
def test_sampling_from_logits_and_from_logs_matches_exp_log_prob(name, build):
    """Sampling reads stored probabilities (constructor, from_logits) or exponentiates logs
    (from_log_probabilities): both paths draw the distribution that log_prob scores."""
    K, draws = 4, 200_000
    rng = np.random.default_rng(5)
    mask = masks(K, rng)
    reference = make_model(name, rng, K, mask=mask)
    probabilities = {k: np.asarray(jnp.exp(v), np.float64) for k, v in reference._log_params.items()}
    if build == "from_logits":
        model = type(reference).from_logits(mask=reference.mask,
                                            **{k: np.log(p) - np.log1p(-p) for k, p in probabilities.items()})
    else:
        model = type(reference).from_log_probabilities(reference._log_params, reference._log_complements,
                                                       reference.mask)
    vectors, probs = enumerated_probabilities(reference, K, mask)
    samples = np.asarray(model.sample(jax.random.key(8), draws))
    codes = (samples * (1 << np.arange(K))).sum(-1)
    vector_codes = (vectors * (1 << np.arange(K))).sum(-1)
    frequencies = np.stack([(codes == c).mean(0) for c in vector_codes])
    tolerance = 5 * np.sqrt(probs * (1 - probs) / draws) + 1e-4
    assert np.all(np.abs(frequencies - probs) <= tolerance)


@settings(max_examples=25, deadline=None)
@given(
    attraction=st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4),
    satisfaction=st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4),
    gamma=st.floats(0.0, 1.0),
)
@pytest.mark.slow
def test_dbn_is_a_distribution_for_any_parameters(attraction, satisfaction, gamma):
    model = DBN(np.array(attraction), np.array(satisfaction), gamma)
    log_p = model.log_prob(jnp.asarray(enumerate_click_vectors(4)))
    assert not np.isnan(np.asarray(log_p)).any()
    assert abs(float(jnp.exp(log_p).sum()) - 1.0) < 1e-5


@settings(max_examples=25, deadline=None)
@given(
    attraction=st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4),
    examination=st.lists(st.floats(0.0, 1.0), min_size=16, max_size=16),
)
@pytest.mark.slow
def test_ubm_is_a_distribution_for_any_parameters(attraction, examination):
    model = UBM(np.array(attraction), np.array(examination).reshape(4, 4))
    vectors = jnp.asarray(enumerate_click_vectors(4))
    p = jnp.exp(model.log_prob(vectors))
    assert abs(float(p.sum()) - 1.0) < 1e-5
    np.testing.assert_allclose(model.click_probs(), (p[:, None] * vectors).sum(0), atol=1e-5)


@pytest.mark.slow
def test_hand_computed_values():
    a = np.array([0.5, 0.4, 0.3])
    cascade = Cascade(a)
    # P(C = 010) = (1 - a1) a2 ; P(C = 110) = 0 ; P(C = 000) = prod (1 - a)
    assert np.isclose(float(jnp.exp(cascade.log_prob(jnp.array([0, 1, 0])))), 0.5 * 0.4)
    assert float(cascade.log_prob(jnp.array([1, 1, 0]))) == -np.inf
    assert np.isclose(float(jnp.exp(cascade.log_prob(jnp.array([0, 0, 0])))), 0.5 * 0.6 * 0.7)
    np.testing.assert_allclose(cascade.click_probs(), [0.5, 0.5 * 0.4, 0.5 * 0.6 * 0.3], rtol=1e-6)

    s, g = np.array([0.6, 0.5, 0.2]), 0.9
    dbn = DBN(a, s, g)
    # click at 1, not satisfied, continue, skip 2 (examined, not attracted or stopped), ...
    p_continue_after_click = (1 - 0.6) * g
    # P(C = 100) = a1 * [stop after click + continue * P(no click at 2, 3 | E2 = 1)]
    no_click_from_2 = (1 - 0.4) * ((1 - g) + g * (1 - 0.3))
    expected = 0.5 * ((1 - p_continue_after_click) + p_continue_after_click * no_click_from_2)
    assert np.isclose(float(jnp.exp(dbn.log_prob(jnp.array([1, 0, 0])))), expected, rtol=1e-6)

    pbm = PBM(a, np.array([1.0, 0.5, 0.25]))
    np.testing.assert_allclose(pbm.click_probs(), a * [1.0, 0.5, 0.25], rtol=1e-6)

    tb = TrustBias(np.array([1.0, 0.5, 0.5]), np.array([0.9, 0.8, 0.8]), np.array([0.2, 0.1, 0.1]), a)
    np.testing.assert_allclose(
        tb.click_probs(), [1.0 * (0.9 * 0.5 + 0.2 * 0.5), 0.5 * (0.8 * 0.4 + 0.1 * 0.6), 0.5 * (0.8 * 0.3 + 0.1 * 0.7)],
        rtol=1e-6,
    )

    ubm = UBM(a, np.array([[1.0, 0, 0], [0.5, 0.9, 0], [0.2, 0.3, 0.8]]))
    # P(C = 101): a1 * g[0,0] ; no click at 2 with last click 1 ; click at 3 with last click 1
    expected = 0.5 * (1 - 0.4 * 0.9) * 0.3 * 0.3
    assert np.isclose(float(jnp.exp(ubm.log_prob(jnp.array([1, 0, 1])))), expected, rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.slow
def test_probabilities_zero_and_one_and_all_masked_give_no_nan(name):
    K = 4
    for value in (0.0, 1.0):
        rng = np.random.default_rng(0)
        model = make_model(name, rng, K)
        extreme = type(model).from_log_probabilities(
            {k: jnp.full_like(v, 0.0 if value == 1.0 else -jnp.inf) for k, v in model._log_params.items()},
            {k: jnp.full_like(v, -jnp.inf if value == 1.0 else 0.0) for k, v in model._log_complements.items()},
        )
        vectors = jnp.asarray(enumerate_click_vectors(K))[:, None, :]
        for output in (
            extreme.log_prob(vectors),
            extreme.click_probs(),
            extreme.conditional_click_probs(vectors),
            extreme.sample(jax.random.key(0), 10),
        ):
            assert not np.isnan(np.asarray(output, np.float64)).any()
        total = float(jnp.exp(extreme.log_prob(vectors)).sum(0).mean())
        assert abs(total - 1.0) < 1e-6
    # all positions masked: log_prob 0, no clicks, no NaN in gradients
    rng = np.random.default_rng(1)
    model = make_model(name, rng, K, mask=np.zeros((BATCH, K), bool))
    clicks = jnp.ones((BATCH, K), bool)
    np.testing.assert_array_equal(model.log_prob(clicks), 0.0)
    np.testing.assert_array_equal(model.click_probs(), 0.0)
    assert not np.asarray(model.sample(jax.random.key(0), 5)).any()
    cls, mask = type(model), model.mask

    def total(log_params, log_complements):
        return cls.from_log_probabilities(log_params, log_complements, mask).log_prob(clicks).sum()

    grads = jax.grad(total, argnums=(0, 1))(model._log_params, model._log_complements)
    assert all(not np.isnan(np.asarray(g)).any() for g in jax.tree.leaves(grads))


@pytest.mark.slow
def test_no_recompilation_across_batches_of_the_same_shape():
    traces = []

    @jax.jit
    def score(model, clicks, key):
        traces.append(1)
        return model.log_prob(clicks), model.sample(key), model.click_probs()

    rng = np.random.default_rng(0)
    for i in range(4):
        model = DBN(rng.uniform(size=(64, 10)), rng.uniform(size=(64, 10)), rng.uniform(size=64),
                    mask=rng.uniform(size=(64, 10)) < 0.9)
        score(model, rng.uniform(size=(64, 10)) < 0.3, jax.random.key(i))
    assert len(traces) == 1


def test_bad_input_gets_a_clear_error():
    with pytest.raises(ValueError, match="attraction must lie in"):
        PBM(np.array([0.5, 1.5]), np.array([1.0, 0.5]))
    with pytest.raises(ValueError, match="NaN"):
        PBM(np.array([0.5, np.nan]), np.array([1.0, 0.5]))
    with pytest.raises(ValueError, match="list size"):
        PBM(np.array([0.5, 0.5, 0.5]), np.array([1.0, 0.5]))
    with pytest.raises(ValueError, match="shape"):
        UBM(np.array([0.5, 0.5]), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="clicks must have shape"):
        PBM(np.array([0.5, 0.5]), np.array([1.0, 0.5])).log_prob(jnp.array([1, 0, 0]))
    with pytest.raises(TypeError, match="mask must be boolean"):
        PBM(np.array([0.5, 0.5]), np.array([1.0, 0.5]), mask=np.array([1, 0]))


@pytest.mark.slow
def test_parameters_are_public_probabilities_and_models_are_pytrees():
    model = DCM(np.array([[0.2, 0.4]]), np.array([0.7, 0.6]))
    np.testing.assert_allclose(model.attraction, [[0.2, 0.4]], rtol=1e-6)
    np.testing.assert_allclose(model.continuation, [0.7, 0.6], rtol=1e-6)
    assert model.batch_shape == (1,) and model.list_size == 2
    leaves, tree = jax.tree.flatten(model)
    rebuilt = jax.tree.unflatten(tree, leaves)
    np.testing.assert_allclose(rebuilt.click_probs(), model.click_probs())
    batched = jax.vmap(lambda m: m.click_probs())(
        DCM(np.full((5, 2), 0.5), np.full((5, 2), 0.5))
    )
    assert batched.shape == (5, 2)
    assert set(MODELS) == {"pbm", "cascade", "dbn", "sdbn", "dcm", "ubm", "ccm", "trust_bias"}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.slow
def test_examination_probs_times_click_given_examination_is_the_click_probability(name):
    K = 5
    rng = np.random.default_rng(4)
    mask = masks(K, rng)
    model = make_model(name, rng, K, mask=mask)
    exam = np.asarray(model.examination_probs())
    assert exam.shape == (BATCH, K) and np.all(exam[~mask] == 0) and np.all((exam >= 0) & (exam <= 1 + 1e-6))
    if name == "trust_bias":
        p = model.relevance
        given_examined = model.epsilon_pos * p + model.epsilon_neg * (1 - p)
    else:
        given_examined = model.attraction
    np.testing.assert_allclose(exam * np.asarray(given_examined), model.click_probs(), atol=1e-6)
    first = np.argmax(mask, axis=1)
    if name not in ("pbm", "ubm", "ubm_batched", "trust_bias"):  # cascade family: the first shown rank is examined
        rows = mask.any(1)
        np.testing.assert_allclose(exam[rows, first[rows]], 1.0, atol=1e-6)


def _mixed_dtype_model(name, K):
    """Document parameters in float32 and scalar or per-rank ones as Python floats: the dtypes users mix."""
    doc = jnp.linspace(0.1, 0.9, K, dtype=jnp.float32)[None].repeat(BATCH, 0)
    rank = [0.9 - 0.1 * k for k in range(K)]
    return {
        "pbm": lambda: PBM(doc, rank), "cascade": lambda: Cascade(doc), "dbn": lambda: DBN(doc, doc * 0.5, 0.9),
        "sdbn": lambda: SDBN(doc, doc * 0.5), "dcm": lambda: DCM(doc, rank),
        "ubm": lambda: UBM(doc, np.full((K, K), 0.5)), "ubm_batched": lambda: UBM(doc, np.full((BATCH, K, K), 0.5)),
        "ccm": lambda: CCM(doc, 0.8, 0.5, 0.9), "trust_bias": lambda: TrustBias(rank, [1.0] * K, [0.2] * K, doc),
    }[name]()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.slow
def test_properties_hold_with_x64_and_mixed_dtypes(name):
    K = 4
    with jax.enable_x64(True):
        model = _mixed_dtype_model(name, K)
        vectors, probs = enumerated_probabilities(model, K, None)
        np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-6)
        marginal = (probs[:, :, None] * vectors[:, None, :]).sum(0)
        np.testing.assert_allclose(np.asarray(model.click_probs()), marginal, atol=1e-6)
        conditional = model.conditional_click_probs(jnp.asarray(vectors)[:, None, :])
        assert np.isfinite(np.asarray(conditional)).all()
        samples = model.sample(jax.random.key(0), 1000)
        assert samples.shape == (1000, BATCH, K)
    model32 = _mixed_dtype_model(name, K)  # and the same model without x64 agrees
    np.testing.assert_allclose(np.asarray(model32.click_probs()), marginal, atol=1e-5)


@pytest.mark.slow
def test_uniform_draws_are_uniform_prefix_stable_and_follow_the_key_implementation():
    from click_models._random import uniform

    key = jax.random.key(3)
    u = np.asarray(uniform(key, (200_000, 5)))
    assert u.dtype == np.float32 and u.min() >= 0.0 and u.max() < 1.0
    counts = np.bincount((u.ravel() * 100).astype(int), minlength=100)
    expected = u.size / 100
    assert ((counts - expected) ** 2 / expected).sum() < 200  # chi-square, 99 degrees of freedom: p < 1e-6
    # neighbouring positions (the two words of one hash) are uncorrelated
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 0.01
    # element e depends on the key and e only: any shape, any length
    np.testing.assert_array_equal(np.asarray(uniform(key, (7, 3))).ravel(), u.ravel()[:21])
    np.testing.assert_array_equal(np.asarray(uniform(key, (1,))), u.ravel()[:1])
    assert not np.array_equal(np.asarray(uniform(jax.random.key(4), (21,))), u.ravel()[:21])
    keys = jax.random.split(key, 4)
    batched = jax.vmap(lambda k: uniform(k, (9,)))(keys)
    np.testing.assert_array_equal(np.asarray(batched[2]), np.asarray(uniform(keys[2], (9,))))
    rbg = jax.random.key(3, impl="rbg")
    np.testing.assert_array_equal(np.asarray(uniform(rbg, (4, 5))), np.asarray(jax.random.uniform(rbg, (4, 5))))
    assert uniform(key, (0, 3)).shape == (0, 3)

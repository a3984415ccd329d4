"""Fitting recovers known parameters; EM is monotone; counting matches hand counts."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from click_models import MODELS
from click_models._base import DOCUMENT
from click_models.evaluation import evaluate
from click_models.fitting import (
    default_prior,
    AttractionNetwork,
    LogSource,
    Prior,
    SessionBatch,
    assemble,
    fit_counting,
    fit_em,
    fit_gradient,
)
from click_models.logs import DocumentIndex, atomic_write_parquet, iter_click_log, sessions_to_table
from simulators import simulate_toy_log, toy_session_batches, true_parameters


def toy(model, queries, docs, sessions, seed=0, batch_size=None):
    truth = true_parameters(model, queries, docs, seed=seed)
    log = simulate_toy_log(model, truth, queries, docs, sessions, seed=seed + 1)
    return truth, log, toy_session_batches(log, docs, batch_size)


def normalised(x):
    return np.asarray(x) / np.asarray(x)[..., :1]


@pytest.mark.slow
def test_pbm_em_recovers_examination_from_a_million_sessions():
    queries, docs = 100, 10
    truth, _, batches = toy("pbm", queries, docs, 1_000_000, seed=3, batch_size=250_000)
    result = fit_em("pbm", batches, queries * docs, docs, max_iterations=2000, tolerance=1e-7)
    # PBM fixes attraction x examination; the scale is pinned by normalising at rank 1.
    np.testing.assert_allclose(normalised(result.tables["examination"]), normalised(truth["examination"]), atol=0.01)
    products = result.tables["attraction"][:-1].reshape(queries, docs, 1) * result.tables["examination"]
    true_products = truth["attraction"][:-1].reshape(queries, docs, 1) * truth["examination"]
    assert np.abs(products - true_products).mean() < 0.01


CASES = {
    # model: (queries, docs, sessions, tolerance for rank/session parameters)
    "ubm": (20, 5, 200_000, 0.03),
    "cascade": (20, 5, 100_000, None),
    "dbn": (20, 5, 200_000, 0.03),
    "sdbn": (20, 5, 200_000, None),
    "dcm": (20, 5, 200_000, 0.03),
    "ccm": (20, 5, 200_000, 0.03),
}


@pytest.mark.parametrize("model", sorted(CASES))
@pytest.mark.slow
def test_em_recovers_known_parameters_and_is_monotone(model):
    queries, docs, sessions, tolerance = CASES[model]
    truth, _, batches = toy(model, queries, docs, sessions, seed=5, batch_size=100_000)
    result = fit_em(model, batches, queries * docs, docs, max_iterations=300, tolerance=1e-5)
    lls = [h["log_likelihood"] for h in result.history]
    assert all(b >= a - 1e-4 * abs(a) for a, b in zip(lls, lls[1:])), "EM decreased the likelihood"
    for name, kind in MODELS[model].parameter_kinds.items():
        fitted, true = result.tables[name], truth[name]
        if kind == DOCUMENT:
            # documents shown rarely at examined ranks carry little information: compare on average
            assert np.abs(fitted[:-1] - true[:-1]).mean() < 0.05, name
        elif model == "ubm":
            # attraction x examination fixes the examination only up to a scale (the document prior picks
            # it): compare normalised at rank 1 without a previous click, as PBM's test does
            observed = np.tril(np.ones((docs, docs), bool))  # previous click above the rank
            err = np.abs(fitted / fitted[0, 0] - true / true[0, 0])[observed]
            assert err.max() < 0.08 and err.mean() < tolerance, name
        else:
            np.testing.assert_allclose(fitted, true, atol=tolerance, err_msg=name)
    fitted_ll = evaluate(result.click_model, batches[:1])["log_likelihood"]
    true_ll = evaluate(lambda b: assemble(model, truth, b), batches[:1])["log_likelihood"]
    assert fitted_ll >= true_ll - 1e-3


@pytest.mark.parametrize("model", ["dbn", "ccm"])
@pytest.mark.slow
def test_squarem_reaches_the_em_fixed_point_in_fewer_passes(model):
    """SQUAREM-accelerated EM ends where plain EM ends (same likelihood, same parameters within the stopping
    tolerance), in fewer passes over the sessions, and its recorded likelihoods never decrease."""
    truth, _, batches = toy(model, 20, 10, 100_000, seed=11, batch_size=50_000)
    prior = Prior(document=(1.0, 1.0))  # the prior the pass counts were measured with
    plain = fit_em(model, batches, 200, 10, max_iterations=2_000, tolerance=1e-7, log_likelihood_tolerance=1e-9, accelerate=False, prior=prior)
    fast = fit_em(model, batches, 200, 10, max_iterations=2_000, tolerance=1e-7, log_likelihood_tolerance=1e-9, prior=prior)
    assert plain.converged and fast.converged
    assert fast.history[-1]["passes"] < 0.6 * plain.history[-1]["passes"]  # measured: 20 of 47 (dbn), 43 of 119
    lls = [h["log_likelihood"] for h in fast.history]
    assert all(b >= a - 1e-7 * abs(a) for a, b in zip(lls, lls[1:]))  # float32 E-steps: plain EM dips as much
    assert lls[-1] == pytest.approx(plain.history[-1]["log_likelihood"], rel=1e-6)
    for name in plain.tables:
        np.testing.assert_allclose(fast.tables[name], plain.tables[name], atol=1e-3, err_msg=name)


@pytest.mark.slow
def test_trust_bias_em_does_not_lose_likelihood():
    truth, _, batches = toy("trust_bias", 10, 5, 50_000, seed=2, batch_size=50_000)
    result = fit_em("trust_bias", batches, 50, 5, max_iterations=40)
    lls = [h["log_likelihood"] for h in result.history]
    assert all(b >= a - 1e-4 * abs(a) for a, b in zip(lls, lls[1:]))
    fitted_ll = evaluate(result.click_model, batches)["log_likelihood"]
    true_ll = evaluate(lambda b: assemble("trust_bias", truth, b), batches)["log_likelihood"]
    assert fitted_ll >= true_ll - 2e-3


@pytest.mark.parametrize("model", ["pbm", "dbn"])
@pytest.mark.slow
def test_gradient_fitting_recovers_known_parameters(model):
    queries, docs = 20, 5
    truth, _, batches = toy(model, queries, docs, 100_000, seed=7, batch_size=25_000)
    held_out = toy_session_batches(simulate_toy_log(model, truth, queries, docs, 20_000, seed=70), docs)
    result = fit_gradient(model, batches, queries * docs, docs, validation=held_out,
                          optimizer=optax.adam(0.2), epochs=100, patience=10)
    if model == "pbm":
        np.testing.assert_allclose(normalised(result.tables["examination"]), normalised(truth["examination"]), atol=0.03)
    else:
        assert abs(float(result.tables["continuation"]) - 0.9) < 0.03
        assert np.abs(result.tables["attraction"][:-1] - truth["attraction"][:-1]).mean() < 0.05
    fitted_ll = evaluate(result.click_model, held_out)["log_likelihood"]
    true_ll = evaluate(lambda b: assemble(model, truth, b), held_out)["log_likelihood"]
    assert fitted_ll >= true_ll - 0.01


@pytest.mark.slow
def test_feature_based_attraction_generalises_to_unseen_documents():
    rng = np.random.default_rng(0)
    queries, docs, F = 40, 5, 3
    n = queries * docs
    features = rng.normal(size=(n, F)).astype(np.float32)
    attraction = 1 / (1 + np.exp(-(features @ np.array([1.5, -1.0, 0.5]))))
    truth = {"attraction": np.append(attraction, 0.5), "examination": np.array([1.0, 0.8, 0.6, 0.4, 0.3])}
    log = simulate_toy_log("pbm", truth, queries, docs, 100_000, seed=1)
    doc_index = log.query_id[:, None] * docs + log.doc_ids
    train = log.query_id < 30  # queries 30..39 are never seen in training
    batches = []
    for chunk in np.array_split(np.flatnonzero(train), 4):
        batches.append(SessionBatch(jnp.asarray(doc_index[chunk], jnp.int32), jnp.asarray(log.clicks[chunk]),
                                    jnp.ones((len(chunk), docs), bool), jnp.asarray(features[doc_index[chunk]])))
    network = AttractionNetwork(F, (16,), rngs=nnx.Rngs(0))
    result = fit_gradient("pbm", batches, n, docs, attraction_network=network, epochs=40,
                          init={"attraction": np.full(n + 1, 0.5), "examination": np.ones(docs)})
    unseen = np.arange(30 * docs, n)
    probe = SessionBatch(jnp.full((1, docs), -1, jnp.int32), jnp.zeros((1, docs), bool), jnp.ones((1, docs), bool),
                         jnp.asarray(features[unseen].reshape(-1, docs, F)))
    probe = probe._replace(doc_index=jnp.full(probe.features.shape[:2], -1, jnp.int32),
                           clicks=jnp.zeros(probe.features.shape[:2], bool),
                           mask=jnp.ones(probe.features.shape[:2], bool))
    predicted = np.asarray(result.click_model(probe).attraction).ravel()
    scale = result.tables["examination"][0]  # PBM fixes attraction x examination only
    assert np.corrcoef(predicted, attraction[unseen])[0, 1] > 0.97
    assert np.abs(predicted * scale - attraction[unseen]).mean() < 0.06


def test_counting_estimators_match_hand_counts():
    # one query, documents 0, 1, 2 always shown in this order
    clicks = np.array([
        [1, 0, 0],
        [0, 1, 0],
        [0, 0, 0],
        [1, 0, 1],
    ], bool)
    batch = SessionBatch(jnp.tile(jnp.arange(3, dtype=jnp.int32), (4, 1)), jnp.asarray(clicks), jnp.ones((4, 3), bool))
    no_prior = Prior(document=(0.0, 0.0), rank=(0.0, 0.0))
    cascade = fit_counting("cascade", [batch], 3, 3, prior=no_prior).tables
    # examined up to the first click: doc0 in 4 sessions (2 clicks), doc1 in 2 (1), doc2 in 1 (0)
    np.testing.assert_allclose(cascade["attraction"][:3], [2 / 4, 1 / 2, 0 / 1])
    sdbn = fit_counting("sdbn", [batch], 3, 3, prior=no_prior).tables
    # examined up to the last click (all three when none): doc0 4, doc1 3, doc2 2
    np.testing.assert_allclose(sdbn["attraction"][:3], [2 / 4, 1 / 3, 1 / 2])
    # last clicks: doc0 once (session 0) out of 2 clicks, doc1 1/1, doc2 1/1
    np.testing.assert_allclose(sdbn["satisfaction"][:3], [1 / 2, 1, 1])
    dcm = fit_counting("dcm", [batch], 3, 3, prior=no_prior).tables
    np.testing.assert_allclose(dcm["continuation"], [1 - 1 / 2, 1 - 1, 1 - 1])
    with pytest.raises(ValueError, match="counting estimators exist for"):
        fit_counting("pbm", [batch], 3, 3)


@pytest.mark.slow
def test_streaming_source_gives_the_same_fit_as_memory(tmp_path):
    truth, log, batches = toy("dcm", 10, 4, 20_000, seed=1)
    table = sessions_to_table(log.session_id, log.query_id, log.doc_ids, log.clicks)
    atomic_write_parquet(table, tmp_path / "log.parquet")
    documents = DocumentIndex.from_batches(iter_click_log(tmp_path / "log.parquet", 4096))
    source = LogSource(tmp_path / "log.parquet", documents, batch_size=4096)
    streamed = fit_em("dcm", source, documents.size, 4, max_iterations=20, tolerance=0, log_likelihood_tolerance=0)
    # the toy log's dense index is q * docs + d, which is also the sorted (query, doc) order
    in_memory = fit_em("dcm", batches, 40, 4, max_iterations=20, tolerance=0, log_likelihood_tolerance=0)
    np.testing.assert_allclose(streamed.tables["continuation"], in_memory.tables["continuation"], atol=1e-6)
    np.testing.assert_allclose(streamed.tables["attraction"], in_memory.tables["attraction"], atol=1e-6)


@pytest.mark.slow
def test_perplexity_of_the_true_model_matches_its_definition():
    truth, log, batches = toy("pbm", 5, 3, 5_000, seed=0)
    metrics = evaluate(lambda b: assemble("pbm", truth, b), batches)
    probs = truth["attraction"][:-1][log.query_id[:, None] * 3 + log.doc_ids] * truth["examination"]
    c = log.clicks
    per_rank = 2 ** -np.mean(c * np.log2(probs) + (1 - c) * np.log2(1 - probs), axis=0)
    np.testing.assert_allclose(metrics["perplexity_per_rank"], per_rank, rtol=1e-5)
    np.testing.assert_allclose(metrics["perplexity"], per_rank.mean(), rtol=1e-5)
    # for PBM the conditional and the marginal click probabilities coincide
    np.testing.assert_allclose(metrics["conditional_perplexity_per_rank"], per_rank, rtol=1e-5)
    log_likelihood = np.sum(c * np.log(probs) + (1 - c) * np.log(1 - probs), axis=1).mean()
    np.testing.assert_allclose(metrics["log_likelihood"], log_likelihood, rtol=1e-5)


@pytest.mark.slow
def test_the_centred_prior_adds_strength_times_the_mean_and_is_validated():
    """Counting SDBN with the centred prior: attraction = (clicks + s m) / (examinations + s), m the pooled
    click rate of examined documents (examined = at or above the last click), checked by hand."""
    _, log, batches = toy("sdbn", 20, 5, 5_000, seed=6)
    strength = 3.0
    fitted = fit_counting("sdbn", batches, 100, 5, prior=Prior(strength=strength))
    clicks, doc = np.asarray(log.clicks, bool), log.query_id[:, None] * 5 + log.doc_ids
    last = np.where(clicks.any(1), 4 - np.argmax(clicks[:, ::-1], axis=1), 4)
    examined = np.arange(5)[None, :] <= last[:, None]
    clicked_n = np.bincount(doc[clicks], minlength=100)
    examined_n = np.bincount(doc[examined], minlength=100)
    mean = clicked_n.sum() / examined_n.sum()
    expected = (clicked_n + strength * mean) / (examined_n + strength)
    np.testing.assert_allclose(fitted.tables["attraction"][:-1], expected, rtol=1e-9)
    assert default_prior("pbm") == Prior(document=(1.0, 1.0)) and default_prior("dbn") == Prior()
    for bad in (dict(strength=0.0), dict(strength=float("nan")), dict(document=(-1.0, 1.0))):
        with pytest.raises(ValueError, match="Prior"):
            Prior(**bad)


@pytest.mark.slow
def test_em_over_sessions_does_not_depend_on_the_batching():
    """Document counts are summed on the device as integers: cutting the same sessions into other batches
    (here one document is seen 20,000 times per pass) gives the same tables to float64 rounding."""
    truth, log, one_batch = toy("dbn", 5, 4, 20_000, seed=4)
    _, _, many = toy("dbn", 5, 4, 20_000, seed=4, batch_size=1_500)
    first = fit_em("dbn", one_batch, 20, 4, max_iterations=6, tolerance=0, log_likelihood_tolerance=0)
    second = fit_em("dbn", many, 20, 4, max_iterations=6, tolerance=0, log_likelihood_tolerance=0)
    for name in ("attraction", "satisfaction", "continuation"):
        np.testing.assert_allclose(first.tables[name], second.tables[name], rtol=0, atol=1e-9)


@pytest.mark.slow
def test_em_over_sessions_stops_when_a_pass_no_longer_pays():
    """The default stop of EM over sessions (a pass raising the log-likelihood by less than 1e-6 of itself) ends
    within 1e-6 of the tightly converged likelihood, in fewer passes."""
    _, _, batches = toy("dbn", 20, 10, 100_000, seed=11, batch_size=50_000)
    default = fit_em("dbn", batches, 200, 10, max_iterations=2_000, tolerance=1e-9)
    tight = fit_em("dbn", batches, 200, 10, max_iterations=2_000, tolerance=1e-9, log_likelihood_tolerance=1e-11)
    assert default.converged and default.history[-1]["passes"] < tight.history[-1]["passes"]
    final = evaluate(default.click_model, batches)["log_likelihood"]
    assert final == pytest.approx(evaluate(tight.click_model, batches)["log_likelihood"], rel=1e-6)

"""Every propensity estimator is consistent: fed *expected* clicks, it returns the true examination curve.

Each design lists the sessions of a log with their probability (weight) and, instead of sampled clicks,
the exact click probabilities of the simulator's click model for the shown documents. The counts are
then the infinite-data limit of a log's counts, and an estimator's answer on them is its limit: it
must equal the truth (1e-4). The designs use the real list lengths of MQ2008 (8 or 10 shown documents
per query in Fold1, so the low ranks are only reached by some queries) and of the synthetic set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from click_models.counts import aggregate_cells_from_arrays
from click_models.logs import DocumentIndex
from simulators.datasets import load_dataset
from simulators.simulation import SimulationConfig, session_click_model
from ultr.estimators import ESTIMATORS

MQ2008 = Path(__file__).resolve().parents[2] / "shared" / "data" / "mq2008" / "Fold1"
K = 10


def _data(name: str, max_queries: int = 300):
    if name == "mq2008":
        if not MQ2008.exists():
            pytest.skip(f"real data not found at {MQ2008}")
        split = load_dataset(str(MQ2008)).train
    else:
        split = load_dataset("synthetic:queries=200,docs=15,seed=3").train
    offsets = split.query_offsets
    queries = range(min(split.num_queries, max_queries))
    return [split.labels[offsets[q]:offsets[q + 1]] for q in queries]


def _design(lists, kind: str):
    """Sessions ``(doc rows [S, K], shown [S, K], intervention [S], weight [S], query [S])`` of one design.

    ``cyclic``: every rotation of each query's list (each document once at each rank it can reach: the
    limit of a uniformly random ranking, RandTop-k over the whole list, or many logging policies);
    ``swap``: the list unchanged (code 0), plus rank 1 swapped with rank k = 2..n with chance
    ``1 / (n - 1)`` each (code k), as the simulator draws it.
    """
    rows, shown, codes, weights, queries = [], [], [], [], []
    first = 0
    for q, labels in enumerate(lists):
        n = min(len(labels), K)
        order = np.arange(first, first + n)
        sessions = []
        if kind == "cyclic":
            sessions = [(np.roll(order, -shift), 1, 1.0) for shift in range(n)]
        elif kind == "swap":
            sessions = [(order, 0, 1.0)]
            for k in range(2, n + 1):
                swapped = order.copy()
                swapped[[0, k - 1]] = swapped[[k - 1, 0]]
                sessions.append((swapped, k, 1.0 / (n - 1)))
        for session, code, weight in sessions:
            row = np.full(K, -1)
            row[:n] = session
            rows.append(row)
            shown.append(np.arange(K) < n)
            codes.append(code)
            weights.append(weight)
            queries.append(q)
        first += len(labels)
    return (np.array(rows), np.array(shown), np.array(codes), np.array(weights), np.array(queries))


def _expected_counts(lists, kind: str, config: SimulationConfig, weight: float = 1e6, binary: bool = False):
    """The expected counts of ``weight`` sessions of the design under ``config``'s click model (a large
    log: the EM prior's pseudo-counts vanish in the limit), and the true examination."""
    rows, shown, codes, weights, queries = _design(lists, kind)
    labels = np.concatenate(lists)
    if binary:
        labels = (labels > 0).astype(labels.dtype)
    max_label = 1 if binary else int(labels.max())
    shown_labels = np.where(shown, labels[np.maximum(rows, 0)], 0)
    params = config.rank_parameters()
    model = session_click_model(config.click_model, shown_labels, shown, params, max_label, config.eps_pos,
                                config.eps_neg)
    expected = np.asarray(model.click_probs(), np.float64) * shown
    num_documents = len(labels)
    doc = np.where(shown, rows, num_documents)
    counts = aggregate_cells_from_arrays([(doc, expected, shown, codes, weights * weight)], num_documents, K,
                                         by_intervention=True)
    query_of_row = np.repeat(np.arange(len(lists)), [len(x) for x in lists])
    counts.documents = DocumentIndex(query_of_row, np.arange(num_documents))
    truth = params["examination"] / params["examination"][0]
    return counts, truth


def _limit(estimator: str, counts):
    return np.asarray(ESTIMATORS[estimator].estimate(counts, bootstrap=0).examination)


@pytest.mark.parametrize("data", ["mq2008", "synthetic"])
@pytest.mark.parametrize("estimator", ["ctr", "randtopk", "pivot", "adjacent", "allpairs", "em"])
@pytest.mark.slow
def test_estimators_return_the_truth_from_expected_clicks(data, estimator):
    lists = _data(data)
    counts, truth = _expected_counts(lists, "cyclic", SimulationConfig(click_model="pbm", eta=1.0))
    if estimator == "ctr":  # CTR applies where relevance does not depend on the rank: a random ranking
        counts.intervention[:] = 0
        counts.sessions = {0: counts.num_sessions}
    np.testing.assert_allclose(_limit(estimator, counts), truth, atol=1e-4)


@pytest.mark.parametrize("data", ["mq2008", "synthetic"])
@pytest.mark.slow
def test_swap_returns_the_truth_when_lists_differ_in_length(data):
    lists = _data(data)
    counts, truth = _expected_counts(lists, "swap", SimulationConfig(click_model="pbm", eta=1.0))
    np.testing.assert_allclose(_limit("swap", counts), truth, atol=1e-4)


@pytest.mark.parametrize("data", ["mq2008", "synthetic"])
def test_trust_bias_mixture_returns_the_truth(data):
    # the mixture is a two-class model: binary relevance, relevant documents clicked with epsilon_pos
    lists = _data(data)
    config = SimulationConfig(click_model="trust_bias", eta=1.0, eps_pos=1.0, eps_neg=0.0)
    counts, truth = _expected_counts(lists, "cyclic", config, binary=True)
    estimate = ESTIMATORS["trust-bias"].estimate(counts, bootstrap=0)
    np.testing.assert_allclose(estimate.examination, truth, atol=1e-4)
    params = config.rank_parameters()
    np.testing.assert_allclose(estimate.extra["click_if_irrelevant"],
                               params["examination"] * params["epsilon_neg"], atol=1e-4)


def test_pooling_over_lists_of_different_lengths_would_be_biased():
    """The check has teeth: the CTR ratio pooled over every query (the old RandTop-k) misses the truth."""
    lists = _data("mq2008")
    if len({min(len(x), K) for x in lists}) < 2:
        pytest.skip("every list has the same length")
    counts, truth = _expected_counts(lists, "cyclic", SimulationConfig(click_model="pbm", eta=1.0))
    shown, clicks = counts.per_rank()
    pooled = (clicks / shown) / (clicks[0] / shown[0])
    assert np.abs(pooled - truth).max() > 1e-3

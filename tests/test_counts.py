"""The one aggregation of click logs (ClickCounts) against brute force, and estimators as functions of counts."""

import numpy as np
import pytest

from click_models.counts import ClickCounts, aggregate_cells_from_arrays
from click_models.logs import DocumentIndex, atomic_write_parquet, sessions_to_table
from ultr.estimators import ESTIMATORS


def _random_batches(seed=0, batches=3, B=50, K=5, docs=7):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(batches):
        doc = rng.integers(0, docs + 1, (B, K))  # row `docs` is the unseen row
        mask = rng.uniform(size=(B, K)) < 0.85
        clicks = (rng.uniform(size=(B, K)) < 0.3) & mask
        code = rng.integers(0, 3, B)
        out.append((doc, clicks, mask, code))
    return out


@pytest.mark.parametrize("by_previous_click", [False, True])
@pytest.mark.parametrize("by_intervention", [False, True])
def test_counts_match_brute_force(by_previous_click, by_intervention, monkeypatch):
    batches = _random_batches()
    expected: dict = {}
    for doc, clicks, mask, code in batches:
        for b in range(doc.shape[0]):
            last = 0
            for k in range(doc.shape[1]):
                if not mask[b, k]:
                    continue
                key = (doc[b, k], k, last if by_previous_click else 0, code[b] if by_intervention else 0)
                n, c = expected.get(key, (0, 0))
                expected[key] = (n + 1, c + int(clicks[b, k]))
                if clicks[b, k]:
                    last = k + 1
    for limit in (10**9, 0):  # dense and sparse accumulation
        monkeypatch.setattr("click_models.counts.DENSE_CELL_LIMIT", limit)
        counts = aggregate_cells_from_arrays(iter(batches), 7, 5, by_previous_click=by_previous_click,
                                             by_intervention=by_intervention)
        got = {(d, r, p, i): (n, c) for d, r, p, i, n, c in zip(counts.doc, counts.rank, counts.previous,
                                                                counts.intervention, counts.impressions,
                                                                counts.clicks)}
        assert got == expected
    sessions = sum(int(m.any(axis=1).sum()) for _, _, m, _ in batches)
    assert counts.num_sessions == sessions


def test_counts_from_a_log_number_documents_by_query_and_doc(tmp_path):
    table = sessions_to_table(np.arange(3), np.array([5, 5, 6]), np.array([[10, 11], [11, 10], [10, 12]]),
                              np.array([[True, False], [True, True], [False, False]]),
                              intervention=np.array([0, 1, 0]))
    atomic_write_parquet(table, tmp_path / "part-0.parquet")
    counts = ClickCounts.from_log(tmp_path, by_intervention=True)
    assert isinstance(counts.documents, DocumentIndex) and counts.documents.size == 4
    n, c = counts.document_matrices()
    np.testing.assert_array_equal(n, [[1, 1], [1, 1], [1, 0], [0, 1]])  # (5,10) (5,11) (6,10) (6,12)
    np.testing.assert_array_equal(c, [[1, 1], [1, 0], [0, 0], [0, 0]])
    assert counts.sessions == {0: 2, 1: 1}


def _expected_counts(theta, attraction, impressions, codes=None):
    """Counts whose clicks are their expectation under PBM: impressions x attraction x examination."""
    D, K = impressions.shape
    doc, rank = np.nonzero(impressions)
    n = impressions[doc, rank].astype(float)
    return ClickCounts(doc=doc, rank=rank, previous=np.zeros_like(doc),
                       intervention=np.zeros_like(doc) if codes is None else codes[doc, rank],
                       impressions=n, clicks=n * attraction[doc] * theta[rank], num_documents=D, list_size=K,
                       sessions={0: int(n.sum())})


THETA = np.array([1.0, 0.7, 0.45, 0.3, 0.2])


@pytest.mark.parametrize("name", ["randtopk", "pivot", "adjacent", "allpairs", "em"])
def test_estimators_fed_expected_clicks_return_the_truth(name):
    rng = np.random.default_rng(0)
    D, K = 40, len(THETA)
    attraction = rng.uniform(0.1, 0.9, D)
    impressions = np.full((D, K), 1e6)  # every document at every rank, equally (randomised)
    codes = np.ones((D, K), np.int64) if name == "randtopk" else None
    counts = _expected_counts(THETA, attraction, impressions, codes)
    if name == "randtopk":
        counts.sessions = {1: int(impressions.sum())}
    result = ESTIMATORS[name].estimate(counts, bootstrap=0)
    np.testing.assert_allclose(result.examination, THETA, atol=1e-4)


def test_harvesting_is_consistent_when_documents_meet_ranks_unevenly():
    # documents shown at two or three ranks with different impressions (several logging policies)
    rng = np.random.default_rng(1)
    D, K = 60, len(THETA)
    impressions = np.zeros((D, K))
    for d in range(D):
        ranks = rng.choice(K, size=rng.integers(2, 4), replace=False)
        impressions[d, ranks] = rng.integers(1_000, 100_000, len(ranks))
    counts = _expected_counts(THETA, rng.uniform(0.1, 0.9, D), impressions)
    for name in ("pivot", "adjacent", "allpairs"):
        result = ESTIMATORS[name].estimate(counts, bootstrap=0)
        np.testing.assert_allclose(result.examination, THETA, atol=1e-4, err_msg=name)

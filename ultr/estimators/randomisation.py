"""Estimators from click-through rates per rank: plain CTR, RandTop-k and swap interventions.

Bootstrap: the clicked and the unclicked impressions of each (query, document, rank)
cell are resampled as Poisson counts (the Poisson bootstrap over sessions, cell by cell).
"""

from __future__ import annotations

import numpy as np

from click_models.counts import ClickCounts

from .base import Estimator, PropensityEstimate, normalise, percentiles, register_estimator


def _ratio(numerator, denominator):
    with np.errstate(divide="ignore", invalid="ignore"):
        return numerator / denominator


def _matched_ratio(group: np.ndarray, rank: np.ndarray, target: np.ndarray, reference: np.ndarray,
                   clicks: np.ndarray, impressions: np.ndarray, K: int, bootstrap: int, seed: int) -> np.ndarray:
    """``theta_k = sum_g c_g(k) / sum_g n_g(k) r_g`` ``[B + 1, K]``: the CTR of the target cells at rank k
    over the reference CTR ``r_g`` of the same groups, weighted by their impressions at rank k.

    Cells ``[N]`` lie in group ``group`` at ``rank``; ``target`` and ``reference`` ``[N]`` mark the cells
    of the two sides. Pooling over every group instead weights each rank by the groups that reach it
    (lists of different lengths), which is biased; matching makes the limit exactly ``rho_k / rho_ref``.
    Row 0 is the estimate, rows 1.. Poisson bootstrap replicates (cell by cell).
    """
    groups, group = np.unique(group, return_inverse=True)
    G = len(groups)
    slot = group * K + rank
    rng = np.random.default_rng(seed)
    clicks = np.asarray(clicks, np.float64)
    unclicked = np.asarray(impressions, np.float64) - clicks
    target_slot, reference_group = slot[target], group[reference]
    out = np.empty((bootstrap + 1, K))
    for b in range(bootstrap + 1):  # one replicate at a time: memory follows the cells, not B x cells
        c = clicks if b == 0 else rng.poisson(clicks).astype(np.float64)
        n = c + (unclicked if b == 0 else rng.poisson(unclicked))
        ct = np.bincount(target_slot, weights=c[target], minlength=G * K).reshape(G, K)
        nt = np.bincount(target_slot, weights=n[target], minlength=G * K).reshape(G, K)
        rc = np.bincount(reference_group, weights=c[reference], minlength=G)
        rn = np.bincount(reference_group, weights=n[reference], minlength=G)
        has_reference = rn > 0
        r = np.where(has_reference, rc / np.where(has_reference, rn, 1.0), 0.0)
        out[b] = _ratio((ct * has_reference[:, None]).sum(axis=0), (nt * r[:, None]).sum(axis=0))
    return out


def _query_groups(counts: ClickCounts) -> np.ndarray:
    """The query of each cell's document ``[N]`` (the document itself when the counts carry no index)."""
    if counts.documents is None:
        return counts.doc.astype(np.int64)
    _, query_of_row = np.unique(counts.documents.query_ids, return_inverse=True)
    query_of_row = np.append(query_of_row, query_of_row.max(initial=-1) + 1)  # the unseen row: its own group
    return query_of_row[counts.doc]


class _RankCTR(Estimator):
    """CTR per rank over the selected cells, compared with rank 1 within each query, normalised at rank 1.

    ``theta_k = sum_q c_q(k) / sum_q n_q(k) ctr_q(1)``: when lists have different lengths, only the longer
    lists reach the lower ranks, and pooling the click rates of all queries per rank would mix the
    relevance of those queries into the propensity.
    """

    def select(self, counts: ClickCounts) -> np.ndarray:
        return np.ones(len(counts.doc), bool)

    def sessions_used(self, counts: ClickCounts) -> int:
        return counts.num_sessions

    def estimate(self, counts, *, bootstrap=200, seed=0):
        selected = counts.select(self.select(counts))
        sessions = self.sessions_used(counts)
        if sessions == 0 or len(selected.doc) == 0:
            raise self.missing()
        everything = np.ones(len(selected.doc), bool)
        theta = normalise(_matched_ratio(_query_groups(selected), selected.rank, everything, selected.rank == 0,
                                         selected.clicks, selected.impressions, counts.list_size, bootstrap, seed))
        low, high = percentiles(theta[1:]) if bootstrap > 0 else (None, None)
        return PropensityEstimate(self.name, theta[0], low, high, sessions)


@register_estimator
class CTR(_RankCTR):
    """Click-through rate per rank (biased by relevance unless the rankings are random: the baseline)."""

    name = "ctr"


@register_estimator
class RandTopK(_RankCTR):
    """CTR per rank over RandTop-k sessions, where relevance no longer depends on the rank (Joachims et al., WSDM 2017).

    As for :class:`CTR`, rank k is compared with rank 1 within each query (lists of different lengths).
    """

    name = "randtopk"
    needs = "RandTop-k sessions (intervention = 1): simulate with --intervention randtopk"
    by_intervention = True

    def select(self, counts):
        return counts.intervention == 1

    def simulation_problem(self, config):
        if config.intervention != "randtopk" or config.intervention_rate == 0:
            return f"the {self.name} estimator needs {self.needs}"
        return None

    def sessions_used(self, counts):
        return counts.sessions.get(1, 0)


@register_estimator
class Swap(Estimator):
    """The top document's CTR at rank k after a swap with rank 1, over its CTR at rank 1 without intervention (Joachims et al. 2017; Wang et al., WSDM 2018).

    Each document is compared with itself: ``theta_k = sum_d c_d(k) / sum_d n_d(k) ctr_d(1)``, so queries
    weigh the same at rank k and in the reference whatever the chance that a query's swap reaches rank k.
    """

    name = "swap"
    needs = ("swap sessions (intervention = k >= 2) and sessions without intervention: simulate with "
             "--intervention swap --intervention-rate below 1")
    by_intervention = True

    def simulation_problem(self, config):
        if config.intervention != "swap" or not 0 < config.intervention_rate < 1:
            return f"the {self.name} estimator needs {self.needs}"
        return None

    def estimate(self, counts, *, bootstrap=200, seed=0):
        K = counts.list_size
        # in a session with code k the original top document sits at rank k
        swapped = (counts.intervention >= 2) & (counts.rank == counts.intervention - 1)
        reference = (counts.intervention == 0) & (counts.rank == 0)
        sessions = sum(v for code, v in counts.sessions.items() if code >= 2)
        if sessions == 0:
            raise self.missing()
        if counts.impressions[reference].sum() == 0:
            raise self.missing("no session without intervention")
        cells = counts.select(swapped | reference)
        is_reference = cells.intervention == 0
        theta = _matched_ratio(cells.doc.astype(np.int64), cells.rank, ~is_reference, is_reference, cells.clicks,
                               cells.impressions, K, bootstrap, seed)
        theta[:, 0] = 1.0  # rank 1 is the reference itself
        low, high = percentiles(theta[1:]) if bootstrap > 0 else (None, None)
        return PropensityEstimate(self.name, theta[0], low, high, sessions)

"""Estimators from click-through rates per rank: plain CTR, RandTop-k and swap interventions.

Bootstrap: the clicked and the unclicked impressions of each rank are
resampled as Poisson counts (the Poisson bootstrap over sessions, cell by cell).
"""

from __future__ import annotations

import numpy as np

from click_models.counts import ClickCounts

from .base import Estimator, PropensityEstimate, normalise, percentiles, register_estimator


def _replicates(clicks: np.ndarray, impressions: np.ndarray, bootstrap: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """``[B + 1, ...]`` click and impression totals: the observed ones, then Poisson replicates."""
    c = np.asarray(clicks, np.float64)
    u = np.asarray(impressions, np.float64) - c
    c_rep = rng.poisson(c, (bootstrap,) + c.shape).astype(np.float64)
    u_rep = rng.poisson(u, (bootstrap,) + u.shape).astype(np.float64)
    return np.concatenate([c[None], c_rep]), np.concatenate([(c + u)[None], c_rep + u_rep])


def _ratio(numerator, denominator):
    with np.errstate(divide="ignore", invalid="ignore"):
        return numerator / denominator


class _RankCTR(Estimator):
    """CTR per rank over the selected cells, normalised at rank 1."""

    def select(self, counts: ClickCounts) -> np.ndarray:
        return np.ones(len(counts.doc), bool)

    def sessions_used(self, counts: ClickCounts) -> int:
        return counts.num_sessions

    def estimate(self, counts, *, bootstrap=200, seed=0):
        selected = counts.select(self.select(counts))
        sessions = self.sessions_used(counts)
        if sessions == 0 or len(selected.doc) == 0:
            raise self.missing()
        shown, clicks = selected.per_rank()
        c, n = _replicates(clicks, shown, bootstrap, np.random.default_rng(seed))
        theta = normalise(_ratio(c, n))
        low, high = percentiles(theta[1:]) if bootstrap > 0 else (None, None)
        return PropensityEstimate(self.name, theta[0], low, high, sessions)


@register_estimator
class CTR(_RankCTR):
    """Click-through rate per rank (biased by relevance: the baseline)."""

    name = "ctr"


@register_estimator
class RandTopK(_RankCTR):
    """CTR per rank over RandTop-k sessions, where relevance no longer depends on the rank (Joachims et al., WSDM 2017)."""

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
    """The top document's CTR at rank k after a swap with rank 1, over its CTR at rank 1 without intervention (Joachims et al. 2017; Wang et al., WSDM 2018)."""

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
        swapped = counts.select((counts.intervention >= 2) & (counts.rank == counts.intervention - 1))
        reference = counts.select((counts.intervention == 0) & (counts.rank == 0))
        sessions = sum(v for code, v in counts.sessions.items() if code >= 2)
        if sessions == 0:
            raise self.missing()
        if reference.impressions.sum() == 0:
            raise self.missing("no session without intervention")
        shown, clicks = swapped.per_rank()
        reference_shown = np.zeros(K)
        reference_clicks = np.zeros(K)
        reference_shown[0], reference_clicks[0] = reference.impressions.sum(), reference.clicks.sum()
        rng = np.random.default_rng(seed)
        c, n = _replicates(clicks + reference_clicks, shown + reference_shown, bootstrap, rng)
        theta = normalise(_ratio(c, n))
        low, high = percentiles(theta[1:]) if bootstrap > 0 else (None, None)
        return PropensityEstimate(self.name, theta[0], low, high, sessions)

"""Intervention harvesting: documents that several logging policies showed at different ranks.

A (query, document) shown at ranks k and k' gives the ratio theta_k / theta_k'
(Agarwal et al., WSDM 2019; Fang et al., SIGIR 2019). Pivot-One uses the pairs
(1, k), Adjacent-Chain multiplies the ratios of neighbouring ranks, All-Pairs
fits every pair by weighted least squares in log space (an extremum estimator).
Bootstrap: over (query, document) clusters.
"""

from __future__ import annotations

import abc

import numpy as np

from .base import Estimator, PropensityEstimate, percentiles, register_estimator

def shows_documents_at_several_ranks(config) -> bool:
    """Whether logs simulated with ``config`` move documents between ranks (several or stochastic
    policies, or an intervention)."""
    from simulators.policies import POLICIES

    return (len(config.policies) > 1 or any(POLICIES[p].stochastic for p in config.policies)
            or (config.intervention is not None and config.intervention_rate > 0))


HARVESTING_NEEDS = ("the same documents shown at different ranks by several logging policies: simulate with "
                    "--policy production,production,... or a stochastic policy")


def _pair_ratios(n: np.ndarray, c: np.ndarray, doc_weights: np.ndarray | None = None):
    """Weighted CTR ratios ``r[k, k'] = theta_k / theta_k'`` from documents shown at both ranks."""
    K = n.shape[1]
    w_doc = np.ones(len(n)) if doc_weights is None else doc_weights
    numerator = np.zeros((K, K))
    support = np.zeros((K, K))
    for k in range(K):
        for j in range(K):
            if j == k:
                continue
            both = (n[:, k] > 0) & (n[:, j] > 0)
            if not both.any():
                continue
            # harmonic weights: each document counts by how much it was seen at both ranks
            weight = w_doc[both] * n[both, k] * n[both, j] / (n[both, k] + n[both, j])
            numerator[k, j] = np.sum(weight * c[both, k] / n[both, k])
            support[k, j] = np.sum(weight)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = numerator / numerator.T
    return ratio, support


class _Harvesting(Estimator):
    needs = HARVESTING_NEEDS
    default_bootstrap = 100

    def simulation_problem(self, config):
        return None if shows_documents_at_several_ranks(config) else f"the {self.name} estimator needs {self.needs}"

    @staticmethod
    @abc.abstractmethod
    def combine(ratio: np.ndarray, support: np.ndarray) -> np.ndarray:
        """Examination ``[K]`` (``theta_1 = 1``) from the pairwise ratios ``r[k, k'] = theta_k / theta_k'``."""

    def estimate(self, counts, *, bootstrap=100, seed=0):
        n, c = counts.document_matrices()
        ratio, support = _pair_ratios(n, c)
        if not np.isfinite(ratio[1:, 0]).any() and not np.isfinite(np.diag(ratio, -1)).any():
            raise self.missing("no document of this log was shown at two different ranks")
        theta = self.combine(ratio, support)
        rng = np.random.default_rng(seed)
        replicates = []
        for _ in range(bootstrap):  # cluster bootstrap over (query, document)
            r, s = _pair_ratios(n, c, rng.poisson(1.0, len(n)).astype(np.float64))
            replicates.append(self.combine(r, s))
        low, high = percentiles(np.array(replicates)) if bootstrap else (None, None)
        return PropensityEstimate(self.name, theta, low, high, counts.num_sessions)


@register_estimator
class Pivot(_Harvesting):
    """Pivot-One harvesting: theta_k / theta_1 from documents shown at rank 1 and rank k (Agarwal et al., WSDM 2019)."""

    name = "pivot"

    @staticmethod
    def combine(ratio, support):
        return np.concatenate([[1.0], ratio[1:, 0]])


@register_estimator
class Adjacent(_Harvesting):
    """Adjacent-Chain harvesting: products of the ratios of neighbouring ranks (Agarwal et al., WSDM 2019)."""

    name = "adjacent"

    @staticmethod
    def combine(ratio, support):
        return np.cumprod(np.concatenate([[1.0], np.diag(ratio, -1)]))


@register_estimator
class AllPairs(_Harvesting):
    """All-Pairs harvesting: every pair of ranks by weighted least squares in log space (Agarwal et al., WSDM 2019)."""

    name = "allpairs"

    @staticmethod
    def combine(ratio, support):
        # weighted least squares on log theta_k - log theta_j = log r[k, j], theta_1 = 1
        K = ratio.shape[0]
        k, j = np.triu_indices(K, 1)
        usable = (support[k, j] > 0) & np.isfinite(ratio[k, j]) & (ratio[k, j] > 0)
        if not usable.any():
            return np.full(K, np.nan)
        k, j = k[usable], j[usable]
        A = np.zeros((len(k), K))
        A[np.arange(len(k)), k], A[np.arange(len(k)), j] = 1.0, -1.0
        w = np.sqrt(support[k, j])
        solution, *_ = np.linalg.lstsq(A[:, 1:] * w[:, None], np.log(ratio[k, j]) * w, rcond=None)
        return np.exp(np.concatenate([[0.0], solution]))

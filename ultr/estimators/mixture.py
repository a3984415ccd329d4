"""Trust bias from documents shown at several ranks: a two-class mixture fitted by EM."""

from __future__ import annotations

import numpy as np

from .base import Estimator, PropensityEstimate, normalise, percentiles, register_estimator
from .harvesting import HARVESTING_NEEDS, shows_documents_at_several_ranks


def _trust_bias_em(n: np.ndarray, c: np.ndarray, doc_weights: np.ndarray, iterations: int = 500,
                   tolerance: float = 1e-8):
    """EM for a two-class mixture: each (query, document) is relevant (clicked at rank k with
    ``a_k``) or not (``b_k``); ``n``, ``c`` are impressions and clicks ``[documents, K]``."""
    shown = n.sum(0)
    ctr = np.divide(c.sum(0), shown, out=np.zeros(n.shape[1]), where=shown > 0)
    a, b, prior = np.clip(1.5 * ctr, 1e-3, 0.999), np.clip(0.3 * ctr, 1e-4, 0.99), 0.5
    for _ in range(iterations):
        log_rel = np.log(prior) + c @ np.log(a) + (n - c) @ np.log1p(-a)
        log_irr = np.log1p(-prior) + c @ np.log(b) + (n - c) @ np.log1p(-b)
        w = doc_weights / (1.0 + np.exp(np.clip(log_irr - log_rel, -700, 700)))  # P(relevant | clicks)
        v = doc_weights - w
        new_a = np.clip((w @ c + 1e-9) / (w @ n + 2e-9), 1e-6, 1 - 1e-6)
        new_b = np.clip((v @ c + 1e-9) / (v @ n + 2e-9), 1e-6, 1 - 1e-6)
        prior = float(np.clip(w.sum() / doc_weights.sum(), 1e-6, 1 - 1e-6))
        change = max(np.abs(new_a - a).max(), np.abs(new_b - b).max())
        a, b = new_a, new_b
        if change < tolerance:
            break
    if a[0] < b[0]:  # label switching: the relevant class clicks more
        a, b = b, a
    return a, b


@register_estimator
class TrustBiasMixture(Estimator):
    """Click probabilities of relevant and non-relevant documents per rank from documents shown at several ranks (Agarwal et al., WWW 2019).

    Each (query, document) is relevant or not (binary relevance); a relevant
    document at rank k is clicked with ``a_k = theta_k eps+_k``, a non-relevant one
    with ``b_k = theta_k eps-_k``. A two-class mixture fitted by EM over the
    documents identifies ``a`` and ``b``; the estimate holds ``examination = a / a_1``
    with ``epsilon_pos``/``epsilon_neg`` scaled so that ``examination * epsilon_pos = a``
    and ``examination * epsilon_neg = b`` (what the affine correction of Vardasbi et
    al., SIGIR 2020 needs), plus ``a`` and ``b``. Bootstrap: over documents.
    """

    name = "trust-bias"
    needs = HARVESTING_NEEDS
    default_bootstrap = 30

    def simulation_problem(self, config):
        return None if shows_documents_at_several_ranks(config) else f"the {self.name} estimator needs {self.needs}"

    def estimate(self, counts, *, bootstrap=30, seed=0):
        n, c = counts.document_matrices()
        if not ((n > 0).sum(axis=1) > 1).any():
            raise self.missing("no document of this log was shown at two different ranks")
        a, b = _trust_bias_em(n, c, np.ones(len(n)))
        rng = np.random.default_rng(seed)
        replicates = [normalise(_trust_bias_em(n, c, rng.poisson(1.0, len(n)).astype(np.float64), 200)[0])
                      for _ in range(bootstrap)]
        low, high = percentiles(np.array(replicates)) if bootstrap else (None, None)
        theta = a / a[0]
        extra = {"click_if_relevant": a, "click_if_irrelevant": b, "epsilon_pos": a / theta, "epsilon_neg": b / theta}
        return PropensityEstimate(self.name, theta, low, high, counts.num_sessions, extra)

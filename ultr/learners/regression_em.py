"""Regression EM: the position-based model fitted by EM with a ranker for the relevance."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ..losses import regression_em_loss, regression_em_posteriors
from ..options import option, unit_interval
from .base import Learner, Statistic, register_learner


@register_learner
class RegressionEM(Learner):
    """Regression EM (Wang et al., WSDM 2018) under the position-based model.

    E-step per batch: ``P(R=1 | C=0) = g (1 - t) / (1 - t g)`` and
    ``P(E=1 | C=0) = t (1 - g) / (1 - t g)`` with ``g = sigmoid(score)``; the
    ranker regresses (sigmoid cross-entropy) on ``P(R=1 | C)`` and the
    examination ``t`` moves towards the batch's M-step estimate (rate ``update_rate``).
    See :func:`ultr.losses.regression_em_loss`.
    """

    name = "rem"
    losses = ("sigmoid",)
    estimates = "propensities"

    @dataclasses.dataclass(frozen=True)
    class Options:
        update_rate: float = option(0.05, "rem, paird: share by which the bias statistics move towards each "
                                    "batch's estimate", check=unit_interval, requirement="in (0, 1]")

    def __init__(self, ranker, list_size, loss=None, update_rate: float = 0.05):
        super().__init__(ranker, list_size, loss)
        self.examination = Statistic(jnp.full(list_size, 0.5))
        self.step = update_rate

    def loss(self, features, batch):
        return regression_em_loss(self.ranker(features), batch.clicks, self.examination[...], where=batch.mask)

    def update_statistics(self, features, batch):
        _, p_examined = jax.lax.stop_gradient(
            regression_em_posteriors(self.ranker(features), batch.clicks, self.examination[...], where=batch.mask))
        shown = jnp.sum(batch.mask, axis=0)
        estimate = jnp.sum(p_examined, axis=0) / jnp.maximum(shown, 1)
        theta = self.examination[...]
        self.examination[...] = jnp.where(shown > 0, (1 - self.step) * theta + self.step * estimate, theta)

    def propensities(self):
        theta = np.asarray(self.examination[...], np.float64)
        return theta / theta[0]

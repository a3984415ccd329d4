"""The dual learning algorithm: a propensity model and the ranker, learned jointly."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..losses import dla_losses
from ..options import option, positive
from .base import Learner, register_learner


@register_learner
class DLA(Learner):
    """Dual learning algorithm (Ai et al., SIGIR 2018).

    A propensity model (one logit per rank) and the ranker are learned jointly:
    the ranker's softmax loss weights clicks by ``p_1 / p_k`` of the propensity
    softmax, the propensity model's softmax loss weights clicks by ``r_1 / r_k``
    of the ranker's softmax over the shown list; both weights are clipped at
    ``max_weight`` and carry no gradient. See :func:`ultr.losses.dla_losses`.
    """

    name = "dla"
    has_bias_model = True
    estimates = "propensities"

    @dataclasses.dataclass(frozen=True)
    class Options:
        max_weight: float = option(100.0, "DLA: largest inverse weight", check=positive, requirement="positive")

    def __init__(self, ranker, list_size, loss=None, max_weight: float = 100.0):
        super().__init__(ranker, list_size, loss)
        self.propensity_logits = nnx.Param(jnp.zeros(list_size))
        self.max_weight = max_weight

    def loss(self, features, batch):
        ranker_loss, propensity_loss = dla_losses(self.ranker(features), batch.clicks, self.propensity_logits[...],
                                                  where=batch.mask, max_weight=self.max_weight)
        return ranker_loss + propensity_loss

    def propensities(self):
        logits = np.asarray(self.propensity_logits[...], np.float64)
        return np.exp(logits - logits[0])

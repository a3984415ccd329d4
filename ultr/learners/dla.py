"""The dual learning algorithm: a propensity model and the ranker, learned jointly."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..losses import dla_losses, position_balancing
from ..options import option, positive
from .base import Learner, Statistic, register_learner


@register_learner
class DLA(Learner):
    """Dual learning algorithm (Ai et al., SIGIR 2018).

    A propensity model (one logit per rank) and the ranker are learned jointly:
    the ranker's softmax loss weights clicks by ``p_1 / p_k`` of the propensity
    softmax, the propensity model's softmax loss weights clicks by ``r_1 / r_k``
    of the ranker's softmax over the shown list; both weights are clipped at
    ``max_weight`` and carry no gradient. See :func:`ultr.losses.dla_losses`.

    Two remedies for propensities that come out biased under a deterministic
    logging policy (see ``docs/learners.md``):

    * ``average_propensities``: report the propensity model averaged over the
      steps of the last pass (Polyak-Ruppert averaging) instead of its final state;
    * ``balance_positions``: a linear position model ``q(rank | features)`` is
      fitted beside the ranker, and both losses weight each shown document by
      ``P(rank) / q(rank | features)`` (:func:`ultr.losses.position_balancing`),
      so that in the weighted log the features carry no information about the rank.
    """

    name = "dla"
    has_bias_model = True
    estimates = "propensities"

    @dataclasses.dataclass(frozen=True)
    class Options:
        max_weight: float = option(100.0, "DLA: largest inverse weight", check=positive, requirement="positive")
        average_propensities: bool = option(False, "DLA: report the propensity model averaged over the last pass")
        balance_positions: bool = option(False, "DLA: weight documents by P(rank) / q(rank | features) of a "
                                                "position model fitted beside the ranker")

    def __init__(self, ranker, list_size, loss=None, max_weight: float = 100.0, average_propensities: bool = False,
                 balance_positions: bool = False, *, num_features: int | None = None):
        super().__init__(ranker, list_size, loss)
        self.propensity_logits = nnx.Param(jnp.zeros(list_size))
        self.max_weight = max_weight
        self.average_propensities = bool(average_propensities)
        self.balance_positions = bool(balance_positions)
        if self.average_propensities:
            self.propensity_sum = Statistic(jnp.zeros(list_size))
            self.averaged_steps = Statistic(jnp.zeros(()))
        if self.balance_positions:
            if num_features is None:
                raise ValueError("balance_positions: the dla learner needs the number of features")
            # zero weights: q uniform at the start, so every document starts with weight 1
            self.position_model = nnx.Linear(num_features, list_size, kernel_init=nnx.initializers.zeros_init(),
                                             rngs=nnx.Rngs(0))

    @classmethod
    def build(cls, ranker, list_size, *, loss=None, options=None, propensities=None, num_features=None,
              seed=0):
        options = options if options is not None else cls.Options()
        return cls(ranker, list_size, loss, **dataclasses.asdict(options), num_features=num_features)

    def loss(self, features, batch):
        weights, position_loss = None, 0.0
        if self.balance_positions:
            weights, position_loss = position_balancing(self.position_model(jax.lax.stop_gradient(features)),
                                                        where=batch.mask, max_weight=self.max_weight)
        ranker_loss, propensity_loss = dla_losses(self.ranker(features), batch.clicks, self.propensity_logits[...],
                                                  where=batch.mask, weights=weights, max_weight=self.max_weight)
        return ranker_loss + propensity_loss + position_loss

    def update_statistics(self, features, batch) -> None:
        if self.average_propensities:
            logits = self.propensity_logits[...]
            self.propensity_sum[...] = self.propensity_sum[...] + jnp.exp(logits - logits[0])
            self.averaged_steps[...] = self.averaged_steps[...] + 1.0

    def begin_pass(self, epoch: int) -> None:
        if self.average_propensities:  # average over the last pass only: restart at each pass
            self.propensity_sum[...] = jnp.zeros(self.list_size)
            self.averaged_steps[...] = jnp.zeros(())

    def final_propensities(self) -> np.ndarray:
        """The propensity model's final state, normalised at rank 1."""
        logits = np.asarray(self.propensity_logits[...], np.float64)
        return np.exp(logits - logits[0])

    def propensities(self):
        if self.average_propensities and float(self.averaged_steps[...]) > 0:
            return np.asarray(self.propensity_sum[...], np.float64) / float(self.averaged_steps[...])
        return self.final_propensities()

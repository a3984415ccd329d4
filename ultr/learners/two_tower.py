"""Two-tower models: a bias tower per rank beside the relevance tower (the ranker)."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..losses import two_tower_loss
from ..options import option
from .base import Learner, register_learner

COMBINATIONS = ("product", "additive")


@register_learner
class TwoTower(Learner):
    """Two-tower position-bias model.

    ``product`` (PAL, Guo et al., RecSys 2019): ``P(click) = sigmoid(b_k) sigmoid(f(x))``;
    ``additive`` (Hager et al., SIGIR 2024): ``P(click) = sigmoid(f(x) + b_k)``.
    Trained with binary cross-entropy on clicks; the ranker is ``f`` alone.
    See :func:`ultr.losses.two_tower_loss`.
    """

    name = "two-tower"
    losses = ("sigmoid",)
    has_bias_model = True
    estimates = "propensities"

    @dataclasses.dataclass(frozen=True)
    class Options:
        two_tower: str = option("product", "two-tower: how the bias and relevance towers combine",
                                choices=COMBINATIONS)

    def __init__(self, ranker, list_size, loss=None, two_tower: str = "product", *, combination: str | None = None):
        combination = combination or two_tower
        if combination not in COMBINATIONS:
            raise ValueError(f"unknown two-tower combination {combination!r}; choose product or additive")
        super().__init__(ranker, list_size, loss)
        self.bias_logits = nnx.Param(jnp.full(list_size, 2.0 if combination == "product" else 0.0))
        self.combination = combination

    def loss(self, features, batch):
        scores = self.ranker(features)
        if self.combination == "additive":
            return two_tower_loss(scores, batch.clicks, self.bias_logits[...], where=batch.mask,
                                  combination="additive")
        per_item = two_tower_loss(scores, batch.clicks, self.bias_logits[...], where=batch.mask,
                                  combination="product", reduce_fn=None)
        return jnp.mean(jnp.sum(per_item, axis=-1))  # mean over the batch's sessions of their log-likelihood

    def propensities(self):
        if self.combination == "additive":
            return None
        p = 1.0 / (1.0 + np.exp(-np.asarray(self.bias_logits[...], np.float64)))
        return p / p[0]

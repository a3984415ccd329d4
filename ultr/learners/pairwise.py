"""Pairwise debiasing: position biases of clicked and unclicked documents, estimated in closed form."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ..losses import click_pair_losses, pairwise_debiasing_loss
from ..options import option, unit_interval
from .base import Learner, Statistic, register_learner


@register_learner
class PairD(Learner):
    """Pairwise debiasing, Unbiased LambdaMART (Hu et al., WWW 2019).

    Each (clicked i, unclicked j) pair's logistic loss is divided by
    ``t+_{k_i} t-_{k_j}``; the position biases ``t+`` and ``t-`` follow the
    paper's closed form (``p = 0``: the sum of pair losses at a position,
    normalised at rank 1), tracked as a running average over batches
    (rate ``update_rate``). ``--loss lambdarank`` weights pairs by LambdaRank's
    |delta DCG|. See :func:`ultr.losses.pairwise_debiasing_loss`.
    """

    name = "paird"
    losses = ("pairwise", "lambdarank")
    estimates = "position biases"

    @dataclasses.dataclass(frozen=True)
    class Options:
        update_rate: float = option(0.05, "rem, paird: share by which the bias statistics move towards each "
                                    "batch's estimate", check=unit_interval, requirement="in (0, 1]")

    def __init__(self, ranker, list_size, loss=None, update_rate: float = 0.05, lambdarank: bool | None = None):
        super().__init__(ranker, list_size, loss)
        self.t_plus = Statistic(jnp.ones(list_size))
        self.t_minus = Statistic(jnp.ones(list_size))
        self.step = update_rate
        self.lambdarank = self.loss_kind == "lambdarank" if lambdarank is None else lambdarank

    def loss(self, features, batch):
        per_list = pairwise_debiasing_loss(self.ranker(features), batch.clicks, self.t_plus[...], self.t_minus[...],
                                           where=batch.mask, lambdarank=self.lambdarank, reduce_fn=None)
        return jnp.sum(per_list) / batch.clicks.shape[0]

    def update_statistics(self, features, batch):
        pair_loss = jax.lax.stop_gradient(
            click_pair_losses(self.ranker(features), batch.clicks, where=batch.mask, lambdarank=self.lambdarank))
        plus = jnp.sum(pair_loss / self.t_minus[...][None, None, :], axis=(0, 2))
        minus = jnp.sum(pair_loss / self.t_plus[...][None, :, None], axis=(0, 1))

        def blend(current, total):
            ok = (total > 0) & (total[0] > 0)
            estimate = jnp.where(ok, total / jnp.where(total[0] > 0, total[0], 1.0), current)
            return (1 - self.step) * current + self.step * estimate

        self.t_plus[...] = blend(self.t_plus[...], plus)
        self.t_minus[...] = blend(self.t_minus[...], minus)

    def propensities(self):
        t = np.asarray(self.t_plus[...], np.float64)
        return t / t[0]

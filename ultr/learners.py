"""Counterfactual learners: ``flax.nnx`` modules that hold a ranker (and any bias
model) and define the loss of a click batch.

Every learner has ``loss(features, batch) -> scalar`` (``features [B, K, F]``
gathered for the batch's documents, in display order), optionally
``update_statistics(features, batch)`` for parameters fitted outside gradient
descent, and ``propensities()`` (examination per rank normalised at rank 1,
``None`` when the learner does not estimate it).
"""

from __future__ import annotations

import abc

import jax
import jax.numpy as jnp
import numpy as np
import rax
from flax import nnx

LOSSES = ("softmax", "sigmoid", "pairwise", "lambdarank")


def ranking_loss(kind: str, scores, labels, mask, weights=None):
    """Mean loss per list. ``softmax`` and ``sigmoid`` are linear in the labels, so
    inverse-propensity-weighted labels give unbiased estimates of the
    full-information loss (Joachims et al., WSDM 2017)."""
    if kind == "softmax":
        return rax.softmax_loss(scores, labels, where=mask, weights=weights)
    if kind == "sigmoid":
        labels = labels if weights is None else labels * weights
        return sigmoid_cross_entropy(scores, labels, mask)
    if kind == "pairwise":
        return rax.pairwise_logistic_loss(scores, labels, where=mask, weights=weights)
    if kind == "lambdarank":
        return rax.pairwise_logistic_loss(scores, labels, where=mask, weights=weights,
                                          lambdaweight_fn=rax.dcg_lambdaweight)
    raise ValueError(f"unknown loss {kind!r}; choose from {', '.join(LOSSES)}")


def sigmoid_cross_entropy(scores, labels, mask):
    """Mean ``-y log sigmoid(s) - (1 - y) log sigmoid(-s)`` over the shown items.

    Unlike ``rax.pointwise_sigmoid_loss`` the labels are not clipped to [0, 1]:
    inverse-propensity-weighted labels exceed 1, and clipping them would bias the loss.
    """
    per_item = jax.nn.relu(scores) - scores * labels + jnp.log1p(jnp.exp(-jnp.abs(scores)))
    return jnp.sum(jnp.where(mask, per_item, 0.0)) / jnp.maximum(jnp.sum(mask), 1)


class Statistic(nnx.Variable):
    """Parameters updated outside gradient descent (EM steps, PairD biases)."""


class Learner(nnx.Module, abc.ABC):
    name = "learner"

    def __init__(self, ranker: nnx.Module, list_size: int, loss: str = "softmax"):
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose from {', '.join(LOSSES)}")
        self.ranker = ranker
        self.list_size = list_size
        self.loss_kind = loss

    def __call__(self, features):
        return self.ranker(features)

    @abc.abstractmethod
    def loss(self, features, batch):
        """Mean loss of a batch; ``features [B, K, F]`` in display order."""

    def update_statistics(self, features, batch) -> None:
        return None

    def propensities(self) -> np.ndarray | None:
        return None


class Naive(Learner):
    """Clicks taken as relevance labels (the biased baseline)."""

    name = "naive"

    def loss(self, features, batch):
        return ranking_loss(self.loss_kind, self.ranker(features), batch.clicks.astype(jnp.float32), batch.mask)


class IPS(Learner):
    """Inverse propensity scoring (Wang et al., SIGIR 2016; Joachims et al., WSDM 2017).

    Each click is weighted by ``1 / max(propensity, clip)``; with the softmax or
    sigmoid loss the weighted loss is an unbiased estimate of the loss on true
    relevance (for propensities equal to the examination probabilities).
    """

    name = "ips"

    def __init__(self, ranker, list_size, loss="softmax", clip: float = 0.01):
        if loss not in ("softmax", "sigmoid"):
            raise ValueError("IPS is unbiased for losses linear in the labels: use softmax or sigmoid")
        super().__init__(ranker, list_size, loss)
        self.clip = clip

    def loss(self, features, batch):
        weights = 1.0 / jnp.maximum(batch.propensity, self.clip)
        return ranking_loss(self.loss_kind, self.ranker(features), batch.clicks.astype(jnp.float32), batch.mask,
                            weights=jnp.where(batch.mask, weights, 0.0))


class DLA(Learner):
    """Dual learning algorithm (Ai et al., SIGIR 2018).

    A propensity model (one logit per rank) and the ranker are learned jointly:
    the ranker's softmax loss weights clicks by ``p_1 / p_k`` of the propensity
    softmax, the propensity model's softmax loss weights clicks by ``r_1 / r_k``
    of the ranker's softmax over the shown list; both weights are clipped at
    ``max_weight`` and carry no gradient.
    """

    name = "dla"

    def __init__(self, ranker, list_size, loss="softmax", max_weight: float = 100.0):
        super().__init__(ranker, list_size, "softmax")
        self.propensity_logits = nnx.Param(jnp.zeros(list_size))
        self.max_weight = max_weight

    def loss(self, features, batch):
        clicks = batch.clicks.astype(jnp.float32)
        scores = self.ranker(features)
        logits = self.propensity_logits[...]
        log_p = jax.nn.log_softmax(logits)
        propensity_weights = jax.lax.stop_gradient(jnp.minimum(jnp.exp(log_p[0] - log_p), self.max_weight))
        ranker_loss = rax.softmax_loss(scores, clicks, where=batch.mask,
                                       weights=jnp.broadcast_to(propensity_weights, clicks.shape))
        log_r = jax.nn.log_softmax(jnp.where(batch.mask, scores, -jnp.inf), axis=-1)
        log_r = jnp.where(batch.mask, log_r, 0.0)
        relevance_weights = jax.lax.stop_gradient(jnp.minimum(jnp.exp(log_r[:, :1] - log_r), self.max_weight))
        propensity_loss = rax.softmax_loss(jnp.broadcast_to(logits, clicks.shape), clicks, where=batch.mask,
                                           weights=jnp.where(batch.mask, relevance_weights, 0.0))
        return ranker_loss + propensity_loss

    def propensities(self):
        logits = np.asarray(self.propensity_logits[...], np.float64)
        return np.exp(logits - logits[0])


class RegressionEM(Learner):
    """Regression EM (Wang et al., WSDM 2018) under the position-based model.

    E-step per batch: ``P(R=1 | C=0) = g (1 - t) / (1 - t g)`` and
    ``P(E=1 | C=0) = t (1 - g) / (1 - t g)`` with ``g = sigmoid(score)``; the
    ranker regresses (sigmoid cross-entropy) on ``P(R=1 | C)`` and the
    examination ``t`` moves towards the batch's M-step estimate (rate ``step``).
    """

    name = "rem"

    def __init__(self, ranker, list_size, loss="sigmoid", step: float = 0.05):
        super().__init__(ranker, list_size, "sigmoid")
        self.examination = Statistic(jnp.full(list_size, 0.5))
        self.step = step

    def _posteriors(self, features, batch):
        relevance = jax.nn.sigmoid(self.ranker(features))
        theta = self.examination[...]
        clicks = batch.clicks
        not_clicked = jnp.maximum(1.0 - theta * relevance, 1e-6)
        p_relevant = jnp.where(clicks, 1.0, relevance * (1.0 - theta) / not_clicked)
        p_examined = jnp.where(clicks, 1.0, theta * (1.0 - relevance) / not_clicked)
        return p_relevant, p_examined

    def loss(self, features, batch):
        p_relevant, _ = jax.lax.stop_gradient(self._posteriors(features, batch))
        return rax.pointwise_sigmoid_loss(self.ranker(features), p_relevant, where=batch.mask)

    def update_statistics(self, features, batch):
        _, p_examined = jax.lax.stop_gradient(self._posteriors(features, batch))
        shown = jnp.sum(batch.mask, axis=0)
        estimate = jnp.sum(jnp.where(batch.mask, p_examined, 0.0), axis=0) / jnp.maximum(shown, 1)
        theta = self.examination[...]
        self.examination[...] = jnp.where(shown > 0, (1 - self.step) * theta + self.step * estimate, theta)

    def propensities(self):
        theta = np.asarray(self.examination[...], np.float64)
        return theta / theta[0]


class TwoTower(Learner):
    """Two-tower position-bias model.

    ``product`` (PAL, Guo et al., RecSys 2019): ``P(click) = sigmoid(b_k) sigmoid(f(x))``;
    ``additive`` (Hager et al., SIGIR 2024): ``P(click) = sigmoid(f(x) + b_k)``.
    Trained with binary cross-entropy on clicks; the ranker is ``f`` alone.
    """

    name = "two-tower"

    def __init__(self, ranker, list_size, loss="sigmoid", combination: str = "product"):
        if combination not in ("product", "additive"):
            raise ValueError(f"unknown two-tower combination {combination!r}; choose product or additive")
        super().__init__(ranker, list_size, "sigmoid")
        self.bias_logits = nnx.Param(jnp.full(list_size, 2.0 if combination == "product" else 0.0))
        self.combination = combination

    def loss(self, features, batch):
        scores = self.ranker(features)
        clicks = batch.clicks.astype(jnp.float32)
        bias = self.bias_logits[...]
        if self.combination == "additive":
            return rax.pointwise_sigmoid_loss(scores + bias, clicks, where=batch.mask)
        log_click = jax.nn.log_sigmoid(bias) + jax.nn.log_sigmoid(scores)
        log_no_click = jnp.log(-jnp.expm1(jnp.minimum(log_click, -1e-7)))
        per_item = -(clicks * log_click + (1.0 - clicks) * log_no_click)
        per_list = jnp.sum(jnp.where(batch.mask, per_item, 0.0), axis=-1)
        return jnp.mean(per_list)

    def propensities(self):
        if self.combination == "additive":
            return None
        p = 1.0 / (1.0 + np.exp(-np.asarray(self.bias_logits[...], np.float64)))
        return p / p[0]


class PairD(Learner):
    """Pairwise debiasing, Unbiased LambdaMART (Hu et al., WWW 2019).

    Each (clicked i, unclicked j) pair's logistic loss is divided by
    ``t+_{k_i} t-_{k_j}``; the position biases ``t+`` and ``t-`` follow the
    paper's closed form (``p = 0``: the sum of pair losses at a position,
    normalised at rank 1), tracked as a running average over batches.
    """

    name = "paird"

    def __init__(self, ranker, list_size, loss="pairwise", step: float = 0.05, lambdarank: bool = False):
        super().__init__(ranker, list_size, "pairwise")
        self.t_plus = Statistic(jnp.ones(list_size))
        self.t_minus = Statistic(jnp.ones(list_size))
        self.step = step
        self.lambdarank = lambdarank

    def _pair_losses(self, scores, batch):
        clicked = batch.clicks & batch.mask
        unclicked = ~batch.clicks & batch.mask
        pairs = clicked[:, :, None] & unclicked[:, None, :]
        diff = scores[:, :, None] - scores[:, None, :]
        loss = jax.nn.softplus(-diff)
        if self.lambdarank:
            ranks = rax.utils.ranks(scores, where=batch.mask)
            discount = 1.0 / jnp.log2(ranks + 1.0)
            loss = loss * jnp.abs(discount[:, :, None] - discount[:, None, :])
        return jnp.where(pairs, loss, 0.0)

    def loss(self, features, batch):
        pair_loss = self._pair_losses(self.ranker(features), batch)
        weights = 1.0 / (self.t_plus[...][:, None] * self.t_minus[...][None, :])
        return jnp.sum(pair_loss * jax.lax.stop_gradient(weights)) / batch.clicks.shape[0]

    def update_statistics(self, features, batch):
        pair_loss = jax.lax.stop_gradient(self._pair_losses(self.ranker(features), batch))
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


class Affine(Learner):
    """Affine correction for trust bias (Vardasbi et al., SIGIR 2020).

    With ``P(C=1) = alpha_k R + beta_k``, ``alpha_k = theta_k (eps+_k - eps-_k)`` and
    ``beta_k = theta_k eps-_k``, the label ``(c - beta_k) / alpha_k`` is an unbiased
    estimate of R; the softmax loss is linear in its labels, so it stays unbiased.
    """

    name = "affine"

    def __init__(self, ranker, list_size, examination, epsilon_pos, epsilon_neg, loss="softmax",
                 min_alpha: float = 0.01):
        if loss not in ("softmax", "sigmoid"):
            raise ValueError("the affine correction needs a loss linear in the labels: softmax or sigmoid")
        super().__init__(ranker, list_size, loss)
        theta = np.asarray(examination, np.float64)[:list_size]
        eps_pos = np.broadcast_to(np.asarray(epsilon_pos, np.float64), theta.shape)[:list_size]
        eps_neg = np.broadcast_to(np.asarray(epsilon_neg, np.float64), theta.shape)[:list_size]
        self.alpha = Statistic(jnp.asarray(np.maximum(theta * (eps_pos - eps_neg), min_alpha), jnp.float32))
        self.beta = Statistic(jnp.asarray(theta * eps_neg, jnp.float32))

    def loss(self, features, batch):
        labels = (batch.clicks.astype(jnp.float32) - self.beta[...]) / self.alpha[...]
        return ranking_loss(self.loss_kind, self.ranker(features), jnp.where(batch.mask, labels, 0.0), batch.mask)


class Skyline(Learner):
    """Full-information skyline: trained on the true relevance labels of the training split.

    ``labels="gain"`` (default) trains on the nDCG gains ``2^y - 1``, ``"grade"`` on ``y``.
    """

    name = "skyline"

    def __init__(self, ranker, list_size, loss="softmax", labels: str = "gain"):
        super().__init__(ranker, list_size, loss)
        if labels not in ("gain", "grade"):
            raise ValueError(f"unknown skyline labels {labels!r}; choose gain or grade")
        self.labels = labels

    def loss(self, features, batch):
        labels = jnp.exp2(batch.labels) - 1.0 if self.labels == "gain" else batch.labels
        return ranking_loss(self.loss_kind, self.ranker(features), labels, batch.mask)


LEARNERS = ("naive", "ips", "dla", "rem", "two-tower", "paird", "affine", "skyline", "logging-policy")

"""Loss functions of the counterfactual learners, in rax's calling convention.

Every function takes arrays shaped ``[..., list_size]`` (scores, clicks or
labels, propensities) with keyword-only ``where`` (bool mask of the shown or
valid items) and ``reduce_fn`` (``jnp.mean`` by default; ``None`` returns the
unreduced values: one per list for listwise and pairwise losses, one per item
for pointwise ones). They are pure: no state, no randomness, and ``jit``,
``vmap`` and ``grad`` apply as to any JAX function. The ``flax.nnx`` learners
of :mod:`ultr.learners` are thin wrappers that feed them a ranker's scores.

The ranking losses (:data:`LOSSES`, the ``--loss`` choices) are ``softmax``,
``sigmoid``, ``pairwise``, ``lambdarank`` and ``mse``; ``softmax`` and ``sigmoid`` are
linear in the labels, so inverse-propensity-weighted labels give unbiased
estimates of the loss on true relevance (Joachims et al., WSDM 2017).

>>> import jax.numpy as jnp
>>> scores = jnp.array([[2.0, 1.0, 0.0]])
>>> clicks = jnp.array([[0.0, 1.0, 0.0]])
>>> round(float(softmax_loss(scores, clicks)), 4)  # -log softmax(scores)[1]
1.4076
>>> round(float(ips_loss(scores, clicks, jnp.array([[1.0, 0.5, 0.25]]))), 4)  # the click weighs 1 / 0.5
2.8152
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import rax

from click_models.registry import Registry

Array = jax.Array
ReduceFn = Callable[..., Array] | None

LOSSES: Registry[Callable[..., Array]] = Registry("ranking loss")


def _mask(x: Array, where: Array | None) -> Array:
    return jnp.ones(x.shape, bool) if where is None else jnp.broadcast_to(where, x.shape)


def _reduce_lists(per_list: Array, where: Array, reduce_fn: ReduceFn) -> Array:
    """rax's reduction of list values: lists without a valid item are left out."""
    return rax.utils.safe_reduce(per_list, where=jnp.any(where, axis=-1), reduce_fn=reduce_fn)


# ---------------------------------------------------------------------- ranking losses
@LOSSES.register("softmax")
def softmax_loss(scores, labels, *, where=None, weights=None, reduce_fn: ReduceFn = jnp.mean):
    """Listwise softmax cross-entropy ``-sum_i y_i log softmax(s)_i`` per list (Cao et al., ICML 2007).

    Args:
      scores, labels: ``[..., K]``; labels are multiplied by ``weights`` ``[..., K]`` when given.
      where: bool ``[..., K]``.

    Returns: ``[...]`` with ``reduce_fn=None``, else the mean over lists with a valid item.

    >>> round(float(softmax_loss(jnp.array([0.0, 0.0]), jnp.array([1.0, 0.0]))), 4)  # log 2
    0.6931
    """
    return rax.softmax_loss(scores, labels, where=where, weights=weights, reduce_fn=reduce_fn)


@LOSSES.register("sigmoid")
def sigmoid_loss(scores, labels, *, where=None, weights=None, reduce_fn: ReduceFn = jnp.mean):
    """Pointwise ``-y log sigmoid(s) - (1 - y) log sigmoid(-s)`` with ``y = label * weight``.

    Unlike ``rax.pointwise_sigmoid_loss`` the labels are not clipped to [0, 1]:
    inverse-propensity-weighted labels exceed 1, and clipping them would bias the loss.

    Returns: ``[..., K]`` with ``reduce_fn=None`` (0 where masked), else the mean over valid items.

    >>> round(float(sigmoid_loss(jnp.array([0.0]), jnp.array([2.0]))), 4)  # log 2, whatever the label
    0.6931
    """
    labels = labels if weights is None else labels * weights
    where = _mask(scores, where)
    per_item = jax.nn.relu(scores) - scores * labels + jnp.log1p(jnp.exp(-jnp.abs(scores)))
    per_item = jnp.where(where, per_item, 0.0)
    return rax.utils.safe_reduce(per_item, where=where, reduce_fn=reduce_fn)


@LOSSES.register("mse")
def mse_loss(scores, labels, *, where=None, weights=None, reduce_fn: ReduceFn = jnp.mean):
    """Pointwise squared error ``(s - y)^2`` (``y = label * weight``), the regression loss of the doubly robust
    learner: bounded below whatever the sign of the labels, and its expectation over unbiased labels is
    smallest at ``s = E[y]``.

    Returns: ``[..., K]`` with ``reduce_fn=None`` (0 where masked), else the mean over valid items.

    >>> float(mse_loss(jnp.array([0.5, 1.0]), jnp.array([1.0, -1.0])))  # (0.25 + 4) / 2
    2.125
    """
    labels = labels if weights is None else labels * weights
    where = _mask(scores, where)
    per_item = jnp.where(where, jnp.square(scores - labels), 0.0)
    return rax.utils.safe_reduce(per_item, where=where, reduce_fn=reduce_fn)


@LOSSES.register("bounded-softmax")
def bounded_softmax_loss(scores, labels, *, where=None, weights=None, reduce_fn: ReduceFn = jnp.mean,
                         epsilon: float = 0.2):
    """Softmax cross-entropy with a floor, ``-sum_i y_i log(softmax(s)_i + epsilon / n)`` per list of ``n``
    valid items: the loss of the doubly robust learner.

    Like the softmax cross-entropy it is linear in the labels, so unbiased labels give an unbiased estimate
    of the loss on true relevance; unlike it, it is bounded below for negative labels (doubly robust
    estimates of shown, unclicked documents), whose term is at least ``|y| log(epsilon / n)``: the
    softmax cross-entropy would push their scores to minus infinity. ``epsilon`` is the floor relative to
    the uniform probability ``1 / n``.

    >>> round(float(bounded_softmax_loss(jnp.array([0.0, 0.0]), jnp.array([1.0, 0.0]), epsilon=0.0)), 4)  # log 2
    0.6931
    >>> bool(bounded_softmax_loss(jnp.array([0.0, -1e9]), jnp.array([0.0, -1.0])) > -jnp.inf)  # bounded
    True
    """
    labels = labels if weights is None else labels * weights
    where = _mask(scores, where)
    valid = jnp.maximum(jnp.sum(where, axis=-1, keepdims=True), 1)
    probability = jnp.where(where, jax.nn.softmax(jnp.where(where, scores, -jnp.inf), axis=-1), 0.0)
    log_probability = jnp.log(jnp.where(where, probability + epsilon / valid, 1.0))
    per_list = -jnp.sum(jnp.where(where, labels * log_probability, 0.0), axis=-1)
    return _reduce_lists(per_list, where, reduce_fn)


@LOSSES.register("pairwise")
def pairwise_loss(scores, labels, *, where=None, weights=None, reduce_fn: ReduceFn = jnp.mean):
    """Pairwise logistic loss ``sum_{y_i > y_j} log(1 + exp(s_j - s_i))`` (RankNet, Burges et al., ICML 2005).

    >>> round(float(pairwise_loss(jnp.array([0.0, 0.0]), jnp.array([1.0, 0.0]))), 4)
    0.6931
    """
    return rax.pairwise_logistic_loss(scores, labels, where=where, weights=weights, reduce_fn=reduce_fn)


@LOSSES.register("lambdarank")
def lambdarank_loss(scores, labels, *, where=None, weights=None, reduce_fn: ReduceFn = jnp.mean):
    """Pairwise logistic loss with LambdaRank's |delta DCG| pair weights (Burges, MSR-TR-2010-82).

    >>> float(lambdarank_loss(jnp.array([1.0, 0.0]), jnp.array([0.0, 0.0])))  # no preference, no loss
    0.0
    """
    return rax.pairwise_logistic_loss(scores, labels, where=where, weights=weights, reduce_fn=reduce_fn,
                                      lambdaweight_fn=_dcg_lambdaweight)


def _dcg_lambdaweight(scores, labels, *, where=None, **kwargs):
    """rax's DCG lambdaweights scaled by the valid items of each list (rax scales by the padded list size,
    so padding would change the loss)."""
    weights = rax.dcg_lambdaweight(scores, labels, where=where, **kwargs)
    if where is None:
        return weights
    valid = jnp.sum(where, axis=-1, keepdims=True)  # weights are [..., K * K]: one per pair
    return weights * valid / scores.shape[-1]


def ranking_loss(kind, scores, labels, mask, weights=None):
    """Mean loss of a registered ranking loss (name or function) over the lists ``[..., K]``."""
    return LOSSES.resolve(kind)(scores, labels, where=mask, weights=weights)


# ---------------------------------------------------------------------- counterfactual losses
def ips_loss(scores, clicks, propensities, *, where=None, clip: float = 0.01, loss=softmax_loss,
             reduce_fn: ReduceFn = jnp.mean):
    """Inverse propensity scoring (Wang et al., SIGIR 2016; Joachims et al., WSDM 2017).

    ``loss(scores, clicks, weights = 1 / max(propensity, clip))``: with a loss linear
    in its labels and propensities equal to the examination probabilities, its
    expectation over the clicks is the loss on the true relevance.

    Args:
      scores, clicks, propensities: ``[..., K]`` (examination probability per shown position).
      clip: smallest propensity (bounds the weights at ``1 / clip``).
      loss: a ranking loss (function or name), ``softmax`` or ``sigmoid`` for unbiasedness.

    >>> s, c = jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0])
    >>> bool(ips_loss(s, c, jnp.array([1.0, 0.25])) == 4 * softmax_loss(s, c))
    True
    """
    where = _mask(scores, where)
    weights = jnp.where(where, 1.0 / jnp.maximum(propensities, clip), 0.0)
    return LOSSES.resolve(loss)(scores, clicks, where=where, weights=weights, reduce_fn=reduce_fn)


def dla_losses(scores, clicks, propensity_logits, *, where=None, weights=None, max_weight: float = 100.0,
               reduce_fn: ReduceFn = jnp.mean) -> tuple[Array, Array]:
    """The two losses of the dual learning algorithm (Ai et al., SIGIR 2018).

    With ``p = softmax(propensity_logits)`` over ranks and ``r = softmax(scores)`` over the shown list:

    * ranker loss: softmax loss of the scores on the clicks weighted by ``min(p_1 / p_k, max_weight)``;
    * propensity loss: softmax loss of the propensity logits on the clicks weighted by
      ``min(r_1 / r_k, max_weight)``.

    The weights carry no gradient. Returns ``(ranker_loss, propensity_loss)``.

    Args:
      scores, clicks: ``[..., K]`` in display order; propensity_logits: ``[K]``.
      weights: optional sample weights ``[..., K]`` (no gradient) multiplying both losses' per-document
        terms, e.g. the weights of :func:`position_balancing`.

    >>> s, c = jnp.zeros((1, 3)), jnp.array([[1.0, 0.0, 1.0]])
    >>> ranker, propensity = dla_losses(s, c, jnp.zeros(3))  # equal propensities and scores: plain softmax losses
    >>> bool(jnp.isclose(ranker, softmax_loss(s, c))), bool(jnp.isclose(propensity, softmax_loss(s, c)))
    (True, True)
    """
    where = _mask(scores, where)
    clicks = clicks.astype(jnp.float32)
    log_p = jax.nn.log_softmax(propensity_logits)
    propensity_weights = jax.lax.stop_gradient(jnp.minimum(jnp.exp(log_p[..., :1] - log_p), max_weight))
    sample_weights = 1.0 if weights is None else jax.lax.stop_gradient(weights)
    ranker_loss = rax.softmax_loss(scores, clicks, where=where,
                                   weights=jnp.broadcast_to(propensity_weights, clicks.shape) * sample_weights,
                                   reduce_fn=reduce_fn)
    log_r = jax.nn.log_softmax(jnp.where(where, scores, -jnp.inf), axis=-1)
    log_r = jnp.where(where, log_r, 0.0)
    relevance_weights = jax.lax.stop_gradient(jnp.minimum(jnp.exp(log_r[..., :1] - log_r), max_weight)) * sample_weights
    propensity_loss = rax.softmax_loss(jnp.broadcast_to(propensity_logits, clicks.shape), clicks, where=where,
                                       weights=jnp.where(where, relevance_weights, 0.0), reduce_fn=reduce_fn)
    return ranker_loss, propensity_loss


def doubly_robust_labels(clicks, examination, exposure, predicted_relevance, *, where=None,
                         clip: float = 0.01) -> Array:
    """Doubly robust relevance estimates under position bias (Oosterhuis, TOIS 2023), ``[..., L]``.

    ``y(d) = r̂(d) + (c(d) - θ(d) r̂(d)) / max(ρ(d), clip)`` over a query's candidates, with ``θ(d)`` the
    examination probability at the rank ``d`` was shown at in this session (0 when not shown), ``ρ(d)`` its
    expectation under the logging policy and ``r̂`` a regression model's relevance. Under the position-based
    model ``E[c | shown at k] = θ_k R``, so ``E[y(d)] = R(d)`` whenever ``ρ(d) > 0``, whatever ``r̂``; the
    closer ``r̂`` is to ``R``, the smaller the variance. No gradient flows through the labels.

    >>> y = doubly_robust_labels(jnp.array([1.0, 0.0, 0.0]), jnp.array([1.0, 0.5, 0.0]),
    ...                          jnp.array([1.0, 0.5, 0.25]), jnp.array([0.5, 0.5, 0.5]))
    >>> y.tolist()  # clicked: 0.5 + 0.5; shown, not clicked: 0.5 - 0.25 / 0.5; not shown: the regression
    [1.0, 0.0, 0.5]
    """
    clicks = jnp.asarray(clicks, jnp.float32)
    where = _mask(clicks, where)
    relevance = jax.lax.stop_gradient(predicted_relevance)
    labels = relevance + (clicks - examination * relevance) / jnp.maximum(exposure, clip)
    return jax.lax.stop_gradient(jnp.where(where, labels, 0.0))


def aggregated_doubly_robust(regression_scores, statistics, examination, *, where=None) -> tuple[Array, Array]:
    """Doubly robust labels of whole query lists from their sessions' sufficient statistics, and the regression
    model's click cross-entropy (the ``aggregate`` mode of the doubly robust learner).

    Args:
      regression_scores: ``[..., L]`` logits of the regression model, ``r̂ = sigmoid(g)``.
      statistics: ``[..., L, 2 + 2K]``: per document, the means over its query's sessions of ``c / ρ`` and
        ``θ / ρ``, then of its clicks and of its impressions at each rank ``1..K``.
      examination: ``[K]`` the examination probability per rank.

    Returns: the labels ``mean(c/ρ) + r̂ (1 - mean(θ/ρ))`` ``[..., L]`` (the mean of the session labels of
    :func:`doubly_robust_labels`; no gradient), and the click cross-entropy under ``P(click at k) = θ_k r̂``
    per impression of a query's mean session, each query weighing the same (:func:`known_examination_loss`
    averages over the impressions of a session batch instead, weighing queries by their sessions).

    >>> stats = jnp.array([[0.8, 1.5, 0.3, 0.9]])  # K = 1: c/ρ, θ/ρ, clicks and impressions at rank 1
    >>> labels, loss = aggregated_doubly_robust(jnp.array([0.0]), stats, jnp.array([0.5]))  # r̂ = 0.5
    >>> round(float(labels[0]), 4)  # 0.8 + 0.5 (1 - 1.5)
    0.55
    >>> round(float(loss), 4)  # -(0.3 log 0.25 + 0.6 log 0.75) / 0.9
    0.6539
    """
    K = examination.shape[-1]
    where = _mask(regression_scores, where)
    relevance = jax.nn.sigmoid(regression_scores)
    weighted_clicks, exposure_ratio = statistics[..., 0], statistics[..., 1]
    clicks, impressions = statistics[..., 2:2 + K], statistics[..., 2 + K:2 + 2 * K]
    log_click = jnp.log(jnp.maximum(examination, 1e-12)) + jax.nn.log_sigmoid(regression_scores)[..., None]
    shown = where[..., None]
    entropy = jnp.where(shown, -(clicks * log_click + (impressions - clicks) * _log_no_click(log_click)), 0.0)
    loss = jnp.sum(entropy) / jnp.maximum(jnp.sum(jnp.where(shown, impressions, 0.0)), 1e-6)
    labels = jnp.where(where, weighted_clicks + relevance * (1 - exposure_ratio), 0.0)
    return jax.lax.stop_gradient(labels), loss


def known_examination_loss(scores, clicks, examination, *, where=None, reduce_fn: ReduceFn = jnp.mean) -> Array:
    """Binary cross-entropy of clicks under ``P(click) = θ σ(s)`` with known examination ``θ`` (the shown
    documents, ``θ > 0``): the regression model of :func:`doubly_robust_labels`.

    Returns: ``[..., K]`` with ``reduce_fn=None`` (0 where not shown), else the mean over shown documents.

    >>> round(float(known_examination_loss(jnp.array([0.0]), jnp.array([1.0]), jnp.array([1.0]))), 4)  # log 2
    0.6931
    """
    shown = _mask(scores, where) & (examination > 0)
    log_click = jnp.log(jnp.maximum(examination, 1e-12)) + jax.nn.log_sigmoid(scores)
    return _click_log_loss(log_click, clicks, shown, reduce_fn)


def _log_no_click(log_click):
    """``log(1 - P)`` from ``log P``, stably (``P`` kept just below 1)."""
    return jnp.log(-jnp.expm1(jnp.minimum(log_click, -1e-7)))


def _click_log_loss(log_click, clicks, where, reduce_fn):
    """Binary cross-entropy of clicks given ``log P(click)`` (``log(1 - P)`` computed stably), per item or reduced."""
    clicks = jnp.asarray(clicks, jnp.float32)
    per_item = jnp.where(where, -(clicks * log_click + (1.0 - clicks) * _log_no_click(log_click)), 0.0)
    return rax.utils.safe_reduce(per_item, where=where, reduce_fn=reduce_fn)


def position_balancing(position_logits, *, where=None, max_weight: float = 100.0) -> tuple[Array, Array]:
    """Sample weights that make the shown rank independent of the features, and the loss of the
    position model they come from.

    ``position_logits [B, K, K]`` are a model's logits of ``q(j | x)``, the probability that the
    logging policy shows a document with features ``x`` at rank ``j``, for the document shown at rank
    ``k`` (row ``k``). With ``q_k = q(k | x_k)`` and ``P(k)`` the share of the batch's shown documents at
    rank ``k``, the weight is ``w_k = min(P(k) / q_k, max_weight)``, normalised to mean 1 over the shown
    documents: the inverse generalised propensity score of the rank (Imbens, Biometrika 2000). In the
    weighted log, features carry no information about the rank, so a ranker cannot explain the position
    effect by reproducing the logging policy from the features (the confounding that Hager et al.,
    ICTIR 2025, counter by sample weighting). Under a deterministic policy the weights need feature
    overlap between ranks: documents with similar features shown at different ranks in different queries.

    Returns ``(weights [B, K], loss)``: the weights carry no gradient (0 where masked); the loss is the
    mean cross-entropy of the shown rank under ``q``.

    >>> w, loss = position_balancing(jnp.zeros((2, 3, 3)))  # q uniform, ranks equally frequent: weights 1
    >>> w.tolist(), round(float(loss), 4)  # log 3
    ([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]], 1.0986)
    """
    K = position_logits.shape[-1]
    where = _mask(position_logits[..., 0], where)
    log_q = jax.nn.log_softmax(position_logits, axis=-1)
    log_q_shown = jnp.diagonal(log_q, axis1=-2, axis2=-1)  # [B, K]: log q(k | x_k)
    shown = where.astype(jnp.float32)
    count = jnp.maximum(jnp.sum(shown), 1.0)
    loss = -jnp.sum(jnp.where(where, log_q_shown, 0.0)) / count
    marginal = jnp.sum(shown.reshape(-1, K), axis=0) / count  # P(k) over the batch
    weights = jnp.minimum(jnp.exp(jnp.log(jnp.maximum(marginal, 1e-12)) - log_q_shown), max_weight)
    weights = jnp.where(where, weights, 0.0)
    weights = weights * count / jnp.maximum(jnp.sum(weights), 1e-12)
    return jax.lax.stop_gradient(weights), loss


def regression_em_posteriors(scores, clicks, examination, *, where=None) -> tuple[Array, Array]:
    """E-step of regression EM under the position-based model (Wang et al., WSDM 2018).

    With ``g = sigmoid(score)`` and examination ``t`` per rank, a click means examined
    and relevant; otherwise ``P(R=1 | C=0) = g (1 - t) / (1 - t g)`` and
    ``P(E=1 | C=0) = t (1 - g) / (1 - t g)``. Returns ``(P(R=1 | C), P(E=1 | C))`` ``[..., K]``
    (0 where masked).

    >>> r, e = regression_em_posteriors(jnp.array([0.0]), jnp.array([False]), jnp.array([0.5]))
    >>> round(float(r[0]), 4), round(float(e[0]), 4)  # g = t = 1/2: (1/4) / (3/4)
    (0.3333, 0.3333)
    """
    where = _mask(scores, where)
    relevance = jax.nn.sigmoid(scores)
    not_clicked = jnp.maximum(1.0 - examination * relevance, 1e-6)
    p_relevant = jnp.where(clicks, 1.0, relevance * (1.0 - examination) / not_clicked)
    p_examined = jnp.where(clicks, 1.0, examination * (1.0 - relevance) / not_clicked)
    return jnp.where(where, p_relevant, 0.0), jnp.where(where, p_examined, 0.0)


def regression_em_loss(scores, clicks, examination, *, where=None, reduce_fn: ReduceFn = jnp.mean):
    """Regression EM's ranker loss: sigmoid cross-entropy of the scores on ``P(R=1 | C)``
    (:func:`regression_em_posteriors`, no gradient through the targets; Wang et al., WSDM 2018).

    >>> round(float(regression_em_loss(jnp.array([0.0]), jnp.array([True]), jnp.array([0.5]))), 4)
    0.6931
    """
    where = _mask(scores, where)
    p_relevant, _ = jax.lax.stop_gradient(regression_em_posteriors(scores, clicks, examination, where=where))
    return rax.pointwise_sigmoid_loss(scores, p_relevant, where=where, reduce_fn=reduce_fn)


def two_tower_loss(scores, clicks, bias_logits, *, where=None, combination: str = "product",
                   reduce_fn: ReduceFn = jnp.mean):
    """Binary cross-entropy of clicks under a two-tower position-bias model, per item.

    ``product`` (PAL, Guo et al., RecSys 2019): ``P(click) = sigmoid(b_k) sigmoid(s)``;
    ``additive`` (Hager et al., SIGIR 2024): ``P(click) = sigmoid(s + b_k)``.

    Args:
      scores, clicks: ``[..., K]``; bias_logits: ``[K]`` (``b_k``).

    Returns: ``[..., K]`` with ``reduce_fn=None`` (0 where masked), else the mean over valid items.

    >>> big = jnp.array([30.0])  # P(click) -> 1 in both towers
    >>> float(two_tower_loss(big, jnp.array([1.0]), big)) < 1e-6
    True
    """
    where = _mask(scores, where)
    clicks = clicks.astype(jnp.float32)
    if combination == "additive":
        return rax.pointwise_sigmoid_loss(scores + bias_logits, clicks, where=where, reduce_fn=reduce_fn)
    if combination != "product":
        raise ValueError(f"unknown two-tower combination {combination!r}; choose product or additive")
    log_click = jax.nn.log_sigmoid(bias_logits) + jax.nn.log_sigmoid(scores)
    return _click_log_loss(log_click, clicks, where, reduce_fn)


def click_pair_losses(scores, clicks, *, where=None, lambdarank: bool = False) -> Array:
    """Logistic loss ``log(1 + exp(s_j - s_i))`` of each (clicked i, unclicked j) pair, ``[..., K, K]``
    (0 for other pairs); with ``lambdarank`` weighted by ``|1/log2(1 + rank_i) - 1/log2(1 + rank_j)|``."""
    where = _mask(scores, where)
    clicked = clicks & where
    unclicked = ~clicks & where
    pairs = clicked[..., :, None] & unclicked[..., None, :]
    loss = jax.nn.softplus(-(scores[..., :, None] - scores[..., None, :]))
    if lambdarank:
        ranks = rax.utils.ranks(scores, where=where)
        discount = 1.0 / jnp.log2(ranks + 1.0)
        loss = loss * jnp.abs(discount[..., :, None] - discount[..., None, :])
    return jnp.where(pairs, loss, 0.0)


def pairwise_debiasing_loss(scores, clicks, t_plus, t_minus, *, where=None, lambdarank: bool = False,
                            reduce_fn: ReduceFn = jnp.mean):
    """Pairwise debiasing, Unbiased LambdaMART (Hu et al., WWW 2019).

    ``sum_{i clicked, j not} loss(i, j) / (t+_{k_i} t-_{k_j})`` per list, with
    :func:`click_pair_losses` and the position biases ``t_plus``, ``t_minus`` ``[K]``
    (no gradient through them).

    >>> s, c = jnp.array([0.0, 0.0]), jnp.array([True, False])
    >>> round(float(pairwise_debiasing_loss(s, c, jnp.ones(2), jnp.array([1.0, 0.5]))), 4)  # log 2 / 0.5
    1.3863
    """
    where = _mask(scores, where)
    pair_loss = click_pair_losses(scores, clicks, where=where, lambdarank=lambdarank)
    weights = jax.lax.stop_gradient(1.0 / (t_plus[:, None] * t_minus[None, :]))
    per_list = jnp.sum(pair_loss * weights, axis=(-2, -1))
    return _reduce_lists(per_list, where, reduce_fn)


def affine_loss(scores, clicks, alpha, beta, *, where=None, loss=softmax_loss, reduce_fn: ReduceFn = jnp.mean):
    """Affine correction for trust bias (Vardasbi et al., SIGIR 2020).

    With ``P(C=1 | rank k) = alpha_k R + beta_k`` (``alpha_k = theta_k (eps+_k - eps-_k)``,
    ``beta_k = theta_k eps-_k``) the label ``(c - beta_k) / alpha_k`` is an unbiased
    estimate of R; a loss linear in its labels (softmax, sigmoid) stays unbiased.

    Args:
      scores, clicks: ``[..., K]``; alpha, beta: ``[K]``.

    >>> s, c = jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0])
    >>> bool(jnp.isclose(affine_loss(s, c, jnp.ones(2), jnp.zeros(2)), softmax_loss(s, c)))  # no trust bias
    True
    """
    where = _mask(scores, where)
    labels = jnp.where(where, (clicks.astype(jnp.float32) - beta) / alpha, 0.0)
    return LOSSES.resolve(loss)(scores, labels, where=where, reduce_fn=reduce_fn)


__all__ = [
    "LOSSES",
    "affine_loss",
    "click_pair_losses",
    "dla_losses",
    "doubly_robust_labels",
    "ips_loss",
    "known_examination_loss",
    "lambdarank_loss",
    "mse_loss",
    "pairwise_debiasing_loss",
    "pairwise_loss",
    "position_balancing",
    "ranking_loss",
    "regression_em_loss",
    "regression_em_posteriors",
    "sigmoid_loss",
    "softmax_loss",
    "two_tower_loss",
]

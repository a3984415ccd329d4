"""Learners that correct clicks with known bias: IPS, policy-aware IPS, doubly robust, and the affine
trust-bias correction."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..losses import (LOSSES, affine_loss, aggregated_doubly_robust, doubly_robust_labels, ips_loss,
                      known_examination_loss)
from ..options import non_negative, option, positive
from .base import Learner, Need, Statistic, register_learner


@register_learner
class IPS(Learner):
    """Inverse propensity scoring (Wang et al., SIGIR 2016; Joachims et al., WSDM 2017).

    Each click is weighted by ``1 / max(propensity, clip)``; with the softmax or
    sigmoid loss the weighted loss is an unbiased estimate of the loss on true
    relevance (for propensities equal to the examination probabilities).
    See :func:`ultr.losses.ips_loss`.
    """

    name = "ips"
    needs = frozenset({Need.CLICKS, Need.PROPENSITIES})
    losses = ("softmax", "sigmoid")
    loss_requirement = "IPS is unbiased for losses linear in the labels"

    @dataclasses.dataclass(frozen=True)
    class Options:
        clip: float = option(0.01, "IPS: smallest propensity (weights are at most 1 / clip)",
                             check=lambda v: 0 <= v < 1, requirement="in [0, 1)")

    def __init__(self, ranker, list_size, loss=None, clip: float = 0.01):
        super().__init__(ranker, list_size, loss)
        self.clip = clip

    def loss(self, features, batch):
        return ips_loss(self.ranker(features), batch.clicks.astype(jnp.float32), batch.propensity,
                        where=batch.mask, clip=self.clip, loss=self.loss_kind)


@dataclasses.dataclass(frozen=True)
class ExposureSampling:
    """The Monte-Carlo sample size of the logging policy's exposure (:func:`ultr.exposure.logging_exposure`)."""

    exposure_samples: int = option(10_000, "policy-aware-ips, doubly-robust, two-stage: Plackett-Luce rankings "
                                           "sampled per query for the logging exposure (standard error at most "
                                           "0.5 / sqrt(samples))",
                                   check=lambda v: isinstance(v, int) and 100 <= v <= 10_000_000,
                                   requirement="in 100..10000000")


@dataclasses.dataclass(frozen=True)
class ExposureOptions(ExposureSampling):
    """Options of the learners that weight by each document's expected examination under the logging policy."""

    clip: float = option(0.01, "IPS: smallest propensity (weights are at most 1 / clip)",
                         check=lambda v: 0 <= v < 1, requirement="in [0, 1)")


@dataclasses.dataclass(frozen=True)
class AggregatingExposureOptions(ExposureOptions):
    """Exposure options with the choice of training on whole query lists."""

    aggregate: bool = option(False, "policy-aware-ips, doubly-robust: train on whole query lists, each document "
                                    "labelled from all its query's sessions (policy-aware IPS: the mean of "
                                    "c / rho, the same loss up to scale; doubly robust: its labels' sufficient "
                                    "statistics) instead of session batches: far fewer documents per step for "
                                    "large logs and candidate pools")


@register_learner
class PolicyAwareIPS(IPS):
    """Policy-aware IPS for stochastic top-k logging (Oosterhuis and de Rijke, SIGIR 2020).

    A click on document ``d`` is weighted by ``1 / rho(d)``, its expected examination under the logging
    policy, ``rho(d) = sum_k P(d at rank k) theta_k`` (:func:`ultr.exposure.logging_exposure`), which counts
    the chance that ``d`` was shown at all. Per-rank IPS (``ips``) weights by ``1 / theta_k`` of the shown
    rank and is biased when the policy shows only the top ``K``: documents that a session did not show
    are missing from its loss. The loss runs over every candidate of the session's query (unshown ones
    as not clicked, :func:`ultr.data.candidate_batches`), so that it is linear in the weighted clicks.
    """

    name = "policy-aware-ips"
    needs = frozenset({Need.CLICKS, Need.PROPENSITIES, Need.LOGGING_PROPENSITIES, Need.CANDIDATES})
    #: batches of whole query lists under ``aggregate``
    lists_per_session_batch = 16

    Options = AggregatingExposureOptions

    def __init__(self, ranker, list_size, loss=None, clip: float = 0.01, exposure_samples: int = 10_000,
                 aggregate: bool = False):
        super().__init__(ranker, list_size, loss, clip)
        self.aggregate = aggregate

    def loss(self, features, batch):
        if self.aggregate:  # query lists labelled with the mean of c / max(rho, clip) over their sessions
            return LOSSES[self.loss_kind](self.ranker(features), batch.labels, where=batch.mask)
        return super().loss(features, batch)


@register_learner
class PolicyObliviousIPS(IPS):
    """Per-rank IPS over every candidate: the policy-oblivious estimator of Oosterhuis and de Rijke (SIGIR 2020).

    The loss runs over all candidates of the session's query, as in policy-aware IPS, but a click on a
    document shown at rank ``k`` is weighted by ``1 / theta_k`` and unshown candidates count as not
    clicked. Its expected label is ``P(d in the top K) R(d)``: under stochastic top-``K`` logging it
    favours the documents the logging policy tends to show. It is the baseline that policy-aware IPS
    corrects; ``ips`` (the loss over the shown documents only) is a third variant.
    """

    name = "policy-oblivious-ips"
    needs = frozenset({Need.CLICKS, Need.PROPENSITIES, Need.CANDIDATES})

    def loss(self, features, batch):
        return ips_loss(self.ranker(features), batch.clicks.astype(jnp.float32), batch.examination,
                        where=batch.mask, clip=self.clip, loss=self.loss_kind)


@register_learner
class DoublyRobust(Learner):
    """Doubly robust estimation for position bias (Oosterhuis, TOIS 2023).

    A regression model ``r̂ = sigmoid(g(x))`` (the ranker's architecture, trained apart on the shown
    documents' clicks, ``E[c] = θ_k r̂``) gives every candidate of a query the label
    ``y(d) = r̂(d) + (c(d) - θ(d) r̂(d)) / ρ(d)`` averaged over the query's sessions
    (:func:`ultr.losses.doubly_robust_labels`; ``θ`` the examination at the shown rank, 0 when not shown,
    ``ρ`` the expected examination under the logging policy, as in policy-aware IPS). The labels are
    unbiased for any ``r̂``; a good ``r̂`` lowers their variance, and it labels the candidates that no
    session showed, which IPS counts as irrelevant.

    The ranker minimises the bounded softmax cross-entropy of those labels (:func:`ultr.losses.bounded_softmax_loss`):
    linear in them, as IPS's softmax loss is, and bounded below for their negative values (shown, unclicked
    documents with ``θ > ρ``), where the plain softmax cross-entropy is not. Each step takes a batch of
    sessions, the regression model fitted by the click cross-entropy of the shown documents
    (:func:`ultr.losses.known_examination_loss`). With ``--aggregate true`` a step takes whole queries
    instead, with labels from the sufficient statistics of all their sessions (the means of ``c / ρ`` and
    ``θ / ρ``, and the clicks and impressions at each rank): the same labels on average, and one step sees
    every session of its queries.
    """

    name = "doubly-robust"
    needs = frozenset({Need.CLICKS, Need.PROPENSITIES, Need.LOGGING_PROPENSITIES, Need.CANDIDATES})
    losses = ("bounded-softmax", "mse")
    aggregate_statistics = True
    lists_per_session_batch = 16

    Options = AggregatingExposureOptions

    def __init__(self, ranker, list_size, loss=None, clip: float = 0.01, exposure_samples: int = 10_000,
                 aggregate: bool = False, examination=None):
        super().__init__(ranker, list_size, loss)
        self.clip = clip
        self.aggregate = aggregate
        self.regression = nnx.clone(ranker)  # the same architecture and initialisation, trained apart
        if aggregate:
            if examination is None or len(examination) < list_size:
                raise ValueError(f"doubly-robust: --aggregate needs an examination probability for each of the "
                                 f"{list_size} ranks")
            self.examination = Statistic(jnp.asarray(np.asarray(examination, np.float64)[:list_size], jnp.float32))

    @classmethod
    def build(cls, ranker, list_size, *, loss=None, options=None, propensities=None, num_features=None,
              seed=0):
        options = options if options is not None else cls.Options()
        examination = None if propensities is None else propensities.examination
        return cls(ranker, list_size, loss, **dataclasses.asdict(options), examination=examination)

    def loss(self, features, batch):
        regression_scores = self.regression(features)
        if self.aggregate:
            labels, regression_loss = aggregated_doubly_robust(regression_scores, batch.labels,
                                                               self.examination[...], where=batch.mask)
        else:
            regression_loss = known_examination_loss(regression_scores, batch.clicks, batch.examination,
                                                     where=batch.mask)
            labels = doubly_robust_labels(batch.clicks, batch.examination, batch.propensity,
                                          jax.nn.sigmoid(regression_scores), where=batch.mask, clip=self.clip)
        return LOSSES[self.loss_kind](self.ranker(features), labels, where=batch.mask) + regression_loss


@register_learner
class Affine(Learner):
    """Affine correction for trust bias (Vardasbi et al., SIGIR 2020).

    With ``P(C=1) = alpha_k R + beta_k``, ``alpha_k = theta_k (eps+_k - eps-_k)`` and
    ``beta_k = theta_k eps-_k``, the label ``(c - beta_k) / alpha_k`` is an unbiased
    estimate of R; the softmax loss is linear in its labels, so it stays unbiased.
    See :func:`ultr.losses.affine_loss`.
    """

    name = "affine"
    needs = frozenset({Need.CLICKS, Need.TRUST_BIAS})
    losses = ("softmax", "sigmoid")
    loss_requirement = "the affine correction is unbiased for losses linear in the labels"

    @dataclasses.dataclass(frozen=True)
    class Options:
        min_alpha: float = option(0.01, "affine: smallest alpha_k (bounds the corrected labels)", check=positive,
                                  requirement="positive")

    def __init__(self, ranker, list_size, examination, epsilon_pos, epsilon_neg, loss=None,
                 min_alpha: float = 0.01):
        super().__init__(ranker, list_size, loss)
        full = np.asarray(examination, np.float64)
        if len(full) < list_size:
            raise ValueError(f"affine: the propensities cover {len(full)} ranks, the logs show {list_size}")
        theta = full[:list_size]
        eps_pos = np.broadcast_to(np.asarray(epsilon_pos, np.float64), full.shape)[:list_size]
        eps_neg = np.broadcast_to(np.asarray(epsilon_neg, np.float64), full.shape)[:list_size]
        self.alpha = Statistic(jnp.asarray(np.maximum(theta * (eps_pos - eps_neg), min_alpha), jnp.float32))
        self.beta = Statistic(jnp.asarray(theta * eps_neg, jnp.float32))

    @classmethod
    def build(cls, ranker, list_size, *, loss=None, options=None, propensities=None, num_features=None,
              seed=0):
        if propensities is None or propensities.examination is None or propensities.epsilon_pos is None \
                or propensities.epsilon_neg is None:
            raise ValueError(f"affine needs {Need.TRUST_BIAS.what}: give {Need.TRUST_BIAS.supplied_by}")
        options = options if options is not None else cls.Options()
        return cls(ranker, list_size, propensities.examination, propensities.epsilon_pos, propensities.epsilon_neg,
                   loss, options.min_alpha)

    def loss(self, features, batch):
        return affine_loss(self.ranker(features), batch.clicks, self.alpha[...], self.beta[...], where=batch.mask,
                           loss=self.loss_kind)

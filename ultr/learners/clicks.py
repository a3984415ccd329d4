"""Learners that take clicks (or labels) as they are: the naive baseline, the skyline, the logging policy."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from simulators.metadata import linear_policy_scores

from ..losses import LOSSES
from ..options import non_negative, option
from .base import Learner, Need, register_learner


@register_learner
class Naive(Learner):
    """Clicks taken as relevance labels (the biased baseline)."""

    name = "naive"
    losses = ("softmax", "sigmoid", "pairwise", "lambdarank", "mse", "bounded-softmax")

    def loss(self, features, batch):
        return LOSSES[self.loss_kind](self.ranker(features), batch.clicks.astype(jnp.float32), where=batch.mask)


@register_learner
class Skyline(Learner):
    """Full-information skyline: trained on the true relevance labels of the training split.

    ``labels="gain"`` (default) trains on the nDCG gains ``2^y - 1``, ``"grade"`` on ``y``.
    """

    name = "skyline"
    needs = frozenset({Need.LABELS})
    losses = ("softmax", "sigmoid", "pairwise", "lambdarank", "mse", "bounded-softmax")

    @dataclasses.dataclass(frozen=True)
    class Options:
        labels: str = option("gain", "skyline: train on the nDCG gains 2^y - 1 (gain) or the grades y (grade)",
                             choices=("gain", "grade"))

    #: a query list holds many more documents than a session: batches of batch_size / 8 lists
    lists_per_session_batch = 8
    #: a few hundred queries make a handful of steps per epoch: at least this many steps, with early stopping
    min_steps = 4_000

    def __init__(self, ranker, list_size, loss=None, labels: str = "gain"):
        super().__init__(ranker, list_size, loss)
        if labels not in ("gain", "grade"):
            raise ValueError(f"unknown skyline labels {labels!r}; choose gain or grade")
        self.labels = labels

    def loss(self, features, batch):
        labels = jnp.exp2(batch.labels) - 1.0 if self.labels == "gain" else batch.labels
        return LOSSES[self.loss_kind](self.ranker(features), labels, where=batch.mask)


@register_learner
class LoggingPolicy(Learner):
    """The logs' production ranker itself (not trained): the reference a learner should beat."""

    name = "logging-policy"
    needs = frozenset({Need.LOGGING_POLICY})
    losses = ()
    trainable = False

    def loss(self, features, batch):  # pragma: no cover - never trained
        raise TypeError("the logging policy is not trained")

    @classmethod
    def fixed_scores(cls, metadata, features: np.ndarray, options) -> np.ndarray:
        """Scores ``[N]`` of raw features ``[N, F]`` without training."""
        return cls.policy_scores(metadata, features)

    @staticmethod
    def policy_scores(metadata, features: np.ndarray) -> np.ndarray:
        """Scores ``[N]`` of the logging policy's linear ranker on raw features ``[N, F]``."""
        model = metadata.linear_policy() if metadata is not None else None
        if model is None:
            raise ValueError("logging-policy needs " + Need.LOGGING_POLICY.supplied_by
                             + " (its weights are in simulation.json)")
        return linear_policy_scores(model, features)


@register_learner
class FeatureScore(Learner):
    """One feature as the score (not trained): a lexical baseline such as BM25 (feature 0 of ``baidu:DIR``)."""

    name = "feature"
    needs = frozenset()
    losses = ()
    trainable = False

    @dataclasses.dataclass(frozen=True)
    class Options:
        feature: int = option(0, "feature: index of the feature that is the score (0 is bm25 in baidu:DIR)",
                              check=lambda v: isinstance(v, int) and non_negative(v), requirement="a feature index")

    def __init__(self, ranker, list_size, loss=None, feature: int = 0):
        super().__init__(ranker, list_size, loss)
        self.feature = feature

    def loss(self, features, batch):  # pragma: no cover - never trained
        raise TypeError("the feature baseline is not trained")

    @classmethod
    def fixed_scores(cls, metadata, features: np.ndarray, options) -> np.ndarray:
        index = options.feature
        if not 0 <= index < features.shape[1]:
            raise ValueError(f"--feature {index}: the dataset has {features.shape[1]} features (0..{features.shape[1] - 1})")
        return np.asarray(features[:, index], np.float64)

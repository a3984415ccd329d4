"""Learners that take clicks (or labels) as they are: the naive baseline, the skyline, the logging policy."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from ..losses import LOSSES
from ..options import option
from .base import Learner, Need, register_learner


@register_learner
class Naive(Learner):
    """Clicks taken as relevance labels (the biased baseline)."""

    name = "naive"
    losses = ("softmax", "sigmoid", "pairwise", "lambdarank")

    def loss(self, features, batch):
        return LOSSES[self.loss_kind](self.ranker(features), batch.clicks.astype(jnp.float32), where=batch.mask)


@register_learner
class Skyline(Learner):
    """Full-information skyline: trained on the true relevance labels of the training split.

    ``labels="gain"`` (default) trains on the nDCG gains ``2^y - 1``, ``"grade"`` on ``y``.
    """

    name = "skyline"
    needs = frozenset({Need.LABELS})
    losses = ("softmax", "sigmoid", "pairwise", "lambdarank")

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

    @staticmethod
    def policy_scores(metadata, features: np.ndarray) -> np.ndarray:
        """Scores ``[N]`` of the logging policy's linear ranker on raw features ``[N, F]``."""
        model = metadata.linear_policy() if metadata is not None else None
        if model is None:
            raise ValueError("logging-policy needs " + Need.LOGGING_POLICY.supplied_by
                             + " (its weights are in simulation.json)")
        return ((features - np.asarray(model["mean"])) / np.asarray(model["scale"])) @ np.asarray(model["weights"])

"""Counterfactual learners: ``flax.nnx`` modules that hold a ranker (and any bias
model) and define the loss of a click batch, registered in :data:`LEARNERS`.

One module per family: :mod:`.clicks` (naive, skyline, logging policy),
:mod:`.weighting` (IPS, affine), :mod:`.dla`, :mod:`.regression_em`,
:mod:`.two_tower`, :mod:`.pairwise`. The losses are pure functions in
:mod:`ultr.losses`; :mod:`.base` defines the interface.
"""

from ..losses import LOSSES, ranking_loss, sigmoid_loss
from .base import LEARNERS, Learner, Need, NoOptions, Statistic, register_learner
from .clicks import FeatureScore, LoggingPolicy, Naive, Skyline
from .dla import DLA
from .pairwise import PairD
from .regression_em import RegressionEM
from .two_stage import TwoStage, TwoStageCandidates, TwoStagePipeline, TwoStageRanker, TwoStageTop1
from .two_tower import TwoTower
from .weighting import IPS, Affine, DoublyRobust, PolicyAwareIPS, PolicyObliviousIPS

sigmoid_cross_entropy = sigmoid_loss  # the name of earlier releases

__all__ = [
    "DLA",
    "DoublyRobust",
    "IPS",
    "LEARNERS",
    "LOSSES",
    "Affine",
    "Learner",
    "FeatureScore",
    "LoggingPolicy",
    "Naive",
    "Need",
    "NoOptions",
    "PairD",
    "PolicyAwareIPS",
    "PolicyObliviousIPS",
    "RegressionEM",
    "Skyline",
    "Statistic",
    "TwoStage",
    "TwoStageCandidates",
    "TwoStagePipeline",
    "TwoStageRanker",
    "TwoStageTop1",
    "TwoTower",
    "ranking_loss",
    "register_learner",
]

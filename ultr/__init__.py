"""ultr: counterfactual learning to rank from click logs (propensity estimation, learners, experiments).

Builds on :mod:`click_models` and :mod:`simulators`. The registries
(:data:`LEARNERS`, :data:`ESTIMATORS`, :data:`LOSSES`, :data:`OPTIMIZERS`,
:data:`RANKERS`) hold every concept by name; the core takes the objects.
"""

__version__ = "0.1.0"

from .estimators import ESTIMATORS, Estimator, MissingInterventionError, PropensityEstimate, estimate, register_estimator
from .experiment import load_config, run_experiment
from .learners import LEARNERS, Learner, Need, register_learner
from .losses import LOSSES
from .metrics import evaluate_rankings
from .optimizers import OPTIMIZERS
from .propensities import Propensities, resolve_propensities
from .rankers import RANKERS, make_ranker
from .saved import load_ranker, read_model, save_learner
from .training import (TrainConfig, TrainResult, make_learner, make_optimizer, train, train_config, train_learner,
                       write_outputs)

__all__ = [
    "ESTIMATORS",
    "Estimator",
    "LEARNERS",
    "LOSSES",
    "Learner",
    "MissingInterventionError",
    "Need",
    "OPTIMIZERS",
    "Propensities",
    "PropensityEstimate",
    "RANKERS",
    "TrainConfig",
    "TrainResult",
    "estimate",
    "evaluate_rankings",
    "load_config",
    "load_ranker",
    "make_learner",
    "make_optimizer",
    "make_ranker",
    "read_model",
    "register_estimator",
    "register_learner",
    "resolve_propensities",
    "run_experiment",
    "save_learner",
    "train",
    "train_config",
    "train_learner",
    "write_outputs",
]

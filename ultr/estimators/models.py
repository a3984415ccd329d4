"""Estimators that fit a model of clicks: the position-based model by EM, and DLA's propensity model."""

from __future__ import annotations

import numpy as np

from click_models.fitting import fit_em_counts

from .base import Estimator, PropensityEstimate, normalise, register_estimator


@register_estimator
class PBMExpectationMaximisation(Estimator):
    """The position-based model fitted by EM with a table of document attraction (Chuklin et al. 2015; the RegressionEM idea)."""

    name = "em"
    needs = "documents seen at several ranks (any intervention or several policies); identifiable only then"
    default_bootstrap = 0

    def estimate(self, counts, *, bootstrap=0, seed=0):
        # EM crawls: stop on the parameters, not on a relative likelihood gain (that stops ~1e-3 short)
        result = fit_em_counts("pbm", counts, max_iterations=5000, tolerance=1e-8, log_likelihood_tolerance=0.0)
        return PropensityEstimate(self.name, normalise(result.tables["examination"]), None, None,
                                  counts.num_sessions, {"converged": bool(result.converged),
                                                        "iterations": len(result.history)})


@register_estimator
class DualLearning(Estimator):
    """The propensities learned by the dual learning algorithm (Ai et al., SIGIR 2018); trains a ranker on --data."""

    name = "dla"
    needs = "the dataset the logs were simulated from (--data): DLA trains a ranker on its features"
    needs_data = True
    default_bootstrap = 0

    def estimate(self, counts, *, bootstrap=0, seed=0):  # pragma: no cover - needs features, see estimate_log
        raise TypeError("the dla estimator trains a ranker: use estimate_log(logs, data=...)")

    def estimate_log(self, logs, *, data=None, bootstrap=None, seed=0, epochs: int = 2):
        self.replicates(bootstrap)  # refuses a positive --bootstrap
        from click_models.logs import count_sessions
        from simulators.datasets import load_dataset

        from ..training import TrainConfig, train

        if data is None:
            raise ValueError("the dla estimator trains a ranker: give --data (the dataset the logs come from)")
        # the goal is the propensity model: train to the end (no early stopping), with ULTRA's optimiser settings
        config = TrainConfig(learner="dla", hidden=(64, 32), seed=seed, epochs=epochs, patience=10**9,
                             eval_every=1000, optimizer="adagrad", learning_rate=0.05,
                             learner_options={"max_weight": 1e9})
        dataset = load_dataset(data) if isinstance(data, str) else data
        result = train(logs, dataset, config, progress=False)
        return PropensityEstimate(self.name, np.asarray(result.propensities), None, None, count_sessions(logs))

"""Propensity estimation from click-log files (the edge of :mod:`ultr.estimators`).

``estimate(logs, "randtopk")`` reads and counts the log, then runs the
estimator on the counts; see :mod:`ultr.estimators` for the estimators.
"""

from __future__ import annotations

import numpy as np

from simulators.metadata import LogMetadata

from .estimators import ESTIMATORS, MissingInterventionError, PropensityEstimate, estimate
from .plots import plot_estimate

NEEDS = {name: estimator.needs for name, estimator in ESTIMATORS.items()}


def true_examination(logs) -> np.ndarray | None:
    """The simulation's examination per rank, normalised at rank 1 (None for real logs)."""
    metadata = LogMetadata.read(logs)
    return None if metadata is None else metadata.true_examination()


__all__ = ["ESTIMATORS", "NEEDS", "MissingInterventionError", "PropensityEstimate", "estimate", "plot_estimate",
           "true_examination"]

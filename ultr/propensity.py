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


def mean_log_examination(logs) -> np.ndarray | None:
    """The mean over a simulated log's sessions of the true examination probability per rank, normalised at
    rank 1: the reference for models whose examination is not one curve (cascades, UBM), where it depends on
    the documents shown above. None for a log without the ``examination`` column (a real log)."""
    from click_models.logs import click_log_files, iter_click_log, read_schema

    if "examination" not in read_schema(click_log_files(logs)[0]).names:
        return None
    total = shown = None
    for batch in iter_click_log(logs, columns=["examination"]):
        exam = np.where(batch.mask, np.asarray(batch.examination, np.float64), 0.0)
        total = exam.sum(0) if total is None else total + exam.sum(0)
        shown = batch.mask.sum(0) if shown is None else shown + batch.mask.sum(0)
    if total is None or shown[0] == 0:
        return None
    mean = np.where(shown > 0, total / np.maximum(shown, 1), np.nan)
    return mean / mean[0]


__all__ = ["ESTIMATORS", "NEEDS", "MissingInterventionError", "PropensityEstimate", "estimate", "plot_estimate",
           "true_examination", "mean_log_examination"]

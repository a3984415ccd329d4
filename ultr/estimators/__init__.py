"""Propensity (examination) estimation, registered in :data:`ESTIMATORS`.

Every estimator returns examination per rank normalised at rank 1 from the
counts of a log (:class:`click_models.counts.ClickCounts`):

* :mod:`.randomisation`: ``ctr`` (the biased baseline), ``randtopk``, ``swap``;
* :mod:`.harvesting`: ``pivot``, ``adjacent``, ``allpairs`` (intervention harvesting);
* :mod:`.mixture`: ``trust-bias`` (relevant and non-relevant click probabilities);
* :mod:`.models`: ``em`` (the position-based model by EM), ``dla`` (trains a ranker).
"""

from __future__ import annotations

from pathlib import Path

from click_models.engine import distributes
from click_models.logs import ClickLogError

from .base import (ESTIMATORS, Estimator, MissingInterventionError, PropensityEstimate, normalise, percentiles,
                   register_estimator)

# registration, in the order of the docs' table
from . import randomisation  # noqa: E402, F401, I001
from . import harvesting  # noqa: E402, F401
from . import mixture  # noqa: E402, F401
from . import models  # noqa: E402, F401


def estimate(logs, estimator, *, data=None, bootstrap: int | None = None, seed: int = 0,
             engine=None) -> PropensityEstimate:
    """Run one estimator (name or instance) on the click log at ``logs``; ``bootstrap`` replicates for the
    intervals (None: the estimator's default, ``Estimator.default_bootstrap``); ``engine``
    (:mod:`click_models.engine`) runs the counting pass part by part."""
    instance = ESTIMATORS.lookup(estimator, "--estimator") if isinstance(estimator, str) else estimator
    engine_given = distributes(engine)
    if engine_given and instance.needs_data:
        raise ValueError(f"--engine {engine.name}: the {instance.name} estimator trains a ranker and has no counting "
                         "pass to distribute (use --engine local)")
    try:
        extra = {"engine": engine} if engine_given else {}
        return instance.estimate_log(logs, data=data, bootstrap=bootstrap, seed=seed, **extra)
    except MissingInterventionError as error:
        raise MissingInterventionError(f"{Path(logs)}: {error}") from None
    except ClickLogError as error:
        if str(error).startswith(str(logs)):
            raise
        raise ClickLogError(f"{Path(logs)}: {error}") from None


__all__ = ["ESTIMATORS", "Estimator", "MissingInterventionError", "PropensityEstimate", "estimate", "normalise",
           "percentiles", "register_estimator"]

"""The propensity-estimator interface and the estimates it returns.

Every estimator returns examination per rank normalised at rank 1,
``theta_k / theta_1``, with bootstrap confidence intervals where they are
cheap. Estimators are functions of the counts of a log
(:class:`click_models.counts.ClickCounts`); reading files stays at the edge
(:func:`ultr.estimators.estimate`). Adding one is one class plus
``@register_estimator`` (see ``docs/contributing.md``).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar

import numpy as np

from click_models.counts import ClickCounts
from click_models.logs import ClickLogError
from click_models.registry import Registry


class MissingInterventionError(ClickLogError):
    """The log lacks the interventions an estimator needs."""


@dataclasses.dataclass
class PropensityEstimate:
    """Examination per rank ``[K]`` normalised at rank 1, with optional 95% intervals ``[K]``."""

    estimator: str
    examination: np.ndarray
    ci_low: np.ndarray | None
    ci_high: np.ndarray | None
    sessions: int
    extra: dict = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict:
        as_list = lambda x: None if x is None else [None if not np.isfinite(v) else float(v) for v in x]  # noqa: E731
        out = {"estimator": self.estimator, "examination": as_list(self.examination),
               "ci_low": as_list(self.ci_low), "ci_high": as_list(self.ci_high), "sessions": self.sessions}
        for key, value in self.extra.items():  # per-rank arrays, or scalars such as converged / iterations
            out[key] = value if isinstance(value, (bool, int, str)) else as_list(np.asarray(value, np.float64))
        return out


class Estimator(abc.ABC):
    """A propensity estimator: ``estimate(counts, bootstrap=, seed=)`` on the counts of a log."""

    name: ClassVar[str] = ""
    #: what the log must contain, and how to simulate it (the error message of a log without it)
    needs: ClassVar[str] = "nothing beyond clicks"
    #: whether the counts must be split by the sessions' intervention code
    by_intervention: ClassVar[bool] = False
    #: bootstrap replicates when none are asked for (0: the estimator reports no interval)
    default_bootstrap: ClassVar[int] = 200
    #: whether it trains a ranker on the dataset's features (then --data is needed)
    needs_data: ClassVar[bool] = False

    @abc.abstractmethod
    def estimate(self, counts: ClickCounts, *, bootstrap: int = 200, seed: int = 0) -> PropensityEstimate:
        """Examination per rank, normalised at rank 1, from the counts of a log."""

    def simulation_problem(self, config) -> str | None:
        """Why logs simulated with ``config`` (a SimulationConfig) cannot feed this estimator (None: they can)."""
        return None

    def replicates(self, bootstrap: int | None) -> int:
        """The bootstrap replicates to draw: ``bootstrap`` as given, or the estimator's default for None."""
        if bootstrap is None:
            return self.default_bootstrap
        if bootstrap > 0 and self.default_bootstrap == 0:
            raise ValueError(f"--bootstrap: the {self.name} estimator reports no interval (give 0 or leave it out)")
        return bootstrap

    def estimate_log(self, logs, *, data=None, bootstrap: int | None = None, seed: int = 0,
                     engine=None) -> PropensityEstimate:
        """Read and count the log (``engine``: part by part, see :mod:`click_models.engine`), then
        :meth:`estimate` (``bootstrap`` None: the estimator's default)."""
        bootstrap = self.replicates(bootstrap)
        counts = ClickCounts.from_log(logs, by_intervention=self.by_intervention, engine=engine)
        if counts.num_sessions == 0:
            raise ClickLogError("the click log has no sessions")
        if counts.total_clicks == 0:
            raise ClickLogError("the click log has no clicks: there is nothing to estimate propensities from")
        return self.estimate(counts, bootstrap=bootstrap, seed=seed)

    def missing(self, detail: str = "this log has none") -> MissingInterventionError:
        return MissingInterventionError(f"the {self.name} estimator needs {self.needs}; {detail}")


ESTIMATORS: Registry[Estimator] = Registry("propensity estimator")


def register_estimator(cls: type[Estimator]) -> type[Estimator]:
    """Class decorator: add an estimator (an instance of ``cls``) to :data:`ESTIMATORS`."""
    ESTIMATORS.add(cls.name, cls(), summary=(cls.__doc__ or "").strip().splitlines()[0])
    return cls


def normalise(theta: np.ndarray) -> np.ndarray:
    """``theta / theta[..., 0]`` (NaN where rank 1 has no estimate)."""
    theta = np.asarray(theta, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return theta / theta[..., :1]


def percentiles(replicates: np.ndarray, level: float = 0.95):
    """Percentile interval per rank of bootstrap replicates ``[B, K]``; NaN where no replicate has a value."""
    alpha = (1 - level) / 2
    replicates = np.where(np.isfinite(replicates), replicates, np.nan)
    supported = ~np.isnan(replicates).all(axis=0)
    low, high = np.full(replicates.shape[1:], np.nan), np.full(replicates.shape[1:], np.nan)
    low[supported] = np.nanpercentile(replicates[:, supported], 100 * alpha, axis=0)
    high[supported] = np.nanpercentile(replicates[:, supported], 100 * (1 - alpha), axis=0)
    return low, high

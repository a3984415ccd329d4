"""The metadata of a simulated click log: one typed object, stored once as ``simulation.json``.

Written by the simulator beside the Parquet parts and read by everything that
can use it (the oracle propensities, the logging-policy reference, the true
examination curve). A log that was never simulated (a real log) has none, and
:meth:`LogMetadata.read` returns ``None`` for it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from click_models.logs import ClickLogError, atomic_write_json

FILE_NAME = "simulation.json"


@dataclasses.dataclass(frozen=True)
class LogMetadata:
    """What defines a simulated log, as in ``simulation.json``.

    Attributes:
      config: the :class:`~simulators.simulation.SimulationConfig` as a dict.
      seed: the simulation seed.
      max_label: the highest relevance grade used for the attraction.
      policies: the logging policies' names, indexed by the log's ``policy`` column.
      policy_models: per policy ``{name, temperature, weights, mean, scale}`` (weights of linear rankers).
      rank_parameters: the click model's rank and session parameters.
      intervention_codes: what the ``intervention`` column means.
      summary: sessions, timings and CTR per rank of the run (None before it finished).
      dataset: the split the log was simulated from: name, sizes and the content ``fingerprint``
        (:func:`simulators.datasets.fingerprint`; None in logs that predate it).
    """

    config: dict
    seed: int
    max_label: int
    policies: list[str]
    policy_models: list[dict]
    rank_parameters: dict[str, list]
    intervention_codes: str
    summary: dict | None = None
    dataset: dict | None = None

    # ------------------------------------------------------------------ storage
    def to_json(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None or k not in ("summary", "dataset")}

    @classmethod
    def from_json(cls, data: dict, where: str = FILE_NAME) -> "LogMetadata":
        fields = {f.name for f in dataclasses.fields(cls)}
        missing = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING} - set(data)
        if missing:
            raise ClickLogError(f"{where}: simulation metadata lacks {', '.join(sorted(missing))}")
        return cls(**{k: v for k, v in data.items() if k in fields})

    def write(self, directory: str | Path) -> Path:
        return atomic_write_json(self.to_json(), Path(directory) / FILE_NAME)

    @staticmethod
    def path(logs: str | Path) -> Path:
        from click_models.storage import log_location

        logs = log_location(logs)  # a local path, or a Location on another filesystem
        return (logs if logs.is_dir() else logs.parent) / FILE_NAME

    @classmethod
    def read(cls, logs: str | Path | None) -> "LogMetadata | None":
        """The metadata of the log at ``logs`` (a directory or one of its files); None when it has none."""
        if logs is None:
            return None
        path = cls.path(logs)
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ClickLogError(f"{path}: cannot read the simulation metadata: {error}") from None
        return cls.from_json(data, str(path))

    # ------------------------------------------------------------------ what readers use
    @property
    def click_model(self) -> str:
        return self.config.get("click_model", "")

    def true_examination(self) -> np.ndarray | None:
        """The examination per rank normalised at rank 1, or None where it is not one curve (UBM, cascades)."""
        exam = self.rank_parameters.get("examination")
        if exam is None or np.ndim(exam) != 1:
            return None
        exam = np.asarray(exam, np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return exam / exam[0]

    def check_dataset(self, data, where: str = "--data") -> None:
        """Refuse a split that is not the one the log was simulated from (content and document order)."""
        from .datasets import fingerprint

        expected = (self.dataset or {}).get("fingerprint")
        if expected is None:
            return
        actual = fingerprint(data)
        if actual != expected:
            raise ClickLogError(f"{where}: the logs were simulated from another dataset: their documents are not in "
                                f"the dataset as given (content or document order differs: fingerprint "
                                f"{actual[:12]}, the log's {expected[:12]})")

    def candidate_temperature(self) -> float:
        """The Plackett-Luce temperature of a two-stage log's candidate draw (``candidate_temperature``, which
        defaults to ``temperature``, as the simulator draws)."""
        return float(self.config.get("candidate_temperature") or self.config.get("temperature") or 1.0)

    def linear_policy(self) -> dict | None:
        """``{weights, mean, scale}`` of the first linear logging policy, or None."""
        for model in self.policy_models:
            if model.get("weights") is not None:
                return model
        return None


def linear_policy_scores(model: dict, features: np.ndarray, dtype=None) -> np.ndarray:
    """Scores ``((x - mean) / scale) @ weights`` ``[N]`` of a linear logging policy (a ``policy_models`` entry)
    on raw features ``[N, F]``; ``dtype`` casts every input first (``np.float32`` scores as the simulator does)."""
    def cast(values):
        return np.asarray(values) if dtype is None else np.asarray(values, dtype)

    return ((cast(features) - cast(model["mean"])) / cast(model["scale"])) @ cast(model["weights"])

"""Where a learner's propensities come from: a file, an estimator run on the logs, or the oracle.

``--propensities`` (the ``propensities`` key of a config) takes one of

* ``oracle``: the truth of a simulated log: its ``examination`` column per session,
  and the click model's ``examination``, ``epsilon_pos``, ``epsilon_neg`` per rank
  (``simulation.json``);
* an estimator name (:data:`ultr.estimators.ESTIMATORS`): that estimator run on the logs;
* a path: a propensity JSON file (``ultr propensity`` writes them).

The choice is explicit (no silent fallback to the truth) and recorded in ``metrics.json``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from simulators.metadata import LogMetadata

ORACLE = "oracle"


@dataclasses.dataclass(frozen=True)
class Propensities:
    """Resolved propensities.

    Attributes:
      source: ``oracle``, an estimator name, or a file path, as given.
      kind: ``oracle``, ``estimator`` or ``file``.
      examination: ``[K]`` per rank (normalised or not), or None for the oracle's per-session column.
      epsilon_pos, epsilon_neg: ``[K]`` trust-bias click probabilities, where known.
      per_session: whether batches take the log's own ``examination`` column (the oracle).
    """

    source: str
    kind: str
    examination: np.ndarray | None
    epsilon_pos: np.ndarray | None = None
    epsilon_neg: np.ndarray | None = None
    per_session: bool = False

    def describe(self) -> dict:
        """What ``metrics.json`` records."""
        out = {"source": self.source, "kind": self.kind}
        if self.examination is not None:
            out["examination"] = np.asarray(self.examination, np.float64).tolist()
        if self.per_session:
            out["examination"] = "per session: the log's examination column"
        return out


def read_propensity_file(path: str | Path) -> dict:
    """A propensity file: JSON with ``examination`` per rank (normalised or not) and,
    for trust bias, ``epsilon_pos`` and ``epsilon_neg``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: cannot read the propensity file: {error}") from None
    if not isinstance(data, dict) or "examination" not in data:
        raise ValueError(f"{path}: a propensity file needs an 'examination' list")
    exam = np.asarray(data["examination"], np.float64)
    if exam.ndim != 1 or np.any(~np.isfinite(exam)) or np.any(exam <= 0):
        raise ValueError(f"{path}: 'examination' must be positive numbers per rank, got {data['examination']}")
    return data


def _optional(data: dict, key: str) -> np.ndarray | None:
    return None if data.get(key) is None else np.asarray(data[key], np.float64)


def check_propensity_source(source: str) -> str | None:
    """Why ``source`` cannot be a propensity source (None when it can): before any work is done."""
    from .estimators import ESTIMATORS

    if not isinstance(source, str) or not source.strip():
        return "must be oracle, an estimator name or a propensity file"
    if source.strip().lower() == ORACLE:
        return None
    if source in ESTIMATORS:
        if Path(source).exists():
            return f"{source!r} is both an estimator and a file here; write ./{source} for the file"
        return None
    if not Path(source).exists():
        return f"{source!r} is not oracle, an estimator ({', '.join(ESTIMATORS)}) or an existing file"
    return None


def resolve_propensities(source: str, logs, *, data=None, seed: int = 0, list_size: int | None = None,
                         trust_bias: bool = False) -> Propensities:
    """Turn a ``--propensities`` value into :class:`Propensities` for the log at ``logs``.

    ``list_size``: the ranks the propensities must cover. ``trust_bias``: the learner needs
    ``epsilon_pos`` and ``epsilon_neg`` too (the affine correction).
    """
    from .estimators import ESTIMATORS, estimate

    problem = check_propensity_source(source)
    if problem is not None:
        raise ValueError(f"--propensities: {problem}")
    if source.strip().lower() == ORACLE:
        metadata = LogMetadata.read(logs)
        if metadata is None:
            raise ValueError(f"--propensities oracle: {logs} is not a simulated log (no simulation.json); "
                             "give an estimator or a FILE")
        params = metadata.rank_parameters
        exam = params.get("examination")
        examination = np.asarray(exam, np.float64) if exam is not None and np.ndim(exam) == 1 else None
        if trust_bias and examination is None:
            raise ValueError(f"--propensities oracle: the log's click model ({metadata.click_model}) has no "
                             "examination curve per rank; give an estimator (trust-bias) or a FILE")
        resolved = Propensities(ORACLE, ORACLE, examination, _optional(params, "epsilon_pos"),
                                _optional(params, "epsilon_neg"), per_session=True)
        if resolved.epsilon_pos is None and trust_bias:
            # the simulation's truth without trust bias: examined documents are clicked by attraction alone
            K = len(examination)
            resolved = dataclasses.replace(resolved, epsilon_pos=np.ones(K), epsilon_neg=np.zeros(K))
    elif source in ESTIMATORS:
        name = ESTIMATORS.canonical(source)
        result = estimate(logs, name, data=data, bootstrap=0, seed=seed)
        if not np.all(np.isfinite(result.examination)) or np.any(result.examination <= 0):
            raise ValueError(f"--propensities {name}: the estimate has ranks without a positive value "
                             f"({np.round(result.examination, 4).tolist()}); this log cannot support it")
        extra = result.extra
        resolved = Propensities(name, "estimator", np.asarray(result.examination, np.float64),
                                _optional(extra, "epsilon_pos"), _optional(extra, "epsilon_neg"))
    else:
        content = read_propensity_file(source)
        resolved = Propensities(str(source), "file", np.asarray(content["examination"], np.float64),
                                _optional(content, "epsilon_pos"), _optional(content, "epsilon_neg"))
    if trust_bias and (resolved.epsilon_pos is None or resolved.epsilon_neg is None):
        raise ValueError(f"--propensities {source}: the affine correction needs epsilon_pos and epsilon_neg per "
                         "rank as well; use the trust-bias estimator, oracle, or a file that has them")
    if list_size is not None:
        for key in ("examination", "epsilon_pos", "epsilon_neg"):
            value = getattr(resolved, key)
            if value is not None and len(value) < list_size:
                raise ValueError(f"--propensities {source}: {key} covers {len(value)} ranks; the logs show "
                                 f"{list_size}")
    return resolved

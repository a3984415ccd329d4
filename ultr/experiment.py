"""Experiments: simulate, estimate propensities, train learners and tabulate, from one TOML config.

A config (every value may be a list, which makes a grid; ``seeds`` and
``learners`` are lists by nature)::

    name = "default"
    data = "synthetic"              # synthetic[:...], a LETOR file or fold directory, a dataset name
    sessions = 200_000              # or [10_000, 100_000, 1_000_000]
    seeds = [0, 1]
    learners = ["naive", "ips", "dla", "rem", "skyline"]
    estimators = []                 # propensity estimators, e.g. ["randtopk", "em"]
    metrics = ["ndcg@10", "ndcg@5", "err@10"]

    [simulation]                    # options of ultr simulate (SimulationConfig)
    click_model = "pbm"
    eta = 1.0                       # or [0.5, 1, 2]

    [training]                      # options of ultr train (TrainConfig and the learners' options)
    ranker = "mlp"
    hidden = [64, 32]
    propensities = "oracle"         # IPS and affine: oracle, an estimator name, or a file; a list is a grid

    [training.dla]                  # options for one learner only
    optimizer = "adagrad"

A ``[training]`` key applies to every listed learner that uses it (it is an
error when none does); a ``[training.<learner>]`` key must be used by that learner.

Logs are cached under ``runs/<name>/logs/<key>`` (the key hashes the dataset,
simulation options, sessions and seed), so a repeated simulation is reused.
Results go to ``runs/<name>/``: ``results.csv``, ``results.json``,
``results.md`` and seaborn plots.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import time
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd

from typing import Callable

from click_models.engine import distributes
from click_models.identifiability import rank_graph_of_log
from click_models.logs import atomic_write_json, atomic_write_text, count_sessions
from click_models.storage import StorageError, local_path, log_location
from simulators.simulation import SimulationConfig, Simulator, simulation_config

from .estimators import ESTIMATORS, estimate
from .learners import LEARNERS
from .metrics import parse_metric
from .options import OptionError
from .plots import plot_results
from .propensity import mean_log_examination, true_examination
from .training import TrainConfig, train, train_config, unused_reason

TOP_LEVEL = {"name", "data", "sessions", "seeds", "learners", "estimators", "metrics", "simulation", "training",
             "normalize", "logs"}
LIST_NATIVE = {"seeds", "learners", "estimators", "metrics"}
LIST_FIELDS = {"policies", "examination", "hidden", "tau", "trust_eps_pos", "trust_eps_neg", "continuation"}
PROPENSITY_HINT = 'set propensities = "oracle" (the simulation\'s truth), an estimator name or a file' 

DEFAULT_CONFIG = {
    "name": "default",
    "data": "synthetic",
    "sessions": 200_000,
    "seeds": [0, 1],
    "learners": ["naive", "ips", "dla", "rem", "skyline"],
    "estimators": [],
    "metrics": ["ndcg@10", "ndcg@5", "ndcg@1", "err@10"],
    "simulation": {"click_model": "pbm", "eta": 1.0},
    # ultr train's defaults (MLP 64-32, Adagrad 0.05, three passes: docs/results/defaults.md)
    "training": {"eval_every": 200, "propensities": "oracle"},
}


class ConfigError(ValueError):
    """A bad experiment config; the message names the key's path."""


def load_config(path: str | Path | None) -> dict:
    """An experiment config from a TOML file (``None``: the built-in default), as a dict for
    :func:`validate` and :func:`run_experiment`; a missing or malformed file raises :class:`ConfigError`
    naming the file and line."""
    if path is None:
        return copy.deepcopy(DEFAULT_CONFIG)
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such config file")
    try:
        config = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as error:
        raise ConfigError(f"{path}: {error}") from None
    if not config:  # most likely the wrong file; the built-in default is `ultr run` without one
        raise ConfigError(f"{path}: the config is empty; run `ultr run` without a file for the built-in default")
    config.setdefault("name", path.stem)
    return config


def _is_grid(key: str, value) -> bool:
    if key in LIST_NATIVE:
        return False
    if key in LIST_FIELDS:  # list-valued options: a list of lists is a grid
        return isinstance(value, list) and bool(value) and isinstance(value[0], list)
    return isinstance(value, list)


def grid(config: dict) -> list[dict]:
    """Every combination of the list-valued options: ``[{path: value}, ...]``."""
    axes = _axes(config)
    if not axes:
        return [{}]
    names = [name for name, _ in axes]
    return [dict(zip(names, combo)) for combo in itertools.product(*(values for _, values in axes))]


def _axes(config: dict) -> list[tuple[str, list]]:
    """The grid's dimensions: ``(path, values)`` of every list-valued option."""
    axes = []
    for key, value in config.items():
        if key in ("simulation", "training"):
            for sub, subvalue in value.items():
                if isinstance(subvalue, dict):  # [training.<learner>]: its options may be grids too
                    axes.extend((f"{key}.{sub}.{k}", v) for k, v in subvalue.items() if _is_grid(k, v))
                elif _is_grid(sub, subvalue):
                    axes.append((f"{key}.{sub}", subvalue))
        elif _is_grid(key, value):
            axes.append((key, value))
    return axes


def resolve(config: dict, point: dict) -> dict:
    out = copy.deepcopy(config)
    for path, value in point.items():
        *tables, key = path.split(".")
        target = out
        for table in tables:
            target = target[table]
        target[key] = value
    return out


def _with_section(error: Exception, where: str) -> str:
    text = str(error)
    return text if text.startswith(f"{where}.") else f"{where}: {text}"


def _readable_log(location: str) -> bool:
    """Whether a replayed log's location (a path or a pyarrow filesystem URI) exists; a bad URI is a config error."""
    try:
        return log_location(location).exists()
    except (StorageError, OSError) as error:
        raise ConfigError(f"logs: {error}") from None


def _local(location: str) -> Path:
    """A data path or file:// URI as a local path; other filesystems are a config error."""
    try:
        return local_path(location)
    except StorageError as error:
        raise ConfigError(f"data: {error}") from None


def _simulation_config(section: dict, where: str = "simulation") -> SimulationConfig:
    try:  # an option without effect is checked over the whole grid (_check_simulation_keys)
        return simulation_config(section, name=lambda key: f"{where}.{key}", strict=False)
    except ValueError as error:
        raise ConfigError(_with_section(error, where)) from None


#: [training] keys that the experiment sets itself, and the top-level key to use instead
EXPERIMENT_KEYS = {"seed": "seeds", "learner": "learners"}


def _train_config(section: dict, learner: str, seed: int, where: str = "training") -> TrainConfig:
    """The TrainConfig of one learner: ``[training]`` keys it uses, then its own ``[training.<learner>]``."""
    for table, values in [(where, section), *((f"{where}.{k}", v) for k, v in section.items() if isinstance(v, dict))]:
        for key, top in EXPERIMENT_KEYS.items():
            if key in values:
                raise ConfigError(f"{table}.{key}: set by the experiment; use the top-level {top!r}")
    shared = {k: v for k, v in section.items() if not isinstance(v, dict)}
    for key, value in section.items():
        if isinstance(value, dict) and key not in LEARNERS:
            raise ConfigError(f"{where}.{key}: unknown key (a table must be named after a learner)")
    own_name = LEARNERS.canonical(learner)
    own = next((v for k, v in section.items() if isinstance(v, dict) and LEARNERS.canonical(k) == own_name), {})
    names = {**{k: f"{where}.{k}" for k in shared}, **{k: f"{where}.{learner}.{k}" for k in own}}
    values = {**shared, **own, "learner": learner, "seed": seed}
    try:
        config = train_config(values, name=lambda key: names.get(key, f"{where}.{key}"), strict=False)
        for key in own:
            reason = unused_reason(key, config)
            if reason is not None:
                raise OptionError(f"{names[key]}: {reason}")
    except (OptionError, ValueError) as error:
        text = str(error)
        field = text.split(":", 1)[0]
        if field in {f.name for f in dataclasses.fields(TrainConfig)}:  # "propensities: ..." -> the key's path
            text = f"{names.get(field, f'{where}.{field}')}:{text.split(':', 1)[1]}"
        if " needs examination" in text:  # say it in the config's words
            text = f"{where}.propensities: " + text.split(": give")[0] + \
                f": {PROPENSITY_HINT} in [{where}] or [{where}.{learner}]"
        raise ConfigError(_with_section(text, where)) from None
    return config


def _check_shared_training_keys(section: dict, learners: list[str], where: str = "training") -> None:
    """A ``[training]`` key that none of the learners uses is an error (it would be silently ignored)."""
    from .training import learner_option_fields

    shared = {k: section[k] for k in ("ranker", "optimizer", "max_steps") if not isinstance(section.get(k, {}), dict)}

    def context(learner):  # what decides whether a key is used: the learner's ranker, optimiser and schedule
        own = next((v for k, v in section.items() if isinstance(v, dict) and k in LEARNERS
                    and LEARNERS.canonical(k) == LEARNERS.canonical(learner)), {})
        return {**shared, **{k: own[k] for k in ("ranker", "optimizer", "max_steps") if k in own}}

    try:
        configs = [TrainConfig(learner=LEARNERS.canonical(learner), **context(learner)) for learner in learners]
        reasons_of = {key: [unused_reason(key, c) for c in configs] for key in section}
    except (KeyError, ValueError):
        return  # an unknown learner, ranker or optimiser is reported with its own message
    known = {f.name for f in dataclasses.fields(TrainConfig)} | set(learner_option_fields())
    for key, value in section.items():
        if isinstance(value, dict) or key in ("learner", "seed") or key not in known:
            continue
        reasons = reasons_of[key]
        if configs and all(reasons):
            detail = "; ".join(f"{c.learner}: {r}" for c, r in zip(configs, reasons))
            raise ConfigError(f"{where}.{key}: none of the learners uses it ({detail})")


def validate(config: dict) -> list[dict]:
    """Check the whole config before any work; returns the grid points."""
    for key in config:
        if key not in TOP_LEVEL:
            raise ConfigError(f"{key}: unknown key; known: {', '.join(sorted(TOP_LEVEL))}")
    for key in ("simulation", "training"):
        if not isinstance(config.get(key, {}), dict):
            raise ConfigError(f"{key}: must be a table ([{key}])")
        config.setdefault(key, {})
    for key in LIST_NATIVE:
        if key in config and not isinstance(config[key], list):
            raise ConfigError(f"{key}: must be a list, got {config[key]!r}")
    name = config.get("name", "experiment")
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise ConfigError(f"name: must be a plain directory name inside --out-root, got {name!r}")
    replay = config.get("logs")
    if replay is not None:  # a real click log (Baidu-ULTR) replayed instead of simulated
        if not isinstance(replay, str) or not _readable_log(replay):
            raise ConfigError(f"logs: {replay!r} does not exist (a click log directory, e.g. ultr baidu convert's "
                              "OUT/logs)")
        for key in ("sessions",):
            if key in config:
                raise ConfigError(f"{key}: has no effect when logs are replayed (logs = {replay!r})")
        if config.get("simulation"):
            raise ConfigError(f"simulation: has no effect when logs are replayed (logs = {replay!r})")
    config.setdefault("seeds", [0])
    if "learners" not in config:
        config["learners"] = ["naive", "ips", "dla", "skyline"]
        # the default learners' IPS uses the simulation's truth (recorded in results.json's config)
        config["training"].setdefault("propensities", "oracle")
    config.setdefault("estimators", [])
    config.setdefault("metrics", ["ndcg@10"])
    if replay is None:
        config.setdefault("sessions", 100_000)
    config.setdefault("data", "synthetic")
    for key in ("seeds", "learners", "metrics"):
        if not config[key]:
            raise ConfigError(f"{key}: must not be empty")
    if not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**63 for s in config["seeds"]):
        raise ConfigError(f"seeds: must be non-negative integers below 2^63, got {config['seeds']!r}")
    for index, learner in enumerate(config["learners"]):
        if learner not in LEARNERS:
            raise ConfigError(f"learners[{index}]: unknown learner {learner!r}; choose from {', '.join(LEARNERS)}")
    for index, estimator in enumerate(config["estimators"]):
        if estimator not in ESTIMATORS:
            raise ConfigError(f"estimators[{index}]: unknown estimator {estimator!r}; "
                              f"choose from {', '.join(ESTIMATORS)}")
    for index, metric in enumerate(config["metrics"]):
        try:
            parse_metric(metric)
        except ValueError as error:
            raise ConfigError(f"metrics[{index}]: {error}") from None
    points = grid(config)
    if not points:
        empty = [path for path, values in _axes(config) if not values]
        raise ConfigError(f"{empty[0] if empty else 'grid'}: an empty list makes an empty grid")
    simulations = []
    for point in points:
        resolved = resolve(config, point)
        sessions = resolved.get("sessions", 1)
        if isinstance(sessions, bool) or not isinstance(sessions, int) or sessions < 1:
            raise ConfigError(f"sessions: must be a positive integer, got {sessions!r}")
        data = resolved["data"]
        if not isinstance(data, str):
            raise ConfigError(f"data: must be a string, got {data!r}")
        if data.startswith("baidu:"):
            if not _local(data[len("baidu:"):].rsplit(":lexical", 1)[0]).is_dir():
                raise ConfigError(f"data: {data}: no such converted Baidu-ULTR directory (ultr baidu convert --out)")
        elif not data.startswith("synthetic") and not _local(data).exists():
            from simulators.registry import DATASETS

            if data.lower() not in DATASETS:
                raise ConfigError(f"data: {data} does not exist")
        simulation = _simulation_config(resolved["simulation"])
        simulations.append(simulation)
        # a replayed log has no simulation to check the estimators against: what it holds is checked when read
        for index, estimator in enumerate(resolved["estimators"] if replay is None else []):
            problem = ESTIMATORS[estimator].simulation_problem(simulation)
            if problem is not None:
                raise ConfigError(f"estimators[{index}]: {problem}")
        _check_shared_training_keys(resolved["training"], resolved["learners"])
        for learner in resolved["learners"]:
            train = _train_config(resolved["training"], learner, 0)
            if replay is None and train.propensities in ESTIMATORS:
                problem = ESTIMATORS[train.propensities].simulation_problem(simulation)
                if problem is not None:
                    raise ConfigError(f"training.propensities ({learner}): {problem}")
    if replay is None:
        _check_simulation_keys(config["simulation"], simulations)
    return points


def _check_simulation_keys(section: dict, simulations: list[SimulationConfig]) -> None:
    """A ``[simulation]`` key that has no effect at any grid point is an error (it would be silently ignored)."""
    from simulators.simulation import simulation_field, unused_simulation_reason

    for key in section:
        reasons = [unused_simulation_reason(simulation_field(key), simulation) for simulation in simulations]
        if reasons and all(reasons):
            raise ConfigError(f"simulation.{key}: has no effect: {reasons[0]}")


def _logs_key(data, simulation: SimulationConfig, sessions: int, seed: int) -> str:
    """The cache key of a simulated log: the training split's content (not its path), the simulation, sessions, seed."""
    from simulators.datasets import fingerprint

    content = fingerprint(data.train) if hasattr(data, "train") else str(data)
    text = json.dumps([content, dataclasses.asdict(simulation), sessions, seed, "v2"], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_experiment(config: dict, out_root: Path = Path("runs"), progress: bool = True,
                   log: Callable[[str], None] | None = None, engine=None) -> pd.DataFrame:
    """Run every grid point and seed; write results and plots under ``out_root/<name>``.

    ``log`` receives one line per step (the command line prints them). ``engine``
    (:mod:`click_models.engine`; default: this process, one point after another) runs each (grid point, seed)
    as a task: with ``ray``, as Ray tasks, whose lines arrive when each finishes; ``out_root`` must then be on
    storage every worker sees. Results are written after every finished point either way.
    """
    from simulators.datasets import load_dataset

    say = log or (lambda line: None)
    points = validate(config)
    name = str(config.get("name", "experiment"))
    out = out_root / name
    out.mkdir(parents=True, exist_ok=True)
    rows, propensities, truths = [], [], []
    finished = set()
    previous = _previous_results(out, config)
    if previous is not None:  # a rerun of the same config: keep what finished, run the rest
        rows, propensities, truths = previous["results"], previous["propensities"], previous.get("truths", [])
        finished = {tuple(key) for key in previous.get("finished", [])}
    datasets = {}
    started = time.perf_counter()
    total = len(points) * len(config["seeds"])
    tasks = []
    for point in points:
        resolved = resolve(config, point)
        data = resolved["data"]
        if data not in datasets:
            datasets[data] = load_dataset(data, normalize=resolved.get("normalize"))
        for seed in resolved["seeds"]:
            label = ", ".join(f"{k}={v}" for k, v in point.items()) or "default"
            key = (json.dumps(point, sort_keys=True, default=str), seed)
            prefix = f"[{len(tasks) + 1}/{total}] {label}, seed {seed}"
            if key in finished:
                say(f"{prefix}: done in an earlier run (results kept)")
                tasks.append(None)
                continue
            tasks.append({"point": point, "resolved": resolved, "seed": seed, "key": key, "prefix": prefix,
                          "index": len(tasks)})
    earlier_rows, earlier_propensities, earlier_truths = list(rows), list(propensities), list(truths)
    results: dict[int, dict] = {}  # task index -> result: tables in grid order whatever order tasks finish in
    todo = [task for task in tasks if task is not None]
    bar = None
    if progress and todo:  # one bar over grid points x seeds; each step's line prints above it and names its step
        from tqdm import tqdm

        bar = tqdm(total=total, initial=total - len(todo), unit="point", desc="grid points x seeds",
                   dynamic_ncols=True, disable=None)  # None: no bar where stderr is not a terminal
        printer = say

        def say(line):  # noqa: F811 - the same lines, written around the bar
            with bar.external_write_mode():
                printer(line)
            bar.set_postfix_str(line.strip()[:50], refresh=True)

    def keep(result):  # every finished point is on disk: a run stopped later keeps it, and a rerun resumes after it
        for line in result["lines"]:
            say(line)
        results[result["index"]] = result
        truths[:] = earlier_truths or [r["truth"] for i in sorted(results) if (r := results[i])["truth"] is not None][:1]
        rows[:] = earlier_rows + [row for i in sorted(results) for row in results[i]["rows"]]
        propensities[:] = earlier_propensities + [row for i in sorted(results) for row in results[i]["propensities"]]
        finished.add(tuple(result["key"]))
        _write_tables(out, pd.DataFrame(rows), propensities, config, points, time.perf_counter() - started,
                      truths, sorted(finished))
        if bar is not None:
            bar.update(1)

    if distributes(engine):
        # grid points that differ only in training share a log: simulate each missing log once, first
        missing = {}
        for task in todo:
            logs = _point_logs(task, datasets, out)
            if task["resolved"].get("logs") is None and not (logs / "manifest.json").exists():
                missing.setdefault(str(logs), (task, logs))
        engine.map(_simulate_log, list(missing.values()), shared={"datasets": datasets},
                   progress=lambda line: say(line))
        engine.map(_run_point, todo, shared={"datasets": datasets, "out": out}, progress=keep)
    else:
        for task in todo:
            keep(_run_point(task, datasets=datasets, out=out, say=say))
    if bar is not None:
        bar.close()
    frame = pd.DataFrame(rows)
    table = write_results(out, frame, propensities, config, points, time.perf_counter() - started, truths,
                          sorted(finished))
    say(table)
    say(f"wrote {out}/results.csv, results.json, results.md and plots")
    return frame


def _point_logs(task: dict, datasets: dict, out: Path):
    """The log of a grid point and seed: the replayed one, or its entry in the cache of simulated logs."""
    resolved = task["resolved"]
    if resolved.get("logs") is not None:
        return log_location(resolved["logs"])
    simulation = _simulation_config(resolved["simulation"])
    return out / "logs" / _logs_key(datasets[resolved["data"]], simulation, resolved["sessions"], task["seed"])


def _simulate_log(item: tuple, *, datasets: dict) -> str:
    """Simulate a grid point's log into ``logs`` (an engine task too: a log shared by the points that differ only
    in training is simulated once)."""
    task, logs = item
    resolved = task["resolved"]
    Simulator(datasets[resolved["data"]], _simulation_config(resolved["simulation"]), seed=task["seed"]).run(
        logs, resolved["sessions"], progress=False, overwrite=True)  # overwrite: a cache entry left unfinished
    return f"{task['prefix']}: simulated {resolved['sessions']:,} sessions"


def _run_point(task: dict, *, datasets: dict, out: Path, say: Callable[[str], None] | None = None) -> dict:
    """One grid point and seed: simulate (or reuse) its log, estimate, train every learner.

    Returns its result rows, propensity rows, the log's true examination and, when ``say`` is None (an engine
    task), the lines to print; with ``say``, the lines go there as they happen.
    """
    lines: list[str] = []
    emit = say if say is not None else lines.append
    point, resolved, seed, prefix = task["point"], task["resolved"], task["seed"], task["prefix"]
    data = resolved["data"]
    dataset = datasets[data]
    rows, propensities = [], []
    logs = _point_logs(task, datasets, out)
    if resolved.get("logs") is not None:
        emit(f"{prefix}: replaying {logs}")
    elif not (logs / "manifest.json").exists():
        emit(f"{prefix}: simulating {resolved['sessions']:,} sessions")
        _simulate_log((task, logs), datasets=datasets)
    else:
        emit(f"{prefix}: reusing cached logs {logs.name}")
    truth = true_examination(logs)
    # what the plots draw: the curve, or for models without one (cascades, UBM) the log's mean examination
    drawn, drawn_kind = truth, "curve"
    if truth is None and (resolved["estimators"] or any(LEARNERS[name].estimates == "propensities"
                                                        for name in resolved["learners"])):
        drawn, drawn_kind = mean_log_examination(logs), "mean"
    if drawn is None:
        drawn_kind = None
    else:
        drawn = [None if not np.isfinite(v) else float(v) for v in drawn]
    identifiable = None
    if resolved["estimators"] or any(LEARNERS[learner].estimates for learner in resolved["learners"]):
        graph = rank_graph_of_log(logs)  # Hager et al. (ICTIR 2025): can this log identify position bias?
        identifiable = graph.connected
        if not identifiable:
            emit(f"    warning: {graph.warning()}")
    for estimator in resolved["estimators"]:
        result = estimate(logs, estimator, data=data, bootstrap=0, seed=seed)
        error = float(np.nanmax(np.abs(result.examination - truth))) if truth is not None else None
        propensities.append({**point, "seed": seed, "estimator": estimator,
                             "examination": result.examination.tolist(), "max_abs_error": error,
                             "identifiable": identifiable, "truth": drawn, "truth_kind": drawn_kind})
        emit(f"    {estimator:>12}: max error {error:.4f}" if error is not None else f"    {estimator}")
    for learner in resolved["learners"]:
        train_config = _train_config(resolved["training"], learner, seed)
        result = train(logs, dataset, train_config, progress=False)
        row = {**point, "sessions": resolved.get("sessions") or count_sessions(logs), "seed": seed,
               "learner": learner}
        row.update(_test_metrics(result, resolved["metrics"]))
        rows.append(row)
        if result.propensities is not None and LEARNERS[learner].estimates == "propensities":
            error = float(np.max(np.abs(np.array(result.propensities) - truth))) if truth is not None else None
            propensities.append({**point, "seed": seed, "estimator": learner,
                                 "examination": result.propensities, "max_abs_error": error,
                                 "identifiable": identifiable, "truth": drawn, "truth_kind": drawn_kind})
        emit(f"    {learner:>14}: " + ", ".join(f"{m} {row[m]:.4f}" for m in resolved["metrics"]
                                                if row[m] is not None))
    return {"key": task["key"], "index": task["index"], "rows": rows, "propensities": propensities, "lines": lines,
            "truth": None if truth is None else truth.tolist()}


def _test_metrics(result, metrics: list[str]) -> dict:
    """The requested metrics of a trained ranker's test scores."""
    from .training import evaluate_scores

    values = evaluate_scores(result.test_scores, result.test_lists, metrics, result.max_label)
    return {m: values[m] for m in metrics}


def _summary_table(frame: pd.DataFrame, metrics: list[str], group: list[str]) -> str:
    lines = ["| " + " | ".join(group + metrics) + " |", "|" + " --- |" * (len(group) + len(metrics))]
    for keys, part in frame.groupby(group, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        cells = []
        for metric in metrics:
            values = part[metric].dropna().to_numpy(dtype=float)
            if len(values) > 1:
                cells.append(f"{values.mean():.4f} ± {values.std(ddof=1):.4f}")
            else:  # one value (one seed): no spread to show
                cells.append(f"{values[0]:.4f}" if len(values) else "-")
        lines.append("| " + " | ".join([str(k) for k in keys] + cells) + " |")
    return "\n".join(lines)


def _previous_results(out: Path, config: dict) -> dict | None:
    """The results.json of an earlier run of the same config in ``out``, or None."""
    path = out / "results.json"
    if not path.exists():
        return None
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    same = json.dumps(previous.get("config"), sort_keys=True, default=str) == json.dumps(config, sort_keys=True,
                                                                                           default=str)
    # resume only a run that stopped before the end; a finished one is run again (reusing its cached logs)
    return previous if same and "finished" in previous and not previous.get("complete") else None


def _write_tables(out: Path, frame: pd.DataFrame, propensities: list[dict], config: dict, points: list[dict],
                  seconds: float, truths: list | None, finished: list, complete: bool = False) -> str:
    metrics = list(config["metrics"])
    axes = list(points[0].keys())
    atomic_write_text(frame.to_csv(index=False), out / "results.csv")
    atomic_write_json({"config": config, "results": frame.to_dict(orient="records"), "propensities": propensities,
                       "seconds": round(seconds, 1), "truths": truths or [], "finished": finished,
                       "complete": complete}, out / "results.json")
    table = _summary_table(frame, metrics, axes + ["learner"])
    over = (f"Mean ± standard deviation over seeds {config['seeds']}" if len(config["seeds"]) > 1
            else f"One seed ({config['seeds'][0]}): no spread")
    text = [f"# Experiment {config.get('name')}", "", f"{over}; data {config['data']}; {seconds:.0f} s.", "", table, ""]
    if propensities:
        prop = pd.DataFrame(propensities)
        text += ["## Propensities (max absolute error against the truth)", "",
                 _summary_table(prop.rename(columns={"max_abs_error": "max error"}), ["max error"],
                                axes + ["estimator"]), ""]
    atomic_write_text("\n".join(text), out / "results.md")
    return table


def write_results(out: Path, frame: pd.DataFrame, propensities: list[dict], config: dict, points: list[dict],
                  seconds: float, truths: list | None = None, finished: list | None = None) -> str:
    """results.csv, results.json, results.md and the plots; returns the Markdown table."""
    table = _write_tables(out, frame, propensities, config, points, seconds, truths, finished or [], complete=True)
    plot_results(out, frame, propensities, list(config["metrics"])[0], list(points[0].keys()),
                 truths[0] if truths else None)
    return table



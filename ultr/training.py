"""Training counterfactual learners on click logs and evaluating them on relevance labels.

The core, :func:`train_learner`, takes objects: a learner, an optax optimiser and
a source of batches. :func:`train` builds them from a :class:`TrainConfig`
(what ``ultr train`` and ``ultr run`` give) for a click log and a dataset, and
:func:`train_config` turns user-given option values (flags or TOML keys) into a
config, with an error for every option the chosen learner does not use.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from click_models.logs import atomic_write_json, atomic_write_text, click_log_files, count_clicks, infer_list_size
from simulators.datasets import Dataset, RankingData
from simulators.metadata import LogMetadata

from .data import FeatureStore, LabelBatch, candidate_batches, click_batches, label_batches, to_device
from .learners import LEARNERS, Learner, Need
from .losses import LOSSES
from .metrics import evaluate_rankings, parse_metric
from .optimizers import OPTIMIZERS
from .options import OptionError, check_all, coerce, fraction, non_negative, option, positive
from .propensities import Propensities, resolve_propensities
from .rankers import RANKERS, make_ranker

TEST_METRICS = ("ndcg@1", "ndcg@3", "ndcg@5", "ndcg@10", "err@10", "mrr@10")


def _metric_ok(name: str) -> bool:
    try:
        parse_metric(name)
    except ValueError:
        return False
    return True


@dataclasses.dataclass
class TrainConfig:
    """Options of ``ultr train`` and of ``[training]`` in ``ultr run`` configs (see ``docs/learners.md``).

    The defaults (MLP 64-32, Adagrad 0.05, three passes) are the setting under which IPS and DLA beat Naive on
    MQ2008, the MSLR-WEB and the Yahoo samples (``docs/results/defaults.md``).

    The learner's own hyperparameters (its ``Options``) go in ``learner_options``.
    """

    learner: str = option("dla", "the counterfactual learner", choices=lambda: LEARNERS)
    ranker: str = option("mlp", "the ranker", choices=lambda: RANKERS)
    hidden: tuple[int, ...] = option((64, 32), "MLP layer sizes (comma-separated)",
                                     check=lambda v: 1 <= v <= 65_536, requirement="integers in 1..65536")
    dropout: float = option(0.0, "MLP dropout rate", check=fraction, requirement="in [0, 1)")
    loss: str | None = option(None, "ranking loss (default: the learner's)", choices=lambda: LOSSES)
    batch_size: int = option(256, "sessions per training step", check=lambda v: 1 <= v <= 1_048_576,
                             requirement="in 1..1048576")
    learning_rate: float = option(0.05, "learning rate of the ranker", check=non_negative,
                                  requirement="non-negative")
    bias_learning_rate: float | None = option(None, "learning rate of the bias model (dla propensities, two-tower "
                                              "bias; default: --learning-rate)", check=positive,
                                              requirement="positive")
    weight_decay: float = option(1e-4, "AdamW weight decay", check=non_negative, requirement="non-negative")
    optimizer: str = option("adagrad", "optimiser", choices=lambda: OPTIMIZERS)
    epochs: int = option(3, "passes over the click log", check=positive, requirement="positive")
    max_steps: int | None = option(None, "stop after this many steps", check=positive, requirement="positive")
    eval_every: int = option(250, "validation every N steps", check=positive, requirement="positive")
    patience: int = option(8, "evaluations without improvement before early stopping", check=positive,
                           requirement="positive")
    seed: int = option(0, "random seed (ranker initialisation, batch order)", check=non_negative,
                       requirement="non-negative")
    propensities: str | None = option(None, "where IPS-style learners get propensities: oracle (the simulated "
                                      "log's truth), an estimator name, or a propensity JSON FILE")
    metric: str = option("ndcg@10", "validation metric for early stopping", check=_metric_ok,
                         requirement="a metric such as ndcg@10")
    chunk_size: int = option(131_072, "sessions read from the log at a time", check=positive,
                             requirement="positive")
    devices: int = option(1, "devices each batch is split over (data-parallel, parameters replicated; 1: one "
                             "device; across processes started with --coordinator-address: every device of them)",
                          check=positive, requirement="positive")
    learner_options: dict = dataclasses.field(default_factory=dict)

    @property
    def learner_class(self) -> type[Learner]:
        return LEARNERS.lookup(self.learner, "learner")

    def validate(self) -> None:
        """Check every option and the fit between them and the learner (no silent fallback)."""
        cls = LEARNERS[self.learner]
        self.learner = cls.name
        self.ranker = RANKERS.canonical(self.ranker)
        self.optimizer = OPTIMIZERS.canonical(self.optimizer)
        try:
            check_all(self)
        except OptionError as error:
            raise ValueError(str(error)) from None
        if self.loss is not None:
            self.loss = LOSSES.canonical(self.loss)
            cls.check_loss(self.loss)
        if self.devices > 1 and self.batch_size % self.devices:
            raise ValueError(f"batch_size: {self.batch_size} does not split over {self.devices} devices; give a "
                             f"multiple of {self.devices}")
        if self.bias_learning_rate is not None and not cls.has_bias_model:
            raise ValueError(f"bias_learning_rate: the {cls.name} learner has no bias model "
                             f"(used by {', '.join(_users(lambda c: c.has_bias_model))})")
        if cls.takes_propensities() and self.propensities is None:
            need = Need.TRUST_BIAS if Need.TRUST_BIAS in cls.needs else Need.PROPENSITIES
            raise ValueError(f"the {cls.name} learner needs {need.what}: give {need.supplied_by}")
        if self.propensities is not None and cls.takes_propensities():
            from .propensities import check_propensity_source

            problem = check_propensity_source(self.propensities)
            if problem is not None:
                raise ValueError(f"propensities: {problem}")
        if self.propensities is not None and not cls.takes_propensities():
            raise ValueError(f"propensities: the {cls.name} learner does not use propensities "
                             f"(used by {', '.join(_users(lambda c: c.takes_propensities()))})")
        cls.make_options(self.learner_options)

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["hidden"] = list(self.hidden)
        return out


def _users(predicate) -> list[str]:
    return [name for name, cls in LEARNERS.items() if predicate(cls)] or ["none"]


# ---------------------------------------------------------------------- options -> config
#: TrainConfig fields a learner that is not trained (the logging policy) uses
UNTRAINED_FIELDS = {"learner", "metric"}


def learner_option_fields() -> dict[str, list[type[Learner]]]:
    """Every learner hyperparameter name, with the learners that have it."""
    users: dict[str, list[type[Learner]]] = {}
    for cls in LEARNERS.values():
        for name in cls.option_names():
            users.setdefault(name, []).append(cls)
    return users


def unused_reason(key: str, config: TrainConfig) -> str | None:
    """Why option ``key`` does nothing for ``config``'s learner, ranker and optimiser (None: it is used)."""
    cls = config.learner_class
    if not cls.trainable and key not in UNTRAINED_FIELDS and key not in cls.option_names():
        return f"the {cls.name} learner is not trained"
    if key == "epochs" and config.max_steps is not None:
        return "--max-steps sets the length of training"
    if key in learner_option_fields():
        if key in cls.option_names():
            return None
        return f"not an option of the {cls.name} learner (used by {', '.join(c.name for c in learner_option_fields()[key])})"
    if key == "loss" and not cls.takes_loss():
        return f"the {cls.name} learner has a fixed loss"
    if key == "propensities" and not cls.takes_propensities():
        return (f"the {cls.name} learner does not use propensities "
                f"(used by {', '.join(_users(lambda c: c.takes_propensities()))})")
    if key == "bias_learning_rate" and not cls.has_bias_model:
        return f"the {cls.name} learner has no bias model (used by {', '.join(_users(lambda c: c.has_bias_model))})"
    if key in ("hidden", "dropout") and key not in RANKERS.lookup(config.ranker, "ranker").options:
        return f"the {config.ranker} ranker does not use it"
    if key == "weight_decay" and not getattr(OPTIMIZERS.lookup(config.optimizer, "optimizer"), "uses_weight_decay",
                                             False):
        return f"the {config.optimizer} optimiser does not use it (adamw does)"
    return None


def train_config(values: Mapping[str, Any], *, name: Callable[[str], str] = lambda key: key,
                 strict: bool = True) -> TrainConfig:
    """A :class:`TrainConfig` from option values a user gave (command-line strings or TOML values).

    ``values`` maps TrainConfig fields and learner hyperparameters to values and
    must hold ``learner``. With ``strict`` every given option must be used by the
    learner (and its ranker and optimiser), else it is an error; otherwise unused
    options are left out. ``name`` turns a key into the flag or config path that
    error messages show.
    """
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"learner_options"}
    learner_keys = learner_option_fields()
    given: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for key, value in values.items():
        if key in fields:
            given[key] = coerce(TrainConfig, key, value, name(key))
        elif key in learner_keys:
            options[key] = value  # coerced below by the chosen learner's own Options
        else:
            known = sorted(fields | set(learner_keys))
            raise OptionError(f"{name(key)}: unknown key; known: {', '.join(known)}")
    if "learner" not in given:
        raise OptionError(f"{name('learner')}: needs a value")
    config = TrainConfig(**given)
    cls = config.learner_class
    for key, value in options.items():
        owner = cls if key in cls.option_names() else learner_keys[key][0]  # others are rejected as unused
        options[key] = coerce(owner.Options, key, value, name(key))
    config.learner_options = dict(options)
    for key in list(given) + list(options):
        reason = unused_reason(key, config)
        if reason is None:
            continue
        if strict:
            raise OptionError(f"{name(key)}: {reason}")
        if key in options:
            del config.learner_options[key]
        else:
            setattr(config, key, {f.name: f for f in dataclasses.fields(TrainConfig)}[key].default)
    config.learner = cls.name
    try:
        config.validate()
    except OptionError:
        raise
    except ValueError as error:
        raise OptionError(str(error)) from None
    return config


# ---------------------------------------------------------------------- objects
def make_learner(config: TrainConfig, num_features: int, list_size: int,
                 propensities: Propensities | None = None, logging_stages: dict | None = None) -> Learner:
    """The learner of ``config`` with a fresh ranker, from the resolved ``propensities`` it needs
    (``logging_stages``: the logging pipeline's stages, for the learners that keep one fixed)."""
    cls = config.learner_class
    ranker = make_ranker(config.ranker, num_features, config.hidden, config.dropout, seed=config.seed)
    extra = {} if logging_stages is None else {"logging_stages": logging_stages}
    return cls.build(ranker, list_size, loss=config.loss, options=cls.make_options(config.learner_options),
                     propensities=propensities, num_features=num_features, seed=config.seed, **extra)


def _logging_stages(metadata: LogMetadata | None, store: FeatureStore) -> dict:
    """The logging pipeline's stages as weights ``[F]`` over the store's standardised features, divided by
    each stage's temperature (Plackett-Luce logits): ``{"candidates": w_c, "ranker": w_r}``."""
    model = metadata.linear_policy() if metadata is not None else None
    if model is None:
        raise ValueError(f"this learner keeps a stage of the logging pipeline: it needs "
                         f"{Need.LOGGING_POLICY.supplied_by} (its weights are in simulation.json)")
    # score = ((x - mean_p) / scale_p) @ w with x = x_std * scale + mean: linear in x_std (the offset does not rank)
    weights = np.asarray(model["weights"], np.float64) * store.scale / np.asarray(model["scale"], np.float64)
    temperature = float(model.get("temperature") or 0.0)
    candidate_temperature = metadata.candidate_temperature()
    if temperature <= 0:
        temperature = 1e-3  # a deterministic ranker: a very cold Plackett-Luce policy
    return {"candidates": weights / candidate_temperature, "ranker": weights / temperature}


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """The optimiser of the ranker; with ``bias_learning_rate`` the learner's bias model (DLA's
    propensity logits, the two-tower bias logits) gets the same optimiser at its own learning rate.

    A faster bias model lets DLA's propensities settle before a high-capacity ranker has learnt
    the position effect itself (which it can, when each document is always shown at one rank).
    """
    build = OPTIMIZERS.lookup(config.optimizer, "optimizer")
    ranker = build(config.learning_rate, config.weight_decay)
    if config.bias_learning_rate is None:
        return ranker
    bias = build(config.bias_learning_rate, config.weight_decay)

    def labels(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: "ranker" if getattr(path[0], "key", None) == "ranker" else "bias", params)

    return optax.multi_transform({"ranker": ranker, "bias": bias}, labels)


@nnx.jit
def _train_step(learner, optimizer, table, batch):
    features = table[batch.rows]

    def loss_fn(model):
        return model.loss(features, batch)

    loss, grads = nnx.value_and_grad(loss_fn)(learner)
    optimizer.update(learner, grads)
    learner.update_statistics(features, batch)
    return loss


@nnx.jit
def _score(learner, table, rows, mask):
    return learner.score(table[rows], mask)


def score_lists(learner, table, lists: LabelBatch, batch_size: int = 512) -> np.ndarray:
    """Scores ``[Q, L]`` of every query list (padded in fixed-size batches: one compilation)."""
    out = []
    Q = len(lists.rows)
    for start in range(0, Q, batch_size):
        rows, mask = lists.rows[start:start + batch_size], lists.mask[start:start + batch_size]
        pad = batch_size - len(rows) if Q > batch_size else 0
        if pad:
            rows = np.concatenate([rows, np.repeat(rows[-1:], pad, axis=0)])
            mask = np.concatenate([mask, np.repeat(mask[-1:], pad, axis=0)])
        out.append(np.asarray(_score(learner, table, jnp.asarray(rows), jnp.asarray(mask)))[: batch_size - pad])
    return np.concatenate(out)


def evaluate_scores(scores: np.ndarray, lists: LabelBatch, metrics=TEST_METRICS, max_label: int | None = None) -> dict:
    """Metrics of scores ``[Q, L]`` on labelled query lists (padding ranked last); ``max_label`` is the
    dataset's highest grade (ERR)."""
    return evaluate_rankings(np.where(lists.mask, scores, -np.inf), lists.labels, lists.mask, tuple(metrics),
                             max_label=max_label)


def evaluate_learner(learner, table, lists: LabelBatch, metrics=TEST_METRICS,
                     max_label: int | None = None) -> tuple[dict, np.ndarray]:
    scores = score_lists(learner, table, lists)
    return evaluate_scores(scores, lists, metrics, max_label), scores


@dataclasses.dataclass
class TrainLog:
    """What :func:`train_learner` did: the validation history and the number of steps."""

    history: list[dict]
    steps: int


class NonFiniteLossError(ValueError):
    """The training loss became NaN or infinite."""


def data_parallel_mesh(devices: int) -> jax.sharding.Mesh | None:
    """A one-axis (``"data"``) mesh for data-parallel training; None for one device in one process.

    In one process: the first ``devices`` local devices (on a CPU,
    ``XLA_FLAGS=--xla_force_host_platform_device_count=N``, set before JAX starts, gives N). In several processes
    joined by ``jax.distributed.initialize`` (one per host): every device of every process, ordered by process,
    so that process ``p`` holds the ``p``-th slice of each global batch; ``devices`` must then be their number.
    """
    processes = jax.process_count()
    if processes > 1:
        everything = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
        if devices not in (1, len(everything)):
            raise ValueError(f"devices: {devices} asked for; the {processes} processes have {len(everything)} "
                             "devices, and training spans all of them")
        return jax.sharding.Mesh(np.asarray(everything), ("data",))
    if devices == 1:
        return None
    local = jax.local_devices()
    if devices > len(local):
        raise ValueError(f"devices: {devices} asked for, this process has {len(local)} "
                         f"({local[0].platform}); on a CPU set XLA_FLAGS=--xla_force_host_platform_device_count="
                         f"{devices} before starting")
    return jax.sharding.Mesh(np.asarray(local[:devices]), ("data",))


def _shard_batch(batch, mesh: jax.sharding.Mesh):
    """Every array of a batch split along its first (batch) axis over the mesh's ``data`` axis. Across processes,
    each process reads the same global batch and contributes its own slice of it."""
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    size, processes, index = mesh.devices.size, jax.process_count(), jax.process_index()

    def place(x):
        if x is None:
            return None
        if np.ndim(x) == 0 or np.shape(x)[0] % size:
            raise ValueError(f"devices: a batch of {np.shape(x)[0] if np.ndim(x) else 1} rows does not split over "
                             f"{size} devices; give a batch size that is a multiple of {size}")
        x = np.asarray(x)
        if processes == 1:
            return jax.device_put(x, sharding)
        share = len(x) // processes
        return jax.make_array_from_process_local_data(sharding, x[index * share:(index + 1) * share], x.shape)

    return type(batch)(*(place(x) for x in batch))


def train_learner(learner: Learner, optimizer: optax.GradientTransformation, batches: Callable[[int], Iterable],
                  table: jax.Array, *, validation: Callable[[Learner], float] | None = None, epochs: int = 1,
                  max_steps: int | None = None, eval_every: int = 250, patience: int = 8,
                  metric: str = "validation", progress: bool = False, total: int | None = None,
                  callback: Callable[[dict], None] | None = None, description: str = "train",
                  mesh: jax.sharding.Mesh | None = None) -> TrainLog:
    """Train ``learner`` in place with ``optimizer`` on ``batches(epoch)``.

    Args:
      learner: a :class:`~ultr.learners.Learner`.
      optimizer: an optax transformation for the learner's ``nnx.Param`` leaves.
      batches: ``epoch -> iterable`` of batches whose ``rows`` index ``table`` ``[N + 1, F]``.
      validation: ``learner -> value`` (higher is better), run every ``eval_every`` steps; the
        best ranker is restored at the end (bias models keep their final state) and training
        stops after ``patience`` evaluations without improvement.
      epochs, max_steps: passes over the batches, or a step budget (then passes repeat).
      mesh: data-parallel training (:func:`data_parallel_mesh`): each batch is split over the mesh's devices
        and the parameters, optimiser state and feature table are replicated; XLA sums the gradients across
        devices, so the steps are those of one device on the same global batch, up to float rounding.
    """
    from tqdm import tqdm

    state = nnx.Optimizer(learner, optimizer, wrt=nnx.Param)
    place = to_device
    if mesh is not None:
        replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        for module in (learner, state):
            nnx.update(module, jax.device_put(nnx.state(module), replicated))
        table = jax.device_put(table, replicated)
        place = functools.partial(_shard_batch, mesh=mesh)
    history: list[dict] = []
    best_value, best_state, stale, step = -math.inf, None, 0, 0
    bar = tqdm(total=max_steps or total, desc=description, unit="step", disable=not progress)
    stop = False
    losses = []
    try:
        for epoch in range(epochs if max_steps is None else 10**9):
            ran = False
            learner.begin_pass(epoch)
            for batch in batches(epoch):
                ran = True
                losses.append(_train_step(learner, state, table, place(batch)))
                step += 1
                bar.update(1)
                if step % eval_every == 0:
                    train_loss = float(jnp.mean(jnp.stack(losses)))
                    losses = []
                    if not math.isfinite(train_loss):
                        raise NonFiniteLossError(f"the training loss became {train_loss} at step {step}; "
                                                 "lower the learning rate or check the inputs")
                    entry = {"step": step, "epoch": epoch, "train_loss": train_loss}
                    if validation is not None:
                        value = validation(learner)
                        entry[f"validation_{metric}"] = value
                        if value > best_value + 1e-6:
                            best_value, stale = value, 0
                            best_state = jax.tree.map(jnp.copy, nnx.state(learner.ranker))
                        else:
                            stale += 1
                        stop = stale >= patience
                    history.append(entry)
                    bar.set_postfix({k: f"{v:.4f}" for k, v in entry.items() if k not in ("step", "epoch")},
                                    refresh=False)
                    if callback is not None:
                        callback(entry)
                if (max_steps is not None and step >= max_steps) or stop:
                    stop = True
                    break
            if not ran:
                raise ValueError("there is nothing to train on: the batches are empty")
            if stop or (max_steps is None and epoch + 1 >= epochs):
                break
    finally:
        bar.close()
    if validation is not None and best_state is not None and best_value > validation(learner):
        # early stopping selects the ranker; bias models (propensities) keep their final, most-trained state
        nnx.update(learner.ranker, best_state)
    return TrainLog(history, step)


# ---------------------------------------------------------------------- logs + dataset -> result
@dataclasses.dataclass
class TrainResult:
    learner: str
    validation: dict
    test: dict
    propensities: list[float] | None
    history: list[dict]
    steps: int
    seconds: float
    test_scores: np.ndarray | None = None
    test_lists: LabelBatch | None = None  # the test queries the scores belong to
    propensity_source: dict | None = None  # where the learner's input propensities came from
    model: Learner | None = None  # the trained learner (None for the logging policy)
    max_label: int | None = None  # the dataset's grade scale maximum (ERR)
    test_groups: dict | None = None  # group name -> test metrics over that group's queries (dataset.query_groups)
    feature_mean: np.ndarray | None = None  # [F]: the standardisation of the training features (saved models)
    feature_scale: np.ndarray | None = None
    list_size: int | None = None
    init: dict | None = None  # {"model": DIR, "restored": "learner" | "ranker"} with --init


def simulation_metadata(logs) -> dict | None:
    """``simulation.json`` of a log as a dict (None for real logs); see :class:`simulators.LogMetadata`."""
    metadata = LogMetadata.read(logs)
    return None if metadata is None else metadata.to_json()


def _click_source(learner_cls, logs, store, config, list_size, propensities):
    """``epoch -> batches`` and the steps of a pass, for the learner's data needs."""
    if learner_cls.aggregates(learner_cls.make_options(config.learner_options)):
        return _aggregated_click_source(learner_cls, logs, store, config, list_size, propensities)
    if Need.CLICKS in learner_cls.needs:
        fixed, per_document = None, None
        if propensities is not None and not propensities.per_session:
            fixed = np.asarray(propensities.examination, np.float64)
        if Need.LOGGING_PROPENSITIES in learner_cls.needs:
            per_document = _logging_propensities(learner_cls, logs, store, config, propensities)

        def batches(epoch):
            sessions = click_batches(logs, store, config.batch_size, seed=config.seed, epoch=epoch,
                                     chunk_size=config.chunk_size, propensities=fixed, list_size=list_size)
            if Need.CANDIDATES in learner_cls.needs:  # widened, keeping theta at the shown rank
                return candidate_batches(sessions, store, per_document)
            return sessions

        return batches, None, config.max_steps
    if Need.LABELS in learner_cls.needs:
        return _list_source(learner_cls, store.labelled_lists(), config)
    raise ValueError(f"the {learner_cls.name} learner needs neither clicks nor labels: nothing to train on")


def _aggregated_click_source(learner_cls, logs, store, config, list_size, propensities):
    """Batches of query lists labelled with each document's IPS relevance, the mean over the query's
    sessions of ``c(d) / rho_0(d)`` (``rho_0``: its expected examination under the logging policy).

    A learner with ``aggregate_statistics`` (doubly robust) gets labels ``[B, L, 2 + 2K]`` instead: per
    document and averaged over the query's sessions, ``c / rho_0``, ``theta / rho_0`` (``theta``: the
    examination at the rank shown, 0 when not shown), then its clicks and its impressions at each rank
    ``1..K``: the sufficient statistics of its labels and of its regression model's click likelihood.
    Every query then weighs the same in a step, where session batches weigh it by its sessions."""
    per_document = np.append(_logging_propensities(learner_cls, logs, store, config, propensities), 1.0)
    data = store.data
    options = learner_cls.make_options(config.learner_options)
    with_statistics = learner_cls.aggregate_statistics
    K = list_size
    sums = np.zeros((2 + 2 * K if with_statistics else 1, data.num_documents + 1))
    sessions = np.zeros(data.num_queries, np.int64)
    query_of_row = np.append(np.repeat(np.arange(data.num_queries), data.list_sizes), -1)
    clip = getattr(options, "clip", None) or getattr(options, "exposure_clip", 1e-6)
    examination = np.asarray(propensities.examination, np.float64) if with_statistics else None
    for batch in click_batches(logs, store, 4096, seed=config.seed, epoch=0, chunk_size=config.chunk_size,
                               propensities=examination, list_size=list_size):
        shown = batch.rows[batch.mask]
        clicks = batch.clicks[batch.mask].astype(np.float64)
        inverse = 1.0 / np.maximum(per_document[shown], clip)
        sums[0] += np.bincount(shown, clicks * inverse, minlength=sums.shape[1])
        if with_statistics:
            rank = np.nonzero(batch.mask)[1]
            sums[1] += np.bincount(shown, batch.propensity[batch.mask] * inverse, minlength=sums.shape[1])
            per_rank = shown * K + rank
            sums[2:2 + K] += np.bincount(per_rank, clicks, minlength=sums.shape[1] * K).reshape(-1, K).T
            sums[2 + K:] += np.bincount(per_rank, minlength=sums.shape[1] * K).reshape(-1, K).T
        first = query_of_row[batch.rows[np.arange(len(batch.rows)), np.argmax(batch.mask, axis=1)]]
        sessions += np.bincount(first[first >= 0], minlength=data.num_queries)
    # per document (and a zero padding row), the means over its query's sessions: [N + 1, S] float32
    table = np.zeros((data.num_documents + 1, len(sums)), np.float32)
    table[:-1] = (sums[:, :-1] / np.maximum(sessions[query_of_row[:-1]], 1)).T
    del sums
    lists = store.labelled_lists()
    logged = sessions > 0  # queries without a session carry no information
    rows, mask = lists.rows[logged], lists.mask[logged]
    labels = table[rows]  # padded slots index the zero row
    labels = labels if with_statistics else labels[..., 0]
    return _list_source(learner_cls, LabelBatch(rows, labels, mask), config)


def _list_source(learner_cls, train_lists: LabelBatch, config):
    """``epoch -> batches`` of labelled query lists (``batch_size / lists_per_session_batch`` per step), the
    steps of a pass and the step budget (at least the learner's ``min_steps``)."""
    list_batch = max(1, config.batch_size // getattr(learner_cls, "lists_per_session_batch", 1))
    steps_per_epoch = math.ceil(len(train_lists.rows) / list_batch)
    max_steps = config.max_steps
    if max_steps is None:
        max_steps = max(steps_per_epoch * config.epochs, getattr(learner_cls, "min_steps", 0))

    def batches(epoch):
        return label_batches(train_lists, list_batch, config.seed, epoch)

    return batches, steps_per_epoch, max_steps


def _logging_propensities(learner_cls, logs, store, config, propensities) -> np.ndarray:
    """Each training document's expected examination under the log's logging policies (policy-aware IPS)."""
    from .exposure import logging_exposure

    metadata = LogMetadata.read(logs)
    if metadata is None:
        raise ValueError(f"the {learner_cls.name} learner needs {Need.LOGGING_PROPENSITIES.what}: give "
                         f"{Need.LOGGING_PROPENSITIES.supplied_by} (its policies are in simulation.json)")
    if propensities is None or propensities.examination is None:
        raise ValueError(f"the {learner_cls.name} learner needs an examination curve per rank: give --propensities "
                         "oracle (a PBM log), an estimator or a FILE")
    options = learner_cls.make_options(config.learner_options)
    samples = getattr(options, "exposure_samples", 10_000)
    # learners trained one after another on the same log share the Monte-Carlo exposure
    described = json.dumps(dataclasses.asdict(metadata), sort_keys=True, default=str)  # what defines the exposure
    key = (described, samples, config.seed, tuple(np.asarray(propensities.examination, np.float64).round(12)))
    if key not in _EXPOSURE_CACHE:
        _EXPOSURE_CACHE.clear()  # one log at a time: bounded memory
        _EXPOSURE_CACHE[key] = logging_exposure(metadata, store.data, propensities.examination, samples=samples,
                                                seed=config.seed)
    return _EXPOSURE_CACHE[key]


_EXPOSURE_CACHE: dict[tuple, np.ndarray] = {}


def _check_memory(config: TrainConfig, num_features: int, list_size: int) -> None:
    """Refuse a batch whose activations cannot fit in memory, before allocating it."""
    import os

    widths = num_features + (sum(config.hidden) if "hidden" in RANKERS[config.ranker].options else 1)
    # features, activations and their gradients, float32, with room for the optimiser's temporaries
    needed = config.batch_size * list_size * widths * 4 * 8
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not a POSIX system
        return
    if needed > memory / 2:
        raise ValueError(f"--batch-size {config.batch_size} with {list_size} documents and layers {config.hidden} "
                         f"needs about {needed / 2**30:.1f} GiB; this machine has {memory / 2**30:.1f} GiB")


def train(logs, dataset: Dataset, config: TrainConfig, progress: bool = True,
          callback: Callable[[dict], None] | None = None, init=None) -> TrainResult:
    """Train ``config.learner`` on click logs (features from ``dataset.train``), select the
    best model on the validation split's ``config.metric`` and evaluate it on the test split.

    ``init``: a saved model directory (:mod:`ultr.saved`) to start from instead of a fresh ranker: the whole
    learner when it was saved by the same learner, else its ranker (``TrainResult.init`` says which)."""
    config.validate()
    cls = config.learner_class
    started = time.perf_counter()
    store = FeatureStore.fit(dataset.train)
    vali_store, test_store = store.for_split(dataset.vali), store.for_split(dataset.test)
    vali_lists, test_lists = vali_store.labelled_lists(), test_store.labelled_lists()
    grade = dataset.max_label  # the grade scale's maximum, for ERR
    test_metrics_names = tuple(dataset.test_metrics or TEST_METRICS)
    metadata = LogMetadata.read(logs)
    if not dataset.train_labels and Need.LABELS in cls.needs:
        raise ValueError(f"--learner {cls.name} trains on relevance labels, which {dataset.name} does not have for "
                         "its training documents (a real click log)")

    if Need.CLICKS in cls.needs and logs is None:
        raise ValueError(f"--learner {cls.name} needs --logs ({Need.CLICKS.what})")
    if logs is not None:
        click_log_files(logs)
    if metadata is not None:
        metadata.check_dataset(dataset.train)
    if init is not None and not cls.trainable:
        raise ValueError(f"--init: the {cls.name} learner trains nothing to start from a saved model")
    if not cls.trainable:
        options = cls.make_options(config.learner_options)
        test = _padded_scores(test_store, cls.fixed_scores(metadata, test_store.data.features, options), test_lists)
        vali = _padded_scores(vali_store, cls.fixed_scores(metadata, vali_store.data.features, options), vali_lists)
        vm = evaluate_scores(vali, vali_lists, (config.metric,), grade)
        tm = evaluate_scores(test, test_lists, test_metrics_names, max_label=grade)
        return TrainResult(cls.name, vm, tm, None, [], 0, time.perf_counter() - started, test, test_lists,
                           max_label=grade, test_groups=evaluate_groups(dataset, test, test_lists,
                                                                        test_metrics_names))

    if Need.CLICKS in cls.needs and count_clicks(logs) == 0:
        raise ValueError(f"{logs}: the click log has no clicks: the {cls.name} learner has nothing to learn from")
    K = infer_list_size(logs) if Need.CLICKS in cls.needs else int(dataset.train.list_sizes.max())
    propensities = None
    if cls.takes_propensities():
        propensities = resolve_propensities(config.propensities, logs, data=dataset, seed=config.seed, list_size=K,
                                            trust_bias=Need.TRUST_BIAS in cls.needs)
    _check_memory(config, dataset.num_features,
                  int(dataset.train.list_sizes.max()) if Need.CANDIDATES in cls.needs else K)
    logging_stages = _logging_stages(metadata, store) if Need.LOGGING_POLICY in cls.needs and cls.trainable else None
    learner = make_learner(config, dataset.num_features, K, propensities, logging_stages)
    initial = None
    if init is not None:
        from .saved import restore_learner

        initial = {"model": str(init), "restored": restore_learner(learner, cls.name, init, dataset.num_features)}
    table = jnp.asarray(store.table)
    vali_table, test_table = jnp.asarray(vali_store.table), jnp.asarray(test_store.table)
    batches, steps_per_epoch, max_steps = _click_source(cls, logs, store, config, K, propensities)

    def validation(model):
        return evaluate_learner(model, vali_table, vali_lists, (config.metric,), grade)[0][config.metric]

    total = steps_per_epoch * config.epochs if steps_per_epoch else None
    log = train_learner(learner, make_optimizer(config), batches, table, validation=validation,
                        epochs=config.epochs, max_steps=max_steps, eval_every=config.eval_every,
                        patience=config.patience, metric=config.metric, progress=progress, total=total,
                        callback=callback, description=f"train {cls.name}", mesh=data_parallel_mesh(config.devices))
    vali_metrics, _ = evaluate_learner(learner, vali_table, vali_lists, (config.metric,), grade)
    test_metrics, test_scores = evaluate_learner(learner, test_table, test_lists, test_metrics_names,
                                                 max_label=grade)
    props = learner.propensities()
    return TrainResult(cls.name, vali_metrics, test_metrics, None if props is None else props.tolist(),
                       log.history, log.steps, time.perf_counter() - started, test_scores, test_lists,
                       None if propensities is None else propensities.describe(), learner, grade,
                       evaluate_groups(dataset, test_scores, test_lists, test_metrics_names),
                       store.mean, store.scale, K, initial)


def evaluate_groups(dataset: Dataset, scores: np.ndarray, lists: LabelBatch, metrics) -> dict | None:
    """Test metrics per query group (``dataset.query_groups``, e.g. Baidu-ULTR's query-frequency groups)."""
    if not dataset.query_groups:
        return None
    query_ids = dataset.test.unique_query_ids
    names = np.array([dataset.query_groups.get(int(q), "") for q in query_ids])
    result = {}
    for group in dict.fromkeys(dataset.query_groups.values()):
        chosen = names == group
        if not chosen.any():
            continue
        subset = LabelBatch(lists.rows[chosen], lists.labels[chosen], lists.mask[chosen])
        result[group] = evaluate_scores(np.asarray(scores)[chosen], subset, metrics, dataset.max_label)
    return result


def _padded_scores(store: FeatureStore, values: np.ndarray, lists: LabelBatch) -> np.ndarray:
    scores = np.zeros(lists.rows.shape, np.float64)
    real = lists.rows < store.padding_row
    scores[real] = values[lists.rows[real]]
    return scores


def _plain_name(query_id, doc_id) -> str:
    """``QUERY-DOC``: the query id and ultr's document id (the 0-based line of a LETOR file, the index within
    the query of a synthetic one)."""
    return f"{query_id}-{doc_id}"


def document_names(data: RankingData) -> Callable[[int, int], str]:
    """``(query_id, doc_id) -> name`` for run files: the ``#docid`` comment of a LETOR file's line where the
    split was read from a file that has them, else :func:`_plain_name`."""
    from simulators.letor import letor_doc_names

    names = {}
    source = Path(data.name) if data.name else None
    if source is not None and source.is_file() and source.suffix != ".parquet":
        try:
            names = letor_doc_names(source)
        except (OSError, ValueError):
            names = {}
    return lambda query_id, doc_id: names.get(int(doc_id)) or _plain_name(query_id, doc_id)


def trec_run(data: RankingData, lists: LabelBatch, scores: np.ndarray, tag: str) -> tuple[str, str]:
    """The test ranking as a TREC run file and the labels as a qrels file, which trec_eval scores as
    ultr does: ``trec_eval -m ndcg_cut.10 test.qrels test.run`` gives metrics.json's ``ndcg@10``.
    Documents are named by :func:`document_names`.

    * The run ranks each query's documents by score, ties broken by dataset order (as ultr's metrics);
      the score column is ``n + 1 - rank`` (n documents in the query) so that no tool can break ties
      otherwise (trec_eval breaks them by document name).
    * The qrels hold the *gain* ``2^y - 1`` of grade ``y`` (trec_eval's gain is the qrels value), and
      only the queries with a relevant document (ultr leaves the others out of its means; trec_eval
      skips queries that the qrels lack).
    """
    run_lines, qrel_lines = [], []
    name = document_names(data)
    for q, query_id in enumerate(data.unique_query_ids):
        valid = lists.mask[q]
        rows = lists.rows[q][valid]
        s = scores[q][valid]
        order = np.lexsort((np.arange(len(s)), -s))
        names = [name(query_id, data.doc_ids[row]) for row in rows]
        if len(set(names)) < len(names):  # a file naming two of a query's documents alike: ultr's ids instead
            names = [_plain_name(query_id, data.doc_ids[row]) for row in rows]
        for rank, i in enumerate(order, start=1):
            run_lines.append(f"{query_id} Q0 {names[i]} {rank} {len(s) + 1 - rank} {tag}")
        if (data.labels[rows] > 0).any():
            for row, doc in zip(rows, names):
                qrel_lines.append(f"{query_id} 0 {doc} {2 ** int(data.labels[row]) - 1}")
    return "\n".join(run_lines) + "\n", "\n".join(qrel_lines) + "\n"


def write_outputs(out: Path, result: TrainResult, dataset: Dataset, config: TrainConfig,
                  extra: dict | None = None, normalize: str | None = None) -> None:
    """metrics.json (plus ``extra`` keys), propensities.json where the learner estimates them, the
    test split's TREC run and qrels, and the trained learner in ``out/model`` (:mod:`ultr.saved`;
    ``normalize``: the dataset's feature normalisation, which ``ultr rank`` applies again)."""
    out.mkdir(parents=True, exist_ok=True)
    if result.model is not None and result.feature_mean is not None:
        from .saved import save_learner

        save_learner(out / "model", result.model, learner_name=result.learner, config=config,
                     num_features=dataset.num_features, list_size=result.list_size, mean=result.feature_mean,
                     scale=result.feature_scale, normalize=normalize)
    estimates = LEARNERS[result.learner].estimates if result.learner in LEARNERS else None
    is_propensity = estimates == "propensities"
    metrics = {
        "learner": result.learner,
        "test": result.test,
        "validation": result.validation,
        "propensities": result.propensities if is_propensity else None,
        "propensity_source": result.propensity_source,
        "steps": result.steps,
        "seconds": round(result.seconds, 2),
        **({"test_groups": result.test_groups} if result.test_groups else {}),
        **({"init": result.init} if result.init else {}),
        "config": config.to_json(),
        "history": result.history,
    }
    if result.propensities is not None and not is_propensity:
        # not examination propensities (PairD's position biases): reported under their own name
        metrics[estimates.replace(" ", "_")] = result.propensities
    metrics.update(extra or {})
    atomic_write_json(metrics, out / "metrics.json")
    if result.propensities is not None and is_propensity:
        atomic_write_json({"estimator": result.learner, "examination": result.propensities},
                          out / "propensities.json")
    if result.test_scores is not None:
        run, qrels = trec_run(dataset.test, result.test_lists, result.test_scores, f"ultr-{result.learner}")
        atomic_write_text(run, out / "test.run")
        atomic_write_text(qrels, out / "test.qrels")

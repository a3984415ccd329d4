"""Training counterfactual learners on click logs and evaluating them on relevance labels."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from click_models.logs import atomic_write_json, atomic_write_text, click_log_files, infer_list_size
from simulators.datasets import Dataset, RankingData

from . import learners as L
from .data import FeatureStore, LabelBatch, click_batches, label_batches, read_propensity_file, to_device
from .metrics import evaluate_rankings, parse_metric
from .rankers import make_ranker

OPTIMIZERS = {
    "adamw": lambda c: optax.adamw(c.learning_rate, weight_decay=c.weight_decay),
    "adam": lambda c: optax.adam(c.learning_rate),
    "adagrad": lambda c: optax.adagrad(c.learning_rate),
    "sgd": lambda c: optax.sgd(c.learning_rate),
}
TEST_METRICS = ("ndcg@1", "ndcg@3", "ndcg@5", "ndcg@10", "err@10", "mrr@10")
DEFAULT_LOSS = {"naive": "softmax", "ips": "softmax", "dla": "softmax", "rem": "sigmoid", "two-tower": "sigmoid",
                "paird": "pairwise", "affine": "softmax", "skyline": "softmax"}


@dataclasses.dataclass
class TrainConfig:
    """Options of ``ultr train`` (see ``docs/learners.md``)."""

    learner: str = "dla"
    ranker: str = "mlp"
    hidden: tuple[int, ...] = (512, 256, 128)
    dropout: float = 0.0
    loss: str | None = None
    batch_size: int = 256
    learning_rate: float = 1e-3
    bias_learning_rate: float | None = None
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    epochs: int = 1
    max_steps: int | None = None
    eval_every: int = 250
    patience: int = 8
    seed: int = 0
    propensities: str | None = None
    clip: float = 0.01
    max_weight: float = 100.0
    two_tower: str = "product"
    metric: str = "ndcg@10"
    chunk_size: int = 131_072

    def validate(self):
        if self.learner not in L.LEARNERS:
            raise ValueError(f"unknown learner {self.learner!r}; choose from {', '.join(L.LEARNERS)}")
        if self.loss is not None and self.loss not in L.LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose from {', '.join(L.LOSSES)}")
        parse_metric(self.metric)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
        if self.bias_learning_rate is not None and not self.bias_learning_rate > 0:
            raise ValueError(f"bias_learning_rate must be positive, got {self.bias_learning_rate}")
        for name in ("batch_size", "epochs", "eval_every", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")


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


def simulation_metadata(logs) -> dict | None:
    path = Path(logs)
    candidates = [path / "simulation.json"] if path.is_dir() else [path.parent / "simulation.json"]
    for candidate in candidates:
        if candidate.exists():
            return json.loads(candidate.read_text())
    return None


def make_learner(config: TrainConfig, num_features: int, list_size: int, logs_metadata: dict | None,
                 propensity_file: dict | None) -> L.Learner:
    ranker = make_ranker(config.ranker, num_features, config.hidden, config.dropout, seed=config.seed)
    loss = config.loss or DEFAULT_LOSS.get(config.learner, "softmax")
    name = config.learner
    if name == "naive":
        return L.Naive(ranker, list_size, loss)
    if name == "ips":
        return L.IPS(ranker, list_size, loss, clip=config.clip)
    if name == "dla":
        return L.DLA(ranker, list_size, max_weight=config.max_weight)
    if name == "rem":
        return L.RegressionEM(ranker, list_size)
    if name == "two-tower":
        return L.TwoTower(ranker, list_size, combination=config.two_tower)
    if name == "paird":
        return L.PairD(ranker, list_size)
    if name == "affine":
        source = propensity_file
        if source is None and logs_metadata is not None:
            source = dict(logs_metadata.get("rank_parameters", {}))
        if source is None or "examination" not in source:
            raise ValueError("affine needs examination (and epsilon_pos, epsilon_neg) per rank: give --propensities "
                             "FILE, or logs simulated by ultr (simulation.json)")
        K = list_size
        return L.Affine(ranker, K, source["examination"], source.get("epsilon_pos", np.ones(K)),
                        source.get("epsilon_neg", np.zeros(K)), loss)
    if name == "skyline":
        return L.Skyline(ranker, list_size, loss)
    raise ValueError(name)


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """The optimiser of the ranker; with ``bias_learning_rate`` the learner's bias model (DLA's
    propensity logits, the two-tower bias logits) gets the same optimiser at its own learning rate.

    A faster bias model lets DLA's propensities settle before a high-capacity ranker has learnt
    the position effect itself (which it can, when each document is always shown at one rank).
    """
    ranker = OPTIMIZERS[config.optimizer](config)
    if config.bias_learning_rate is None:
        return ranker
    bias = OPTIMIZERS[config.optimizer](dataclasses.replace(config, learning_rate=config.bias_learning_rate))

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
def _score(learner, table, rows):
    return learner(table[rows])


def score_lists(learner, table, lists: LabelBatch, batch_size: int = 512) -> np.ndarray:
    """Scores ``[Q, L]`` of every query list (padded in fixed-size batches: one compilation)."""
    out = []
    Q = len(lists.rows)
    for start in range(0, Q, batch_size):
        rows = lists.rows[start:start + batch_size]
        pad = batch_size - len(rows) if Q > batch_size else 0
        if pad:
            rows = np.concatenate([rows, np.repeat(rows[-1:], pad, axis=0)])
        out.append(np.asarray(_score(learner, table, jnp.asarray(rows)))[: batch_size - pad])
    return np.concatenate(out)


def evaluate_scores(scores: np.ndarray, lists: LabelBatch, metrics=TEST_METRICS) -> dict:
    """Metrics of scores ``[Q, L]`` on labelled query lists (padding ranked last)."""
    return evaluate_rankings(np.where(lists.mask, scores, -np.inf), lists.labels, lists.mask, tuple(metrics))


def evaluate_learner(learner, table, lists: LabelBatch, metrics=TEST_METRICS) -> tuple[dict, np.ndarray]:
    scores = score_lists(learner, table, lists)
    return evaluate_scores(scores, lists, metrics), scores


def logging_policy_scores(metadata: dict | None, store: FeatureStore) -> np.ndarray:
    """Scores of the logs' production ranker on a split (from simulation.json)."""
    models = (metadata or {}).get("policy_models") or []
    linear = [m for m in models if m.get("weights") is not None]
    if not linear:
        raise ValueError("the logging-policy reference needs logs simulated by ultr with a production or "
                         "plackett-luce policy (its weights are in simulation.json)")
    model = linear[0]
    raw = store.data.features
    return ((raw - np.asarray(model["mean"])) / np.asarray(model["scale"])) @ np.asarray(model["weights"])


def train(logs, dataset: Dataset, config: TrainConfig, progress: bool = True,
          callback: Callable[[dict], None] | None = None) -> TrainResult:
    """Train ``config.learner`` on click logs (features from ``dataset.train``), select the
    best model on the validation split's ``config.metric`` and evaluate it on the test split."""
    from tqdm import tqdm

    config.validate()
    started = time.perf_counter()
    store = FeatureStore.fit(dataset.train)
    vali_store, test_store = store.for_split(dataset.vali), store.for_split(dataset.test)
    vali_lists, test_lists = vali_store.labelled_lists(), test_store.labelled_lists()
    metadata = simulation_metadata(logs) if logs is not None else None

    if config.learner == "logging-policy":
        test = _padded_scores(test_store, logging_policy_scores(metadata, test_store), test_lists)
        vali = _padded_scores(vali_store, logging_policy_scores(metadata, vali_store), vali_lists)
        vm = evaluate_scores(vali, vali_lists, (config.metric,))
        tm = evaluate_scores(test, test_lists)
        return TrainResult("logging-policy", vm, tm, None, [], 0, time.perf_counter() - started, test, test_lists)

    propensity_file = read_propensity_file(config.propensities) if config.propensities else None
    max_steps = config.max_steps
    if config.learner == "skyline":
        K = int(dataset.train.list_sizes.max())
    else:
        if logs is None:
            raise ValueError(f"learner {config.learner} needs click logs")
        click_log_files(logs)
        K = infer_list_size(logs)
    learner = make_learner(config, dataset.num_features, K, metadata, propensity_file)
    optimizer = nnx.Optimizer(learner, make_optimizer(config), wrt=nnx.Param)
    table = jnp.asarray(store.table)
    vali_table, test_table = jnp.asarray(vali_store.table), jnp.asarray(test_store.table)
    fixed_propensities = None
    if propensity_file is not None and config.learner in ("ips",):
        fixed_propensities = np.asarray(propensity_file["examination"], np.float64)

    if config.learner == "skyline":
        train_lists = store.labelled_lists()
        # a query list holds many more documents than a session: batches of batch_size / 8 lists
        list_batch = max(1, config.batch_size // 8)
        steps_per_epoch = math.ceil(len(train_lists.rows) / list_batch)
        if max_steps is None:
            # a few hundred queries make a handful of steps per epoch: train for as many steps as a
            # click learner would on a million sessions, with early stopping
            max_steps = max(steps_per_epoch * config.epochs, 4_000)

        def batches(epoch):
            return label_batches(train_lists, list_batch, config.seed, epoch)
    else:
        steps_per_epoch = None

        def batches(epoch):
            return click_batches(logs, store, config.batch_size, seed=config.seed, epoch=epoch,
                                 chunk_size=config.chunk_size, propensities=fixed_propensities, list_size=K)

    history: list[dict] = []
    best_value, best_state, stale, step = -math.inf, None, 0, 0
    total = max_steps or (steps_per_epoch * config.epochs if steps_per_epoch else None)
    bar = tqdm(total=total, desc=f"train {config.learner}", unit="step", disable=not progress)
    stop = False
    losses = []
    try:
        for epoch in range(config.epochs if max_steps is None else 10**9):
            for batch in batches(epoch):
                loss = _train_step(learner, optimizer, table, to_device(batch))
                losses.append(loss)
                step += 1
                bar.update(1)
                if step % config.eval_every == 0:
                    value = evaluate_learner(learner, vali_table, vali_lists, (config.metric,))[0][config.metric]
                    entry = {"step": step, "epoch": epoch, "train_loss": float(jnp.mean(jnp.stack(losses))),
                             f"validation_{config.metric}": value}
                    losses = []
                    history.append(entry)
                    bar.set_postfix({"loss": f"{entry['train_loss']:.4f}", config.metric: f"{value:.4f}"},
                                    refresh=False)
                    if callback is not None:
                        callback(entry)
                    if value > best_value + 1e-6:
                        best_value, stale = value, 0
                        best_state = jax.tree.map(jnp.copy, nnx.state(learner.ranker))
                    else:
                        stale += 1
                    if stale >= config.patience:
                        stop = True
                if (max_steps is not None and step >= max_steps) or stop:
                    stop = True
                    break
            if stop or (max_steps is None and epoch + 1 >= config.epochs):
                break
    finally:
        bar.close()
    final_value = evaluate_learner(learner, vali_table, vali_lists, (config.metric,))[0][config.metric]
    if best_state is not None and best_value > final_value:
        # early stopping selects the ranker; bias models (propensities) keep their final, most-trained state
        nnx.update(learner.ranker, best_state)
    vali_metrics, _ = evaluate_learner(learner, vali_table, vali_lists, (config.metric,))
    test_metrics, test_scores = evaluate_learner(learner, test_table, test_lists)
    props = learner.propensities()
    return TrainResult(config.learner, vali_metrics, test_metrics, None if props is None else props.tolist(),
                       history, step, time.perf_counter() - started, test_scores, test_lists)


def _padded_scores(store: FeatureStore, values: np.ndarray, lists: LabelBatch) -> np.ndarray:
    scores = np.zeros(lists.rows.shape, np.float64)
    real = lists.rows < store.padding_row
    scores[real] = values[lists.rows[real]]
    return scores


def trec_run(data: RankingData, lists: LabelBatch, scores: np.ndarray, tag: str) -> tuple[str, str]:
    """The test ranking as a TREC run file and the labels as a qrels file (for trec_eval)."""
    run_lines, qrel_lines = [], []
    for q, query_id in enumerate(data.unique_query_ids):
        valid = lists.mask[q]
        rows = lists.rows[q][valid]
        s = scores[q][valid]
        order = np.lexsort((np.arange(len(s)), -s))
        for rank, i in enumerate(order, start=1):
            run_lines.append(f"{query_id} Q0 {data.doc_ids[rows[i]]} {rank} {s[i]:.6f} {tag}")
        for row in rows:
            qrel_lines.append(f"{query_id} 0 {data.doc_ids[row]} {int(data.labels[row])}")
    return "\n".join(run_lines) + "\n", "\n".join(qrel_lines) + "\n"


def write_outputs(out: Path, result: TrainResult, dataset: Dataset, config: TrainConfig) -> None:
    out.mkdir(parents=True, exist_ok=True)
    metrics = {
        "learner": result.learner,
        "test": result.test,
        "validation": result.validation,
        "propensities": result.propensities,
        "steps": result.steps,
        "seconds": round(result.seconds, 2),
        "config": dataclasses.asdict(config),
        "history": result.history,
    }
    atomic_write_json(metrics, out / "metrics.json")
    if result.propensities is not None:
        atomic_write_json({"estimator": result.learner, "examination": result.propensities},
                          out / "propensities.json")
    if result.test_scores is not None:
        run, qrels = trec_run(dataset.test, result.test_lists, result.test_scores, f"ultr-{result.learner}")
        atomic_write_text(run, out / "test.run")
        atomic_write_text(qrels, out / "test.qrels")

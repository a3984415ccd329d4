"""Saved models: a trained learner written to a directory, read back to rank or to train on.

A model directory holds

* ``learner.msgpack``: the learner's ``flax.nnx`` state (the ranker and any bias model: propensities, a
  two-tower bias tower, ...), without its random-number state, serialised by ``flax.serialization``;
* ``model.json``, written last: the format version, the learner and ranker (kind, hidden layers, dropout),
  the feature count, the list size, the dataset's feature normalisation and the standardisation fitted on its
  training split (mean and scale per feature), and the training configuration.

:func:`load_ranker` rebuilds the ranker alone (what ``ultr rank`` needs); :func:`restore_learner` fills a
freshly built learner (``ultr train --init``): the whole state when the saved learner is of the same kind and
shape, else the ranker only, and says which.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
from flax import nnx, serialization

from click_models.logs import atomic_path, atomic_write_json

__all__ = ["FORMAT", "ModelFormatError", "SavedModel", "save_learner", "read_model", "load_ranker",
           "restore_learner"]

#: the version of the model-directory format this release writes and reads
FORMAT = 1
STATE_FILE = "learner.msgpack"
META_FILE = "model.json"


class ModelFormatError(ValueError):
    """A model directory that cannot be read: missing files, another format version, other features."""


@dataclasses.dataclass
class SavedModel:
    """``model.json`` of a model directory, with the directory it came from."""

    directory: Path
    learner: str
    ranker: str
    hidden: tuple[int, ...]
    dropout: float
    num_features: int
    list_size: int
    normalize: str | None
    mean: np.ndarray
    scale: np.ndarray
    config: dict

    def standardise(self, features: np.ndarray) -> np.ndarray:
        """``features [N, F]`` standardised as in training (float32)."""
        from .data import standardise

        return standardise(features, self.mean, self.scale)


def _pure_state(module: nnx.Module) -> dict:
    state = nnx.state(module, nnx.Not(nnx.RngState))
    return jax.tree_util.tree_map(np.asarray, nnx.to_pure_dict(state))


def save_learner(directory, learner: nnx.Module, *, learner_name: str, config, num_features: int, list_size: int,
                 mean: np.ndarray, scale: np.ndarray, normalize: str | None = None) -> Path:
    """Write ``learner`` (a trained :class:`ultr.learners.Learner`) to ``directory``.

    Args:
      config: the :class:`ultr.training.TrainConfig` it was trained with (ranker kind, hidden, dropout).
      mean, scale: ``[F]``, the standardisation of the training split's features (``FeatureStore``).
      normalize: the dataset's feature normalisation (``--normalize``), None for none.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / META_FILE).unlink(missing_ok=True)  # a half-replaced model is never read as whole
    with atomic_path(directory / STATE_FILE) as tmp:
        tmp.write_bytes(serialization.msgpack_serialize(_pure_state(learner)))
    atomic_write_json({
        "format": FORMAT,
        "learner": learner_name,
        "ranker": config.ranker if isinstance(config.ranker, str) else config.ranker.name,
        "hidden": list(config.hidden),
        "dropout": config.dropout,
        "num_features": int(num_features),
        "list_size": int(list_size),
        "normalize": normalize,
        "mean": np.asarray(mean, np.float32).tolist(),  # the float32 statistics FeatureStore.fit computes
        "scale": np.asarray(scale, np.float32).tolist(),
        "config": config.to_json(),
    }, directory / META_FILE)
    return directory


def read_model(directory) -> SavedModel:
    """``model.json`` of a model directory, checked (:class:`ModelFormatError` naming the problem)."""
    directory = Path(directory)
    meta_path = directory / META_FILE
    if not meta_path.is_file() or not (directory / STATE_FILE).is_file():
        raise ModelFormatError(f"{directory}: not a saved model (no {META_FILE} and {STATE_FILE}; "
                               "ultr train writes one to OUT/model)")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as error:
        raise ModelFormatError(f"{meta_path}: unreadable ({error})") from None
    if meta.get("format") != FORMAT:
        raise ModelFormatError(f"{meta_path}: model format {meta.get('format')!r}; this release reads format "
                               f"{FORMAT}")
    try:
        return SavedModel(directory, meta["learner"], meta["ranker"], tuple(meta["hidden"]), float(meta["dropout"]),
                          int(meta["num_features"]), int(meta["list_size"]), meta.get("normalize"),
                          np.asarray(meta["mean"], np.float32), np.asarray(meta["scale"], np.float32),
                          meta.get("config", {}))
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFormatError(f"{meta_path}: malformed ({error!r})") from None


def check_features(saved: SavedModel, num_features: int, where: str) -> None:
    if num_features != saved.num_features:
        raise ModelFormatError(f"{where}: {num_features} features, but the model in {saved.directory} was trained "
                               f"on {saved.num_features}")


def _read_state(saved: SavedModel) -> dict:
    path = saved.directory / STATE_FILE
    try:
        return serialization.msgpack_restore(path.read_bytes())
    except Exception as error:  # msgpack raises its own types on a damaged file
        raise ModelFormatError(f"{path}: unreadable ({type(error).__name__})") from None


def _fill(module: nnx.Module, pure: dict, where: Path) -> None:
    state = nnx.state(module, nnx.Not(nnx.RngState))
    current = nnx.to_pure_dict(state)
    expected = jax.tree_util.tree_structure(current)
    if jax.tree_util.tree_structure(pure) != expected:
        raise ModelFormatError(f"{where}: the saved parameters do not fit this model's structure")
    shapes = jax.tree_util.tree_map(lambda a, b: np.shape(a) == np.shape(b), current, pure)
    if not all(jax.tree_util.tree_leaves(shapes)):
        raise ModelFormatError(f"{where}: the saved parameters' shapes do not fit this model")
    nnx.replace_by_pure_dict(state, jax.tree_util.tree_map(np.asarray, pure))
    nnx.update(module, state)


def load_ranker(directory) -> tuple[nnx.Module, SavedModel]:
    """The saved ranker (``features [..., F] -> scores [...]``) and the model's description."""
    from .rankers import make_ranker

    saved = read_model(directory)
    ranker = make_ranker(saved.ranker, saved.num_features, saved.hidden, saved.dropout)
    pure = _read_state(saved)
    if "ranker" not in pure:
        raise ModelFormatError(f"{saved.directory / STATE_FILE}: holds no ranker")
    _fill(ranker, pure["ranker"], saved.directory / STATE_FILE)
    ranker.eval()
    return ranker, saved


def restore_learner(learner: nnx.Module, learner_name: str, directory, num_features: int) -> str:
    """Fill ``learner`` from a saved model: ``"learner"`` when all its state was restored (same learner, same
    shapes), ``"ranker"`` when only the ranker was (another learner, or another list size)."""
    saved = read_model(directory)
    check_features(saved, num_features, "--init")
    pure = _read_state(saved)
    where = saved.directory / STATE_FILE
    if saved.learner == learner_name:
        try:
            _fill(learner, pure, where)
            return "learner"
        except ModelFormatError:
            pass  # another list size or options: the bias model does not fit, the ranker still may
    if "ranker" not in pure:
        raise ModelFormatError(f"{where}: holds no ranker")
    _fill(learner.ranker, pure["ranker"], where)
    return "ranker"

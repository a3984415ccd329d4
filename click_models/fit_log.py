"""Fit a click model to a Parquet click log: the library side of ``ultr fit``.

>>> # fitted = fit_log("logs/", PBM, method="em")
>>> # fitted.write("runs/fit-pbm")   # params.json, documents.parquet, metrics.json
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

import numpy as np
import optax
import pyarrow as pa

from ._base import DOCUMENT, ClickModel
from .counts import count_log_parts, document_index_of_parts, kept_batches
from .engine import distributes
from .evaluation import evaluate
from .fitting import FitResult, LogSource, Prior, fit_counting, fit_em, fit_gradient, fitting_methods, held_out_split
from .logs import (
    ClickLogError,
    DocumentIndex,
    atomic_write_json,
    atomic_write_parquet,
    click_log_files,
    count_clicks,
    count_sessions,
    infer_list_size,
)
from .models import CLICK_MODELS
from .registry import Registry

#: rank and session parameters reported on the terminal, in this order
REPORTED_PARAMETERS = ("examination", "examination_normalized", "continuation", "tau1", "tau2", "tau3",
                       "epsilon_pos", "epsilon_neg")


@dataclasses.dataclass
class FittedLog:
    """A click model fitted to a log, with its held-out evaluation.

    ``parameters`` is the content of ``params.json`` (rank and session
    parameters, the prior of document parameters), ``documents`` the
    per-(query, document) parameters, ``metrics`` the content of ``metrics.json``.
    """

    model: type[ClickModel]
    method: str
    list_size: int
    documents_index: DocumentIndex
    result: FitResult
    metrics: dict

    @property
    def parameters(self) -> dict:
        kinds = self.model.parameter_kinds
        params: dict = {"model": self.model.name, "method": self.method, "list_size": self.list_size}
        for name, kind in kinds.items():
            table = self.result.tables[name]
            if kind == DOCUMENT:
                params.setdefault("prior", {})[name] = float(table[-1])
            else:
                params[name] = np.asarray(table).tolist()
        if kinds.get("examination") not in (None, DOCUMENT) and np.ndim(params["examination"]) == 1:
            exam = np.asarray(params["examination"])
            params["examination_normalized"] = (exam / exam[0]).tolist() if exam[0] > 0 else None
        return params

    def documents(self) -> pa.Table:
        columns = {"query_id": pa.array(self.documents_index.query_ids),
                   "doc_id": pa.array(self.documents_index.doc_ids)}
        for name, kind in self.model.parameter_kinds.items():
            if kind == DOCUMENT:
                columns[name] = pa.array(self.result.tables[name][:-1].astype(np.float32))
        return pa.table(columns)

    def write(self, out: str | Path) -> list[Path]:
        """Write ``params.json``, ``documents.parquet`` and ``metrics.json`` under ``out`` (atomically)."""
        out = Path(out)
        return [atomic_write_json(self.parameters, out / "params.json"),
                atomic_write_parquet(self.documents(), out / "documents.parquet"),
                atomic_write_json(self.metrics, out / "metrics.json")]


FITTING_METHODS: Registry[Callable[..., FitResult]] = Registry("fitting method")


def _prior(settings: dict) -> Prior | None:
    """The centred document prior of the given strength, or None: the model's default_prior."""
    return Prior(strength=settings["prior_strength"]) if settings.get("prior_strength") is not None else None


@FITTING_METHODS.register("em")
def _fit_by_em(cls, train, validation, num_documents, K, settings, callback):
    """Expectation-maximisation (every model)."""
    return fit_em(cls, train, num_documents, K, max_iterations=settings["max_iterations"],
                  tolerance=settings["tolerance"], callback=callback, prior=_prior(settings))


@FITTING_METHODS.register("counting")
def _fit_by_counting(cls, train, validation, num_documents, K, settings, callback):
    """Closed-form counting estimators (models with a counting rule)."""
    return fit_counting(cls, train, num_documents, K, prior=_prior(settings))


@FITTING_METHODS.register("gradient")
def _fit_by_gradient(cls, train, validation, num_documents, K, settings, callback):
    """Maximum likelihood by Adam (optax), early stopping on the held-out sessions (every model)."""
    return fit_gradient(cls, train, num_documents, K, validation=validation,
                        optimizer=optax.adam(settings["learning_rate"]), epochs=settings["epochs"],
                        patience=settings["patience"], callback=callback)


def fit_log(logs: str | Path, model: str | type[ClickModel] = "pbm", method: str = "em", *,
            validation_fraction: float = 0.1, batch_size: int = 65_536, max_iterations: int = 500,
            tolerance: float = 1e-5, epochs: int = 200, learning_rate: float = 0.1, patience: int = 10,
            prior_strength: float | None = None, seed: int = 0, callback: Callable[[dict], None] | None = None,
            engine=None) -> FittedLog:
    """Fit ``model`` to the click log at ``logs`` and evaluate it on held-out sessions.

    Args:
      logs: a Parquet click log (file or directory).
      model: a click-model class or its name in :data:`CLICK_MODELS`.
      method: ``em`` (every model), ``counting`` (models with a counting rule) or ``gradient`` (optax Adam).
      validation_fraction: share of sessions (hashed by id with ``seed``) held out for the metrics and
        for early stopping of the gradient fit; 0 holds none out.
      prior_strength: pseudo-counts of a document prior of ``em`` and ``counting`` centred on the mean of
        each document parameter (:class:`~click_models.fitting.Prior`); None keeps the model's
        :func:`~click_models.fitting.default_prior`.
      callback: called with each iteration's (EM) or epoch's (gradient) history entry.
      engine: runs the counting passes part by part (:mod:`click_models.engine`): the document numbering, and
        the cells of PBM and UBM by EM; the result equals the local engine's.
    """
    cls = CLICK_MODELS.resolve(model)
    methods = fitting_methods(cls)
    if method not in methods:
        raise ValueError(f"--method {method}: the {cls.name} click model is fitted by {', '.join(methods)}")
    K = infer_list_size(logs)
    if K == 0 or count_sessions(logs) == 0:
        raise ClickLogError(f"{logs}: the click log has no shown documents: there is nothing to fit")
    if count_clicks(logs) == 0:
        raise ClickLogError(f"{logs}: the click log has no clicks: a click model fitted to it would say nothing")
    is_held_out = lambda sid: held_out_split(sid, validation_fraction, seed)  # noqa: E731
    is_train = lambda sid: ~held_out_split(sid, validation_fraction, seed)  # noqa: E731

    distributed = distributes(engine)
    if distributed:
        documents = document_index_of_parts(click_log_files(logs), K, engine, batch_size=batch_size, keep=is_train)
    else:
        documents = DocumentIndex.from_batches(kept_batches(logs, K, batch_size, is_train))
    train = LogSource(logs, documents, batch_size, K, keep=is_train)
    if distributed and cls.cell_em is not None and method == "em":  # the cells counted by the engine
        train.cells = count_log_parts(logs, K, engine, by_previous_click=cls.cell_em == "previous_click",
                                      batch_size=batch_size, keep=is_train, documents=documents)
    validation = LogSource(logs, documents, batch_size, K, keep=is_held_out) if validation_fraction > 0 else None
    started = time.perf_counter()
    settings = {"max_iterations": max_iterations, "tolerance": tolerance, "epochs": epochs,
                "learning_rate": learning_rate, "patience": patience, "prior_strength": prior_strength}
    result = FITTING_METHODS[method](cls, train, validation, documents.size, K, settings, callback)
    elapsed = time.perf_counter() - started
    metrics = {
        "model": cls.name,
        "method": method,
        "fit_seconds": round(elapsed, 3),
        "iterations": len(result.history),
        "passes": result.history[-1].get("passes", len(result.history)) if result.history else 0,
        "converged": bool(result.converged),
        "train_log_likelihood": result.history[-1].get("log_likelihood") if result.history else None,
    }
    if validation is not None:
        held_out = evaluate(result.click_model, validation)
        metrics.update({
            "held_out_sessions": held_out["num_sessions"],
            "held_out_log_likelihood": held_out["log_likelihood"],
            "perplexity": held_out["perplexity"],
            "perplexity_per_rank": held_out["perplexity_per_rank"],
            "conditional_perplexity": held_out["conditional_perplexity"],
            "conditional_perplexity_per_rank": held_out["conditional_perplexity_per_rank"],
        })
    return FittedLog(cls, method, K, documents, result, metrics)

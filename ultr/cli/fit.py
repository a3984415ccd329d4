"""``ultr fit``: fit a click model to a click log."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from click_models.storage import log_argument, path_argument

import numpy as np

from click_models import CLICK_MODELS
from click_models._base import RANK, RANK_RANK
from click_models.fit_log import FITTING_METHODS

from .common import (UsageError, add_engine_arguments, check_engine_arguments, add_identifiability_argument, check_identifiability,
                     engine_from_args, fraction, non_negative_int, positive_float, positive_int, refuse_output_inside_logs,
                     registry_choice)


#: options of one fitting method: name -> (type, default, method, help)
METHOD_OPTIONS = {
    "max_iterations": (positive_int, 500, "em", "iterations at most"),
    "tolerance": (float, 1e-5, "em", "stop when no parameter moves more"),
    "epochs": (positive_int, 200, "gradient", "passes over the log"),
    "learning_rate": (float, 0.1, "gradient", "Adam learning rate"),
    "patience": (positive_int, 10, "gradient", "epochs without held-out improvement before stopping"),
    "prior_strength": (positive_float, None, ("em", "counting"),
                       "pseudo-counts of a document prior centred on each document parameter's mean; without it "
                       "PBM, UBM and trust bias use Beta(1, 1), the cascade family strength 5"),
}


def _methods(methods: str | tuple[str, ...]) -> tuple[str, ...]:
    return (methods,) if isinstance(methods, str) else methods


def add_parser(commands) -> None:
    fit = commands.add_parser(
        "fit",
        help="fit a click model to a click log",
        description=(
            "Fit a click model to a Parquet click log and write params.json, documents.parquet and "
            "metrics.json. Without --logs, a built-in toy log is simulated from the chosen model "
            "(1,000 queries x 10 documents) and fitted, so the recovered parameters can be compared "
            "with the true ones in OUT/logs/true_params.json."
        ),
    )
    fit.add_argument("--logs", type=log_argument, help="click log: a .parquet file or a directory of them")
    fit.add_argument("--click-model", type=registry_choice(CLICK_MODELS), default="pbm",
                     help=f"{', '.join(CLICK_MODELS)} (default: pbm)")
    fit.add_argument("--method", choices=list(FITTING_METHODS), default="em",
                     help="em (every model), counting (closed form, where the model has one) or gradient "
                          "(optax, every model) (default: em)")
    fit.add_argument("--out", type=path_argument, help="output directory (default runs/fit-MODEL)")
    fit.add_argument("--validation-fraction", type=fraction, default=0.1,
                     help="share of sessions held out for early stopping and metrics (default: 0.1)")
    fit.add_argument("--batch-size", type=positive_int, default=65_536, help="sessions per batch (default: 65536)")
    for name, (kind, default, methods, text) in METHOD_OPTIONS.items():
        methods = " and ".join(_methods(methods))
        shown = "" if default is None else f" (default: {default})"
        fit.add_argument("--" + name.replace("_", "-"), type=kind, help=f"{methods}: {text}{shown}")
    fit.add_argument("--sessions", type=positive_int,
                     help="size of the built-in toy log, without --logs (default: 200000)")
    fit.add_argument("--seed", type=non_negative_int, default=0, help="default: 0")
    add_identifiability_argument(fit)
    add_engine_arguments(fit, "a task per Parquet part runs the counting passes (the document numbering; the cells of PBM and UBM by em)")
    fit.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from click_models.fit_log import REPORTED_PARAMETERS, fit_log
    from click_models.fitting import counting_models, fitting_methods
    from simulators.toy import write_toy_log

    check_engine_arguments(args)
    model = CLICK_MODELS[args.click_model]
    if args.method not in fitting_methods(model):
        names = counting_models()
        raise UsageError(f"--method counting exists for {', '.join(names[:-1])} and {names[-1]}, not {model.name}")
    settings = {}
    for name, (_, default, methods, _) in METHOD_OPTIONS.items():
        value = getattr(args, name)
        if value is not None and args.method not in _methods(methods):  # a flag the chosen method would ignore
            raise UsageError(f"--{name.replace('_', '-')}: an option of --method {' and '.join(_methods(methods))}, "
                             f"not {args.method}")
        settings[name] = default if value is None else value
    if not 0 < settings["tolerance"] < float("inf") or not 0 < settings["learning_rate"] < float("inf"):
        raise UsageError("--tolerance and --learning-rate must be finite positive numbers")
    if args.logs is not None and args.sessions is not None:
        raise UsageError("--sessions: sizes the built-in toy log, which --logs replaces")
    out = args.out or Path("runs") / f"fit-{model.name}"
    refuse_output_inside_logs(out, args.logs, writes_parquet=True)  # documents.parquet
    logs = args.logs
    if logs is None:
        sessions = args.sessions or 200_000
        print(f"no --logs given: simulating {sessions:,} sessions of the built-in toy log with {model.name}")
        logs = write_toy_log(model, out / "logs", sessions, seed=args.seed)
    identifiability = None
    if any(kind in (RANK, RANK_RANK) for kind in model.parameter_kinds.values()):  # a position effect
        identifiability = check_identifiability("fit", logs, args.require_identifiable)
    elif args.require_identifiable:
        raise UsageError(f"--require-identifiable: the {model.name} click model has no per-rank parameter")
    print(f"{logs}: fitting {model.name} by {args.method}")
    engine = engine_from_args(args)
    with engine, tqdm(desc=f"fit {model.name} ({args.method})", unit="it", leave=True) as bar:
        def progress(entry):
            bar.update(1)
            bar.set_postfix({k: f"{v:.5g}" for k, v in entry.items() if k not in ("iteration", "epoch")},
                            refresh=False)

        fitted = fit_log(logs, model, args.method, validation_fraction=args.validation_fraction,
                         batch_size=args.batch_size, seed=args.seed, callback=progress, engine=engine,
                         **settings)
    metrics, params = fitted.metrics, fitted.parameters
    values = [v for entry in fitted.result.history for v in entry.values()]
    if any(v == -np.inf for v in values):  # not a numerical failure: the model rules the log out
        raise UsageError(f"{logs}: the {model.name} click model gives some sessions of this log probability 0 "
                         "(for example several clicks in a session under the cascade model); choose a model that "
                         "allows them")
    if not all(np.isfinite(v) for v in values):
        hint = "; lower --learning-rate" if args.method == "gradient" else ""
        print(f"ultr fit: the {args.method} fit diverged (non-finite likelihood){hint}", file=sys.stderr)
        return 1
    if identifiability is not None:
        metrics["identifiability"] = identifiability
    if not fitted.result.converged and args.method != "counting":
        budget = "--max-iterations" if args.method == "em" else "--epochs"
        print(f"ultr fit: warning: the {args.method} fit stopped after {metrics['iterations']} iterations without "
              f"converging (raise {budget})", file=sys.stderr)
    fitted.write(out)
    print(f"list size {fitted.list_size}, {fitted.documents_index.size:,} query-document pairs; fitted in "
          f"{metrics['fit_seconds']:.2f}s; wrote {out}/params.json, documents.parquet, metrics.json")
    if "perplexity" in metrics:
        print(f"held-out log-likelihood {metrics['held_out_log_likelihood']:.4f} per session, "
              f"perplexity {metrics['perplexity']:.4f}")
    for name in REPORTED_PARAMETERS:
        if params.get(name) is not None:
            print(f"{name}: {np.round(np.asarray(params[name]), 4).tolist()}")
    truth_file = Path(logs) / "true_params.json" if args.logs is None else None  # the built-in toy log's truth
    if truth_file is not None and truth_file.exists():
        truth = json.loads(truth_file.read_text())
        if "examination" in truth and np.ndim(truth["examination"]) == 1:
            exam = np.asarray(truth["examination"])
            print(f"true examination_normalized: {np.round(exam / exam[0], 4).tolist()}")
    return 0

"""The ``ultr`` command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

MODEL_ALIASES = {"trust-bias": "trust_bias", "trustbias": "trust_bias"}


def _model_name(value: str) -> str:
    from click_models import MODELS

    name = MODEL_ALIASES.get(value.lower(), value.lower())
    if name not in MODELS:
        choices = ", ".join(sorted(k.replace("_", "-") for k in MODELS))
        raise argparse.ArgumentTypeError(f"unknown click model {value!r}; choose from {choices}")
    return name


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def _fraction(value: str) -> float:
    number = float(value)
    if not 0.0 <= number < 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {value}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ultr", description="Unbiased learning to rank in JAX.")
    commands = parser.add_subparsers(dest="command", required=True)

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
    fit.add_argument("--logs", type=Path, help="click log: a .parquet file or a directory of them")
    fit.add_argument("--click-model", type=_model_name, default="pbm", help="pbm, cascade, dbn, sdbn, dcm, ubm, ccm, trust-bias")
    fit.add_argument("--method", choices=["em", "counting", "gradient"], default="em",
                     help="em (all models), counting (cascade, sdbn, dcm) or gradient (optax, all models)")
    fit.add_argument("--out", type=Path, help="output directory (default runs/fit-MODEL)")
    fit.add_argument("--validation-fraction", type=_fraction, default=0.1,
                     help="share of sessions held out for early stopping and metrics")
    fit.add_argument("--batch-size", type=_positive_int, default=65_536)
    fit.add_argument("--max-iterations", type=_positive_int, default=500, help="EM iterations")
    fit.add_argument("--tolerance", type=float, default=1e-5, help="EM: stop when no parameter moves more")
    fit.add_argument("--epochs", type=_positive_int, default=200, help="gradient: passes over the log")
    fit.add_argument("--learning-rate", type=float, default=0.1, help="gradient: Adam learning rate")
    fit.add_argument("--patience", type=_positive_int, default=10, help="gradient: early-stopping patience")
    fit.add_argument("--sessions", type=_positive_int, default=200_000, help="size of the built-in toy log")
    fit.add_argument("--seed", type=int, default=0)
    fit.set_defaults(handler=run_fit)
    return parser


def _simulate_default_log(model: str, out: Path, sessions: int, seed: int) -> Path:
    from click_models.logs import atomic_write_json, atomic_write_parquet, sessions_to_table
    from simulators import simulate_toy_log, true_parameters

    queries, docs = 1_000, 10
    truth = true_parameters(model, queries, docs, seed=seed)
    log = simulate_toy_log(model, truth, queries, docs, sessions, seed=seed + 1)
    logs_dir = out / "logs"
    table = sessions_to_table(log.session_id, log.query_id, log.doc_ids, log.clicks, log.mask)
    atomic_write_parquet(table, logs_dir / "part-00000.parquet")
    rank_params = {k: v.tolist() for k, v in truth.items() if v.shape[0] != queries * docs + 1}
    atomic_write_json({"model": model, **rank_params}, logs_dir / "true_params.json")
    return logs_dir


def run_fit(args: argparse.Namespace) -> int:
    import pyarrow as pa
    from tqdm.auto import tqdm

    from click_models import MODELS
    from click_models._base import DOCUMENT
    from click_models.evaluation import evaluate
    from click_models.fitting import LogSource, fit_counting, fit_em, fit_gradient, held_out_split
    from click_models.logs import (
        DocumentIndex,
        atomic_write_json,
        atomic_write_parquet,
        infer_list_size,
        iter_click_log,
    )
    import optax

    model = args.click_model
    out = args.out or Path("runs") / f"fit-{model}"
    out.mkdir(parents=True, exist_ok=True)
    if args.method == "counting" and model not in ("cascade", "sdbn", "dcm"):
        raise SystemExit(f"ultr fit: --method counting exists for cascade, sdbn and dcm, not {model}")
    logs = args.logs
    if logs is None:
        print(f"no --logs given: simulating {args.sessions:,} sessions of the built-in toy log with {model}")
        logs = _simulate_default_log(model, out, args.sessions, args.seed)

    K = infer_list_size(logs)
    fraction, seed = args.validation_fraction, args.seed
    is_held_out = lambda sid: held_out_split(sid, fraction, seed)  # noqa: E731
    is_train = lambda sid: ~held_out_split(sid, fraction, seed)  # noqa: E731

    def train_batches():
        for batch in iter_click_log(logs, args.batch_size, K, columns=()):
            batch.row_valid &= is_train(batch.session_id)
            yield batch

    documents = DocumentIndex.from_batches(train_batches())
    train = LogSource(logs, documents, args.batch_size, K, keep=is_train)
    validation = LogSource(logs, documents, args.batch_size, K, keep=is_held_out) if fraction > 0 else None
    print(f"{logs}: list size {K}, {documents.size:,} query-document pairs; fitting {model} by {args.method}")

    started = time.perf_counter()
    with tqdm(desc=f"fit {model} ({args.method})", unit="it", leave=True) as bar:
        def progress(entry):
            bar.update(1)
            bar.set_postfix({k: f"{v:.5g}" for k, v in entry.items() if k not in ("iteration", "epoch")}, refresh=False)

        if args.method == "em":
            result = fit_em(model, train, documents.size, K, max_iterations=args.max_iterations,
                            tolerance=args.tolerance, callback=progress)
        elif args.method == "counting":
            result = fit_counting(model, train, documents.size, K)
            bar.update(1)
        else:
            result = fit_gradient(model, train, documents.size, K, validation=validation,
                                  optimizer=optax.adam(args.learning_rate), epochs=args.epochs,
                                  patience=args.patience, callback=progress)
    elapsed = time.perf_counter() - started

    kinds = MODELS[model].parameter_kinds
    params = {"model": model, "method": args.method, "list_size": K}
    for name, kind in kinds.items():
        table = result.tables[name]
        if kind == DOCUMENT:
            params.setdefault("prior", {})[name] = float(table[-1])
        else:
            params[name] = table.tolist()
    if "examination" in params and kinds["examination"] != DOCUMENT and np.ndim(params["examination"]) == 1:
        exam = np.asarray(params["examination"])
        params["examination_normalized"] = (exam / exam[0]).tolist() if exam[0] > 0 else None
    atomic_write_json(params, out / "params.json")

    columns = {"query_id": pa.array(documents.query_ids), "doc_id": pa.array(documents.doc_ids)}
    for name, kind in kinds.items():
        if kind == DOCUMENT:
            columns[name] = pa.array(result.tables[name][:-1].astype(np.float32))
    atomic_write_parquet(pa.table(columns), out / "documents.parquet")

    metrics = {
        "model": model,
        "method": args.method,
        "fit_seconds": round(elapsed, 3),
        "iterations": len(result.history),
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
    atomic_write_json(metrics, out / "metrics.json")
    print(f"fitted in {elapsed:.2f}s; wrote {out}/params.json, documents.parquet, metrics.json")
    if validation is not None:
        print(f"held-out log-likelihood {metrics['held_out_log_likelihood']:.4f} per session, "
              f"perplexity {metrics['perplexity']:.4f}")
    for name in ("examination", "examination_normalized", "continuation", "tau1", "tau2", "tau3",
                 "epsilon_pos", "epsilon_neg"):
        if name in params and params[name] is not None:
            print(f"{name}: {np.round(np.asarray(params[name]), 4).tolist()}")
    if args.logs is None and (logs / "true_params.json").exists():
        truth = json.loads((logs / "true_params.json").read_text())
        if "examination" in truth and np.ndim(truth["examination"]) == 1:
            exam = np.asarray(truth["examination"])
            print(f"true examination_normalized: {np.round(exam / exam[0], 4).tolist()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from click_models.logs import ClickLogError

    try:
        return args.handler(args)
    except ClickLogError as error:
        print(f"ultr {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

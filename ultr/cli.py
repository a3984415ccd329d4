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

    simulate = commands.add_parser(
        "simulate",
        help="simulate a biased click log from a relevance-labelled dataset",
        description=(
            "Rank the queries of a dataset with a logging policy, let a click model click, and stream the "
            "sessions to Parquet files in OUT (the ultr click-log format, with labels and examination). "
            "Options may also come from a TOML or JSON --config file whose keys are the option names "
            "with underscores; command-line options win."
        ),
    )
    simulate.add_argument("--data", default="synthetic",
                          help="synthetic, a LETOR file, a fold directory (train/vali/test.txt) or a dataset name")
    simulate.add_argument("--config", type=Path, help="TOML or JSON file with simulation options")
    simulate.add_argument("--click-model", type=_model_name, help="pbm (default), cascade, dbn, sdbn, dcm, ubm, ccm, trust-bias")
    simulate.add_argument("--eta", type=float, help="position-bias severity: examination rho_k ** eta (default 1)")
    simulate.add_argument("--examination", help="dla (default), inverse, or comma-separated rho per rank")
    simulate.add_argument("--list-size", type=_positive_int, help="documents shown per session (top-K, default 10)")
    simulate.add_argument("--eps-pos", type=float, help="attraction of the highest grade (default 1.0)")
    simulate.add_argument("--eps-neg", type=float, help="attraction of grade 0 (default 0.1)")
    simulate.add_argument("--max-label", type=int, help="highest grade (default: the dataset's)")
    simulate.add_argument("--continuation", help="DBN gamma, or DCM lambda per rank (comma-separated)")
    simulate.add_argument("--tau", help="CCM tau1,tau2,tau3 (default 0.8,0.5,0.9)")
    simulate.add_argument("--trust-eps-pos", help="trust bias: comma-separated click probability of relevant documents per rank")
    simulate.add_argument("--trust-eps-neg", help="trust bias: comma-separated click probability of non-relevant documents per rank")
    simulate.add_argument("--policy", help="production (default), uniform, plackett-luce, noisy-oracle; "
                                             "a comma-separated list mixes several logging policies")
    simulate.add_argument("--production-fraction", type=float, help="share of training queries for the production ranker (0.01)")
    simulate.add_argument("--temperature", type=float, help="Plackett-Luce temperature (1.0)")
    simulate.add_argument("--oracle-noise", type=float, help="noisy-oracle noise scale (1.0)")
    simulate.add_argument("--intervention", choices=["none", "randtopk", "swap"], help="randomisation of the shown ranking")
    simulate.add_argument("--intervention-k", type=_positive_int, help="RandTop-k: how many top documents are shuffled")
    simulate.add_argument("--intervention-rate", type=float, help="share of sessions that get the intervention (1.0)")
    simulate.add_argument("--query-sampling", choices=["uniform", "powerlaw"])
    simulate.add_argument("--powerlaw-exponent", type=float)
    simulate.add_argument("--normalize", choices=["none", "minmax", "log1p", "log1p-minmax"], default="none",
                          help="feature normalisation for the logging policy's ranker")
    simulate.add_argument("--sessions", type=_positive_int, default=1_000_000)
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--chunk-size", type=_positive_int, default=100_000)
    simulate.add_argument("--rows-per-file", type=_positive_int, default=1_000_000)
    simulate.add_argument("--out", type=Path, required=True, help="output directory for the Parquet files")
    simulate.add_argument("--overwrite", action="store_true", help="replace the click log already in OUT")
    simulate.set_defaults(handler=run_simulate)

    train = commands.add_parser(
        "train",
        help="train a ranker from click logs with a counterfactual learner",
        description=(
            "Train a Flax ranker on click logs joined with the features of --data (the dataset or fold "
            "directory the logs were simulated from, which also supplies the validation and test splits). "
            "Writes metrics.json (test nDCG@1/3/5/10, ERR@10, MRR@10), propensities.json for learners that "
            "estimate them, and test.run / test.qrels for trec_eval."
        ),
    )
    train.add_argument("--logs", type=Path, help="click log directory or file (not needed for skyline)")
    train.add_argument("--data", required=True, help="synthetic, a LETOR file, a fold directory or a dataset name")
    train.add_argument("--learner", required=True, choices=["naive", "ips", "dla", "rem", "two-tower", "paird",
                                                            "affine", "skyline", "logging-policy"])
    train.add_argument("--out", type=Path, required=True)
    train.add_argument("--ranker", choices=["linear", "mlp"], default="mlp")
    train.add_argument("--hidden", default="512,256,128", help="MLP layer sizes")
    train.add_argument("--dropout", type=float, default=0.0)
    train.add_argument("--loss", choices=["softmax", "sigmoid", "pairwise", "lambdarank"],
                       help="ranking loss (default per learner)")
    train.add_argument("--batch-size", type=_positive_int, default=256)
    train.add_argument("--learning-rate", type=float, default=1e-3)
    train.add_argument("--bias-learning-rate", type=float,
                       help="learning rate of the bias model (dla propensities, two-tower bias); default: "
                            "--learning-rate")
    train.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay")
    train.add_argument("--optimizer", choices=["adamw", "adam", "adagrad", "sgd"], default="adamw")
    train.add_argument("--epochs", type=_positive_int, default=1, help="passes over the click log")
    train.add_argument("--max-steps", type=_positive_int, help="stop after this many steps")
    train.add_argument("--eval-every", type=_positive_int, default=250, help="validation every N steps")
    train.add_argument("--patience", type=_positive_int, default=8, help="evaluations without improvement")
    train.add_argument("--propensities", help="propensity JSON file (ultr propensity output) for ips/affine; "
                                              "default: the log's true examination column")
    train.add_argument("--clip", type=float, default=0.01, help="IPS: smallest propensity")
    train.add_argument("--max-weight", type=float, default=100.0, help="DLA: largest inverse weight")
    train.add_argument("--two-tower", choices=["product", "additive"], default="product")
    train.add_argument("--normalize", choices=["none", "minmax", "log1p", "log1p-minmax"], default="none")
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(handler=run_train)

    propensity = commands.add_parser(
        "propensity",
        help="estimate examination propensities from a click log",
        description=(
            "Estimate the examination probability per rank (normalised at rank 1) with bootstrap confidence "
            "intervals and write {estimator, examination, ci_low, ci_high} as JSON; every IPS-based learner "
            "takes the file (ultr train --propensities FILE)."
        ),
    )
    propensity.add_argument("--logs", type=Path, required=True)
    propensity.add_argument("--estimator", required=True,
                            choices=["ctr", "randtopk", "swap", "pivot", "adjacent", "allpairs", "em", "dla",
                                     "trust-bias"])
    propensity.add_argument("--out", type=Path, required=True, help="output JSON file")
    propensity.add_argument("--data", help="dataset of the logs (the dla estimator trains a ranker on it)")
    propensity.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicates (0: no intervals)")
    propensity.add_argument("--plot", type=Path, help="draw the estimate against the true curve to this PNG")
    propensity.add_argument("--seed", type=int, default=0)
    propensity.set_defaults(handler=run_propensity)

    run = commands.add_parser(
        "run",
        help="run an experiment from a TOML config (default: a built-in experiment on synthetic data)",
        description=(
            "Simulate (reusing cached logs), estimate propensities, train learners over seeds and every "
            "combination of list-valued options, and write results.csv, results.json, results.md and plots "
            "under OUT_ROOT/<name>. Without CONFIG: PBM logs (eta = 1) on the built-in synthetic dataset, "
            "Naive, IPS, DLA, RegressionEM and the skyline over two seeds."
        ),
    )
    run.add_argument("config", nargs="?", type=Path, help="experiment TOML file (see docs and examples/)")
    run.add_argument("--out-root", type=Path, default=Path("runs"))
    run.set_defaults(handler=run_run)

    datasets = commands.add_parser("datasets", help="list and download public learning-to-rank datasets")
    datasets_commands = datasets.add_subparsers(dest="datasets_command", required=True)
    listing = datasets_commands.add_parser("list", help="the registry, with what is downloaded")
    listing.add_argument("--dir", type=Path, help="data directory (default $ULTR_DATA_DIR or ~/.cache/ultr/data)")
    listing.set_defaults(handler=run_datasets_list)
    download = datasets_commands.add_parser("download", help="fetch, verify and extract a dataset")
    download.add_argument("name")
    download.add_argument("--dir", type=Path, help="data directory (default $ULTR_DATA_DIR or ~/.cache/ultr/data)")
    download.add_argument("--url", help="another address for the archive (a mirror or a file:// copy)")
    download.set_defaults(handler=run_datasets_download)
    return parser


def _floats(text: str | None, what: str):
    if text is None:
        return None
    try:
        values = [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"ultr simulate: {what} must be comma-separated numbers, got {text!r}") from None
    return values[0] if len(values) == 1 else values


def _load_config_file(path: Path) -> dict:
    import tomllib

    if not path.exists():
        raise SystemExit(f"ultr simulate: config file {path} does not exist")
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        return tomllib.loads(path.read_text())
    except (ValueError, tomllib.TOMLDecodeError) as error:
        raise SystemExit(f"ultr simulate: {path}: {error}") from None


def simulation_config(args: argparse.Namespace):
    """Merge --config and command-line options into a SimulationConfig (unknown keys are errors)."""
    import dataclasses

    from simulators.simulation import SimulationConfig

    fields = {f.name for f in dataclasses.fields(SimulationConfig)}
    values: dict = {}
    if args.config is not None:
        for key, value in _load_config_file(args.config).items():
            name = key.replace("-", "_")
            name = {"policy": "policies"}.get(name, name)
            if name not in fields:
                raise SystemExit(f"ultr simulate: {args.config}: unknown key {key!r}; "
                                 f"known: {', '.join(sorted(fields))}")
            values[name] = value
    cli = {
        "click_model": args.click_model, "eta": args.eta, "list_size": args.list_size, "eps_pos": args.eps_pos,
        "eps_neg": args.eps_neg, "max_label": args.max_label, "production_fraction": args.production_fraction,
        "temperature": args.temperature, "oracle_noise": args.oracle_noise, "intervention_k": args.intervention_k,
        "intervention_rate": args.intervention_rate, "query_sampling": args.query_sampling,
        "powerlaw_exponent": args.powerlaw_exponent,
        "continuation": _floats(args.continuation, "--continuation"),
        "trust_eps_pos": _floats(args.trust_eps_pos, "--trust-eps-pos"),
        "trust_eps_neg": _floats(args.trust_eps_neg, "--trust-eps-neg"),
    }
    if args.examination is not None:
        cli["examination"] = args.examination if args.examination in ("dla", "inverse") else \
            list(np.atleast_1d(_floats(args.examination, "--examination")))
    if args.tau is not None:
        tau = _floats(args.tau, "--tau")
        if not isinstance(tau, list) or len(tau) != 3:
            raise SystemExit("ultr simulate: --tau needs three numbers tau1,tau2,tau3")
        cli["tau"] = tuple(tau)
    if args.policy is not None:
        cli["policies"] = tuple(p.strip() for p in args.policy.split(",") if p.strip())
    if args.intervention is not None:
        cli["intervention"] = None if args.intervention == "none" else args.intervention
    values.update({k: v for k, v in cli.items() if v is not None})
    if isinstance(values.get("policies"), str):
        values["policies"] = tuple(p.strip() for p in values["policies"].split(","))
    if "click_model" in values:
        values["click_model"] = MODEL_ALIASES.get(values["click_model"], values["click_model"])
    for key in ("trust_eps_pos", "trust_eps_neg"):
        if isinstance(values.get(key), float):
            values[key] = [values[key]] * values.get("list_size", 10)
    config = SimulationConfig(**values)
    try:
        config.validate()
        config.rank_parameters()
    except ValueError as error:
        raise SystemExit(f"ultr simulate: {error}") from None
    return config


def run_simulate(args: argparse.Namespace) -> int:
    from simulators.datasets import load_dataset
    from simulators.simulation import Simulator

    config = simulation_config(args)
    out = args.out
    existing = sorted(out.glob("part-*.parquet")) if out.exists() else []
    if existing and not args.overwrite:
        raise SystemExit(f"ultr simulate: {out} already holds a click log ({len(existing)} files); "
                         "use --overwrite or another --out")
    dataset = load_dataset(args.data, normalize=None if args.normalize == "none" else args.normalize)
    print(f"{dataset.name}: {dataset.train.num_queries:,} training queries, {dataset.num_features} features, "
          f"grades 0-{dataset.max_label}; policy {','.join(config.policies)}; click model {config.click_model}")
    simulator = Simulator(dataset, config, seed=args.seed)
    for file in existing:
        file.unlink()
    summary = simulator.run(out, args.sessions, chunk_size=args.chunk_size, rows_per_file=args.rows_per_file)
    ctr = " ".join(f"{x:.3f}" for x in summary["ctr_per_rank"])
    print(f"{summary['sessions']:,} sessions in {summary['seconds']:.2f}s "
          f"({summary['sessions_per_second']:,.0f} sessions/s) -> {out} ({len(summary['files'])} files)")
    print(f"CTR per rank: {ctr}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from simulators.datasets import load_dataset
    from ultr.training import TrainConfig, train, write_outputs

    try:
        hidden = tuple(int(h) for h in args.hidden.split(",") if h.strip())
    except ValueError:
        raise SystemExit(f"ultr train: --hidden must be comma-separated integers, got {args.hidden!r}") from None
    config = TrainConfig(
        learner=args.learner, ranker=args.ranker, hidden=hidden, dropout=args.dropout, loss=args.loss,
        batch_size=args.batch_size, learning_rate=args.learning_rate, weight_decay=args.weight_decay,
        bias_learning_rate=args.bias_learning_rate,
        optimizer=args.optimizer,
        epochs=args.epochs, max_steps=args.max_steps, eval_every=args.eval_every, patience=args.patience,
        seed=args.seed, propensities=args.propensities, clip=args.clip, max_weight=args.max_weight,
        two_tower=args.two_tower,
    )
    if args.learner not in ("skyline", "logging-policy") and args.logs is None:
        raise SystemExit(f"ultr train: --learner {args.learner} needs --logs")
    dataset = load_dataset(args.data, normalize=None if args.normalize == "none" else args.normalize)
    try:
        result = train(args.logs, dataset, config)
    except ValueError as error:
        raise SystemExit(f"ultr train: {error}") from None
    write_outputs(args.out, result, dataset, config)
    test = result.test
    print(f"{args.learner}: {result.steps} steps in {result.seconds:.1f}s; test " +
          ", ".join(f"{k} {v:.4f}" for k, v in test.items() if k != "num_queries") +
          f" ({test['num_queries']} queries with a relevant document)")
    if result.propensities is not None:
        print("propensities (normalised at rank 1): " + " ".join(f"{p:.3f}" for p in result.propensities))
    print(f"wrote {args.out}/metrics.json, test.run, test.qrels")
    return 0


def run_propensity(args: argparse.Namespace) -> int:
    from click_models.logs import atomic_write_json
    from ultr.propensity import MissingInterventionError, estimate, plot_estimate, true_examination

    try:
        result = estimate(args.logs, args.estimator, data=args.data, bootstrap=args.bootstrap, seed=args.seed)
    except MissingInterventionError as error:
        print(f"ultr propensity: {error}", file=sys.stderr)
        return 2
    except ValueError as error:
        raise SystemExit(f"ultr propensity: {error}") from None
    payload = result.to_json()
    truth = true_examination(args.logs)
    if truth is not None:
        payload["true_examination"] = truth.tolist()
        payload["max_abs_error"] = float(np.nanmax(np.abs(result.examination - truth[: len(result.examination)])))
    atomic_write_json(payload, args.out)
    print(f"{args.estimator}: " + " ".join(f"{x:.3f}" for x in result.examination) + f" -> {args.out}")
    if truth is not None:
        print("true:  " + " ".join(f"{x:.3f}" for x in truth) + f" (max abs error {payload['max_abs_error']:.4f})")
    if args.plot is not None:
        plot_estimate(result, truth, args.plot)
        print(f"plot: {args.plot}")
    return 0


def run_run(args: argparse.Namespace) -> int:
    from ultr.experiment import ConfigError, load_config, run_experiment, validate

    try:
        config = load_config(args.config)
        validate(config)
    except ConfigError as error:
        where = f"{args.config}: " if args.config is not None and not str(error).startswith(str(args.config)) else ""
        print(f"ultr run: {where}{error}", file=sys.stderr)
        return 2
    run_experiment(config, args.out_root)
    return 0


def run_datasets_list(args: argparse.Namespace) -> int:
    from simulators.registry import DATASETS, data_dir, is_downloaded

    root = data_dir(args.dir)
    print(f"data directory: {root}")
    print(f"{'name':<13} {'queries':>8} {'features':>8} {'labels':>6}  {'status':<10} access")
    for name, entry in DATASETS.items():
        status = "downloaded" if is_downloaded(name, args.dir) else "-"
        access = "automatic" if entry.url else "licence: by hand"
        print(f"{name:<13} {entry.queries:>8} {entry.features:>8} {entry.labels:>6}  {status:<10} {access}")
    print("also built in: synthetic (no download)")
    return 0


def run_datasets_download(args: argparse.Namespace) -> int:
    from simulators.registry import DownloadError, download, info, is_downloaded, verify_files

    try:
        entry = info(args.name)
        if entry.url is None and args.url is None and is_downloaded(entry.name, args.dir):
            problems = verify_files(entry.name, args.dir)
            if problems:
                print("; ".join(problems), file=sys.stderr)
                return 1
            print(f"{entry.name} is in place and its known checksums match")
            return 0
        path = download(entry.name, args.dir, url=args.url)
    except DownloadError as error:
        print(f"ultr datasets download: {error}", file=sys.stderr)
        return 1
    print(f"{entry.name}: ready at {path}")
    return 0


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
    from tqdm import tqdm

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
    from simulators.letor import LetorFormatError
    from simulators.registry import DownloadError

    try:
        return args.handler(args)
    except (ClickLogError, LetorFormatError, DownloadError) as error:
        print(f"ultr {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

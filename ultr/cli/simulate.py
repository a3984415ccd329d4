"""``ultr simulate``: a biased click log from a relevance-labelled dataset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from click_models.storage import path_argument

import numpy as np

from click_models import CLICK_MODELS
from click_models.logs import ClickLogError
from simulators.interventions import INTERVENTIONS
from simulators.policies import POLICIES
from simulators.simulation import GENERATORS

from .common import (UsageError, add_engine_arguments, check_engine_arguments, engine_from_args, non_negative_int, positive_int,
                     registry_choice)

NORMALIZATIONS = ["none", "minmax", "log1p", "log1p-minmax"]


def add_parser(commands) -> None:
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
                          help="synthetic, a LETOR file, a fold directory (train/vali/test.txt) or a dataset name "
                               "(default: synthetic)")
    simulate.add_argument("--config", type=path_argument, help="TOML or JSON file with simulation options")
    simulate.add_argument("--click-model", type=registry_choice(CLICK_MODELS),
                          help=f"{', '.join(CLICK_MODELS)} (default: pbm)")
    simulate.add_argument("--eta", type=float, help="position-bias severity: examination rho_k ** eta (default: 1)")
    simulate.add_argument("--examination", help="dla (default), inverse, or comma-separated rho per rank")
    simulate.add_argument("--list-size", type=positive_int, help="documents shown per session (top-K, default: 10)")
    simulate.add_argument("--eps-pos", type=float, help="attraction of the highest grade (default: 1.0)")
    simulate.add_argument("--eps-neg", type=float, help="attraction of grade 0 (default: 0.1)")
    simulate.add_argument("--max-label", type=int, help="highest grade (default: the dataset's)")
    simulate.add_argument("--continuation", help="DBN gamma, or DCM lambda per rank (comma-separated; default: the "
                                                 "model's, 0.9 or 0.9..0.5)")
    simulate.add_argument("--tau", help="CCM tau1,tau2,tau3 (default: 0.8,0.5,0.9)")
    simulate.add_argument("--trust-eps-pos", help="trust bias: comma-separated click probability of relevant "
                                                  "documents per rank (default: 1)")
    simulate.add_argument("--trust-eps-neg", help="trust bias: comma-separated click probability of non-relevant "
                                                  "documents per rank (default: 0.65 / rank)")
    simulate.add_argument("--policy", help=f"{', '.join(POLICIES)} (default: production); a comma-separated list "
                                           "mixes several logging policies")
    simulate.add_argument("--production-fraction", type=float,
                          help="share of training queries for the production ranker (default: 0.01)")
    simulate.add_argument("--temperature", type=float, help="Plackett-Luce temperature (default: 1.0)")
    simulate.add_argument("--oracle-noise", type=float, help="noisy-oracle noise scale (default: 1.0)")
    simulate.add_argument("--candidates", type=positive_int,
                          help="two-stage logging: candidates K2 drawn per session (Plackett-Luce) before the policy "
                               "ranks them (default: none, the policy ranks every document)")
    simulate.add_argument("--candidate-temperature", type=float,
                          help="two-stage logging: the candidate draw's temperature (default: --temperature)")
    simulate.add_argument("--intervention", choices=["none", *INTERVENTIONS],
                          help="randomisation of the shown ranking (default: none)")
    simulate.add_argument("--intervention-k", type=positive_int,
                          help="RandTop-k: how many top documents are shuffled (default: the list size)")
    simulate.add_argument("--intervention-rate", type=float,
                          help="share of sessions that get the intervention (default: 1.0)")
    simulate.add_argument("--query-sampling", choices=["uniform", "powerlaw"], help="default: uniform")
    simulate.add_argument("--powerlaw-exponent", type=float, help="default: 1.0")
    simulate.add_argument("--generator", choices=GENERATORS,
                          help="random key implementation, recorded in the log: threefry2x32 (default; the same bits "
                               "on every backend) or XLA's rbg / unsafe_rbg (faster; the same bits for a seed on one "
                               "backend and JAX version)")
    simulate.add_argument("--normalize", choices=NORMALIZATIONS, default="none",
                          help="feature normalisation for the logging policy's ranker (default: none)")
    simulate.add_argument("--sessions", type=positive_int, default=1_000_000, help="default: 1000000")
    simulate.add_argument("--seed", type=non_negative_int, default=0, help="default: 0")
    simulate.add_argument("--chunk-size", type=positive_int, default=100_000,
                          help="sessions per compiled chunk (default: 100000)")
    simulate.add_argument("--rows-per-file", type=positive_int, default=1_000_000,
                          help="sessions per Parquet part (default: 1000000)")
    simulate.add_argument("--out", type=path_argument, required=True, help="output directory for the Parquet files")
    simulate.add_argument("--overwrite", action="store_true", help="replace the click log already in OUT")
    add_engine_arguments(simulate, "a task simulates each Parquet part (the same bytes)")
    simulate.set_defaults(handler=run)


def _floats(text: str | None, flag: str):
    if text is None:
        return None
    try:
        values = [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{flag} must be comma-separated numbers, got {text!r}") from None
    return values[0] if len(values) == 1 else values


def _load_config_file(path: Path) -> dict:
    import tomllib

    if not path.exists():
        raise UsageError(f"config file {path} does not exist")
    try:
        values = json.loads(path.read_text()) if path.suffix == ".json" else tomllib.loads(path.read_text())
    except (ValueError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise UsageError(f"{path}: {error}") from None
    if not isinstance(values, dict):
        raise UsageError(f"{path}: must hold a table of options, got {type(values).__name__}")
    return values


def command_line_values(args: argparse.Namespace) -> dict:
    """The simulation options given on the command line, as SimulationConfig keys."""
    values = {
        "click_model": args.click_model, "eta": args.eta, "list_size": args.list_size, "eps_pos": args.eps_pos,
        "eps_neg": args.eps_neg, "max_label": args.max_label, "production_fraction": args.production_fraction,
        "temperature": args.temperature, "oracle_noise": args.oracle_noise, "intervention_k": args.intervention_k,
        "candidates": args.candidates, "candidate_temperature": args.candidate_temperature,
        "intervention_rate": args.intervention_rate, "query_sampling": args.query_sampling,
        "powerlaw_exponent": args.powerlaw_exponent, "generator": args.generator,
        "continuation": _floats(args.continuation, "--continuation"),
        "trust_eps_pos": _floats(args.trust_eps_pos, "--trust-eps-pos"),
        "trust_eps_neg": _floats(args.trust_eps_neg, "--trust-eps-neg"),
        "policies": args.policy,
    }
    if args.examination is not None:
        values["examination"] = args.examination if args.examination in ("dla", "inverse") else \
            list(np.atleast_1d(_floats(args.examination, "--examination")))
    if args.tau is not None:
        tau = _floats(args.tau, "--tau")
        if not isinstance(tau, list) or len(tau) != 3:
            raise UsageError("--tau needs three numbers tau1,tau2,tau3")
        values["tau"] = tuple(tau)
    if args.intervention is not None:
        values["intervention"] = None if args.intervention == "none" else args.intervention
    return {k: v for k, v in values.items() if v is not None or k == "intervention"}


def simulation_config(args: argparse.Namespace):
    """Merge --config and command-line options into a SimulationConfig (unknown keys are errors)."""
    from simulators.simulation import simulation_config as build

    values: dict = {}
    where = {}
    if args.config is not None:
        for key, value in _load_config_file(args.config).items():
            values[key] = value
            where[key] = str(args.config)
    values.update(command_line_values(args))
    try:
        return build(values, name=lambda key: where.get(key, "--" + key.replace("_", "-")))
    except ValueError as error:
        raise UsageError(str(error)) from None


def run(args: argparse.Namespace) -> int:
    from simulators.datasets import load_dataset
    from simulators.simulation import Simulator

    check_engine_arguments(args)
    config = simulation_config(args)
    out = args.out
    existing = sorted(out.glob("*.parquet")) if out.is_dir() else []
    if existing and not args.overwrite:
        raise UsageError(f"{out} already holds a click log ({len(existing)} files); use --overwrite or another --out")
    try:
        dataset = load_dataset(args.data, normalize=None if args.normalize == "none" else args.normalize)
    except ValueError as error:
        raise UsageError(str(error)) from None
    print(f"{dataset.name}: {dataset.train.num_queries:,} training queries, {dataset.num_features} features, "
          f"grades 0-{dataset.max_label}; policy {','.join(config.policies)}; click model {config.click_model}")
    try:
        simulator = Simulator(dataset, config, seed=args.seed)
    except ValueError as error:
        raise UsageError(str(error)) from None
    engine = engine_from_args(args)
    try:
        summary = simulator.run(out, args.sessions, chunk_size=args.chunk_size, rows_per_file=args.rows_per_file,
                                overwrite=args.overwrite, engine=engine)
    except ValueError as error:
        if isinstance(error, ClickLogError):
            raise
        raise UsageError(str(error)) from None
    finally:
        engine.close()
    if summary.get("resumed_parts"):
        print(f"resumed: {summary['resumed_parts']} of {len(summary['files'])} parts were finished by an interrupted "
              "run of this command (checked by SHA-256)")
    ctr = " ".join(f"{x:.3f}" for x in summary["ctr_per_rank"])
    rate = f"{summary['sessions_per_second']:,.0f} sessions/s" if summary["sessions_per_second"] else "all resumed"
    print(f"{summary['sessions']:,} sessions in {summary['seconds']:.2f}s ({rate}) -> {out} "
          f"({len(summary['files'])} files)")
    print(f"CTR per rank: {ctr}")
    return 0

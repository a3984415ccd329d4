"""``ultr run``: an experiment from a TOML config (default: the built-in experiment)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from click_models.storage import path_argument

from .common import add_engine_arguments, check_engine_arguments, engine_from_args


def add_parser(commands) -> None:
    run_parser = commands.add_parser(
        "run",
        help="run an experiment from a TOML config (default: a built-in experiment on synthetic data)",
        description=(
            "Simulate (reusing cached logs), estimate propensities, train learners over seeds and every "
            "combination of list-valued options, and write results.csv, results.json, results.md and plots "
            "under OUT_ROOT/<name>. Without CONFIG: PBM logs (eta = 1) on the built-in synthetic dataset, "
            "Naive, IPS, DLA, RegressionEM and the skyline over two seeds."
        ),
    )
    run_parser.add_argument("config", nargs="?", type=path_argument, help="experiment TOML file (see docs and examples/)")
    run_parser.add_argument("--out-root", type=path_argument, default=Path("runs"), help="default: runs")
    run_parser.add_argument("--no-progress", action="store_true",
                            help="no progress bar (default: one bar over grid points x seeds, on stderr)")
    add_engine_arguments(run_parser, "a task runs each grid point and seed")
    run_parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ultr.experiment import ConfigError, load_config, run_experiment, validate

    check_engine_arguments(args)
    try:
        config = load_config(args.config)
        validate(config)
    except ConfigError as error:
        where = f"{args.config}: " if args.config is not None and not str(error).startswith(str(args.config)) else ""
        print(f"ultr run: {where}{error}", file=sys.stderr)
        return 2
    try:
        with engine_from_args(args) as engine:
            run_experiment(config, args.out_root, log=lambda line: print(line, flush=True), engine=engine,
                           progress=not args.no_progress)
    except ValueError as error:  # an input the checks before the run could not see (a log that cannot support it)
        print(f"ultr run: {error}", file=sys.stderr)
        return 2
    return 0

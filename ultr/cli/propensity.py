"""``ultr propensity``: examination per rank from a click log, with bootstrap intervals."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from click_models.storage import log_argument, path_argument

import numpy as np

from ultr.estimators import ESTIMATORS

from .common import (UsageError, add_engine_arguments, check_engine_arguments, add_identifiability_argument, check_identifiability,
                     engine_from_args, non_negative_int, refuse_output_inside_logs, registry_choice)


def add_parser(commands) -> None:
    propensity = commands.add_parser(
        "propensity",
        help="estimate examination propensities from a click log",
        description=(
            "Estimate the examination probability per rank (normalised at rank 1) with bootstrap confidence "
            "intervals and write {estimator, examination, ci_low, ci_high} as JSON; every IPS-based learner "
            "takes the file (ultr train --propensities FILE)."
        ),
    )
    propensity.add_argument("--logs", type=log_argument, required=True)
    propensity.add_argument("--estimator", required=True, type=registry_choice(ESTIMATORS), metavar="ESTIMATOR",
                            help=", ".join(ESTIMATORS))
    propensity.add_argument("--out", type=path_argument, required=True, help="output JSON file")
    propensity.add_argument("--data", help="dataset of the logs (the dla estimator trains a ranker on it)")
    defaults = ", ".join(f"{name} {ESTIMATORS[name].default_bootstrap}" for name in ESTIMATORS)
    propensity.add_argument("--bootstrap", type=non_negative_int,
                            help=f"bootstrap replicates (0: no intervals; default: the estimator's: {defaults})")
    propensity.add_argument("--plot", type=path_argument, help="draw the estimate against the true curve to this PNG")
    propensity.add_argument("--seed", type=non_negative_int, default=0, help="default: 0")
    add_identifiability_argument(propensity)
    add_engine_arguments(propensity, "a task counts each Parquet part's impressions and clicks")
    propensity.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from click_models.logs import ClickLogError, atomic_write_json
    from ultr.estimators import MissingInterventionError, estimate
    from ultr.plots import plot_estimate
    from ultr.propensity import true_examination

    check_engine_arguments(args)
    refuse_output_inside_logs(args.out, args.logs)
    if args.data is not None and not ESTIMATORS[args.estimator].needs_data:
        raise UsageError(f"--data: the {args.estimator} estimator does not use it (only estimators that train a "
                         "ranker, such as dla, do)")
    if args.plot is not None and args.plot.suffix.lower() not in (".png", ".pdf", ".svg", ".jpg", ".jpeg"):
        raise UsageError(f"--plot {args.plot}: give a .png, .pdf, .svg or .jpg file")
    refuse_output_inside_logs(args.plot, args.logs, "--plot")
    try:
        replicates = ESTIMATORS[args.estimator].replicates(args.bootstrap)
    except ValueError as error:
        raise UsageError(str(error)) from None
    identifiability = check_identifiability("propensity", args.logs, args.require_identifiable)
    engine = engine_from_args(args)
    try:
        result = estimate(args.logs, args.estimator, data=args.data, bootstrap=replicates, seed=args.seed,
                          engine=engine)
    except MissingInterventionError as error:
        print(f"ultr propensity: {error}", file=sys.stderr)
        return 2
    except ValueError as error:
        if isinstance(error, ClickLogError):  # a bad log: reported by main, exit 2
            raise
        raise UsageError(str(error)) from None
    finally:
        engine.close()
    payload = result.to_json()
    payload["bootstrap"] = replicates
    payload["identifiability"] = identifiability
    if result.extra.get("converged") is False:
        print(f"ultr propensity: warning: the {args.estimator} fit stopped after {result.extra.get('iterations')} "
              "iterations without converging", file=sys.stderr)
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

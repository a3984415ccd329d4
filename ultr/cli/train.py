"""``ultr train``: a ranker from click logs with a counterfactual learner.

The flags are generated from :class:`ultr.training.TrainConfig` and from the
``Options`` of every registered learner: a new learner's hyperparameters
become flags without a line here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from click_models.storage import log_argument, path_argument

from ultr.learners import LEARNERS
from ultr.options import OptionError, add_arguments

from .common import (UsageError, add_identifiability_argument, check_identifiability, non_negative_int,
                     positive_int, refuse_output_inside_logs, registry_choice)
from .simulate import NORMALIZATIONS

#: arguments of the command that are not TrainConfig options
COMMAND_ARGUMENTS = ("logs", "data", "out", "normalize", "init", "require_identifiable", "handler", "command",
                     "coordinator_address", "num_processes", "process_id")


def add_parser(commands) -> None:
    from ultr.training import TrainConfig, learner_option_fields

    train = commands.add_parser(
        "train",
        help="train a ranker from click logs with a counterfactual learner",
        description=(
            "Train a Flax ranker on click logs joined with the features of --data (the dataset or fold "
            "directory the logs were simulated from, which also supplies the validation and test splits). "
            "Writes metrics.json (test nDCG@1/3/5/10, ERR@10, MRR@10), propensities.json for learners that "
            "estimate them, test.run / test.qrels for trec_eval, and the trained model in OUT/model (for "
            "ultr rank and --init). An option the chosen learner does not use is an error."
        ),
    )
    train.add_argument("--logs", type=log_argument, help="click log directory or file (not needed for skyline)")
    train.add_argument("--data", required=True, help="synthetic, a LETOR file, a fold directory, a dataset name or "
                                                     "baidu:DIR (a converted Baidu-ULTR directory)")
    train.add_argument("--learner", required=True, type=registry_choice(LEARNERS), metavar="LEARNER",
                       help=f"{', '.join(LEARNERS)}")
    train.add_argument("--out", type=path_argument, required=True)
    train.add_argument("--normalize", choices=NORMALIZATIONS, default="none",
                       help="feature normalisation (default: none)")
    train.add_argument("--init", type=Path, metavar="MODEL_DIR",
                       help="start from a saved model (OUT/model of an earlier ultr train): the whole learner when "
                            "it was saved by the same learner, else its ranker (default: a fresh ranker)")
    add_identifiability_argument(train)
    distributed = train.add_argument_group(
        "several hosts (jax.distributed; see docs/scale.md): start the same command on every host")
    distributed.add_argument("--coordinator-address", help="HOST:PORT of process 0 (default: none, one process; "
                                                          "'auto' detects SLURM and other launchers)")
    distributed.add_argument("--num-processes", type=positive_int, help="processes in all (with an address)")
    distributed.add_argument("--process-id", type=non_negative_int, help="this process's index (with an address)")
    seen = {"learner"}
    add_arguments(train.add_argument_group("training"), TrainConfig, seen=seen)
    learners = train.add_argument_group("learner options (each for the learners named)")
    for key, users in learner_option_fields().items():
        defaults = {cls.name: _default(cls, key) for cls in users}
        text = "used by " + ", ".join(defaults)
        if len(set(defaults.values())) > 1:  # the same option name, with each learner's own default
            text += "; default " + ", ".join(f"{name} {value}" for name, value in defaults.items())
        add_arguments(learners, users[0].Options, seen=seen, users={key: text})
    train.set_defaults(handler=run)


def _default(cls, key: str):
    import dataclasses

    return next(f.default for f in dataclasses.fields(cls.Options) if f.name == key)


def start_distributed(args: argparse.Namespace) -> None:
    """Join the processes of a multi-host run (``jax.distributed.initialize``) when an address is given."""
    explicit = (args.num_processes, args.process_id)
    if args.coordinator_address is None:
        if any(v is not None for v in explicit):
            raise UsageError("--num-processes and --process-id go with --coordinator-address")
        return
    if args.coordinator_address != "auto" and None in explicit:
        raise UsageError("--coordinator-address HOST:PORT needs --num-processes and --process-id "
                         "(or 'auto' under SLURM and other launchers jax.distributed detects)")
    if args.process_id is not None and args.num_processes is not None and args.process_id >= args.num_processes:
        raise UsageError(f"--process-id {args.process_id} must be below --num-processes {args.num_processes}")
    import jax

    try:
        if args.coordinator_address == "auto":
            jax.distributed.initialize()
        else:
            jax.distributed.initialize(args.coordinator_address, args.num_processes, args.process_id)
    except (RuntimeError, ValueError) as error:
        raise UsageError(f"--coordinator-address {args.coordinator_address}: {str(error).splitlines()[0]}") from None


def given_options(args: argparse.Namespace) -> dict:
    """The TrainConfig and learner options given on the command line."""
    return {k: v for k, v in vars(args).items() if k not in COMMAND_ARGUMENTS and v is not None}


def flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def run(args: argparse.Namespace) -> int:
    from click_models.logs import ClickLogError
    from simulators.datasets import load_dataset
    from ultr.training import NonFiniteLossError, train, train_config, write_outputs

    from ultr.estimators import ESTIMATORS
    from ultr.learners import Need

    start_distributed(args)
    cls = LEARNERS[args.learner]
    uses_logs = bool(cls.needs & {Need.CLICKS, Need.LOGGING_POLICY})
    if args.logs is None and uses_logs:
        raise UsageError(f"--learner {cls.name} needs --logs")
    if args.logs is not None and not uses_logs:
        raise UsageError(f"--logs: the {cls.name} learner does not use click logs")
    refuse_output_inside_logs(args.out, args.logs)
    try:
        config = train_config(given_options(args), name=flag, strict=True)
    except OptionError as error:
        raise UsageError(str(error)) from None
    extra = {}
    if args.logs is not None and (cls.estimates is not None or config.propensities in ESTIMATORS):
        extra["identifiability"] = check_identifiability("train", args.logs, args.require_identifiable)
    elif args.require_identifiable:
        raise UsageError(f"--require-identifiable: the {cls.name} learner estimates no position bias from "
                         "--logs here")
    try:
        dataset = load_dataset(args.data, normalize=None if args.normalize == "none" else args.normalize)
        result = train(args.logs, dataset, config, init=args.init)
    except NonFiniteLossError as error:  # a runtime failure, not bad input: exit 1, no metrics written
        print(f"ultr train: {error}", file=sys.stderr)
        return 1
    except ValueError as error:
        if isinstance(error, ClickLogError):
            raise
        raise UsageError(str(error)) from None
    import jax

    if jax.process_index() != 0:  # every process holds the same model: process 0 writes it
        return 0
    write_outputs(args.out, result, dataset, config, extra,
                  normalize=None if args.normalize == "none" else args.normalize)
    test = result.test
    print(f"{config.learner}: {result.steps} steps in {result.seconds:.1f}s; test " +
          ", ".join(f"{k} {v:.4f}" for k, v in test.items() if k != "num_queries") +
          f" ({test['num_queries']} queries with a relevant document)")
    for group, metrics in (result.test_groups or {}).items():
        print(f"  {group}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "num_queries") +
              f" ({metrics['num_queries']} queries)")
    if result.propensities is not None:
        print(f"{cls.estimates} (normalised at rank 1): " + " ".join(f"{p:.3f}" for p in result.propensities))
    written = ["metrics.json", *(["propensities.json"] if (args.out / "propensities.json").exists() else []),
               "test.run", "test.qrels", *(["model/"] if (args.out / "model" / "model.json").exists() else [])]
    if result.init:
        print(f"started from {result.init['model']} (restored: {result.init['restored']})")
    print(f"wrote {args.out}/" + ", ".join(written))
    return 0

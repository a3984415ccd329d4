"""What every ``ultr`` command shares: argument types and the user-error exception."""

from __future__ import annotations

import argparse


class UsageError(SystemExit):
    """A bad option or input found before any work: ``ultr <command>: <message>``, exit code 2.

    A ``SystemExit`` like argparse's own usage errors; :func:`ultr.cli.main` prints it.
    """

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _integer(smallest: int, words: str, largest: int = 2**63 - 1):
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a {words} integer, got {value!r}") from None
        if not smallest <= number <= largest:
            raise argparse.ArgumentTypeError(f"must be a {words} integer below 2^63, got {value}")
        return number

    return parse


positive_int = _integer(1, "positive")
non_negative_int = _integer(0, "non-negative")


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value!r}") from None
    if not 0.0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite positive number, got {value}")
    return number


def fraction(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {value!r}") from None
    if not 0.0 <= number < 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {value}")
    return number


def registry_choice(registry):
    """An argparse ``type`` that resolves a name in ``registry`` (aliases and case forgiven)."""

    def parse(value: str) -> str:
        try:
            return registry.canonical(value)
        except KeyError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = registry.concept
    return parse


def choices_text(registry) -> str:
    return ", ".join(registry)


def refuse_output_inside_logs(out, logs, flag: str = "--out", writes_parquet: bool = False) -> None:
    """Parquet output written into the click log it reads would become part of the log for every later
    reader: refuse it (and the log itself as an output). Other files (JSON, PNG) are harmless there."""
    from pathlib import Path

    if out is None or logs is None or hasattr(logs, "filesystem"):  # a log on another filesystem: outputs are local
        return
    logs, target = Path(logs).resolve(), Path(out).resolve()
    parquet = writes_parquet or target.suffix == ".parquet"
    if logs.is_dir() and (target == logs or (parquet and logs in target.parents)):
        raise UsageError(f"{flag} {out}: inside the click log {logs}, where its Parquet files would join the "
                         "log; write the output elsewhere")
    if logs.is_file() and target == logs:
        raise UsageError(f"{flag} {out}: that is the click log itself; write the output elsewhere")


def add_identifiability_argument(parser) -> None:
    parser.add_argument("--require-identifiable", action="store_true",
                        help="stop with an error (exit 2) instead of a warning when the log cannot identify "
                             "position bias (its rank graph is not connected; Hager et al., ICTIR 2025)")


def check_identifiability(command: str, logs, require: bool) -> dict:
    """The rank-graph diagnostic of ``logs``: a warning on stderr (or, with ``require``, a usage error)
    when position bias is not identifiable; returns the JSON to record in the command's output."""
    import sys

    from click_models.identifiability import rank_graph_of_log

    graph = rank_graph_of_log(logs)
    warning = graph.warning()
    if warning is not None:
        if require:
            raise UsageError(f"{warning} (--require-identifiable)")
        print(f"ultr {command}: warning: {warning}; see docs/propensity.md#identifiability "
              "(--require-identifiable makes this an error)", file=sys.stderr)
    return graph.to_json()


def add_engine_arguments(parser, ray_tasks: str) -> None:
    """``--engine``, ``--ray-address`` and ``--ray-workers`` of the data-parallel commands (``ray_tasks``: what one
    Ray task does there, for the help text)."""
    from click_models.engine import ENGINES

    parser.add_argument("--engine", type=registry_choice(ENGINES), default="local",
                        help=f"{' or '.join(ENGINES)}: with ray, {ray_tasks}, with the local engine's results; needs "
                             "the ray extra, pip install -e '.[ray]' (default: local)")
    parser.add_argument("--ray-address", help="with --engine ray: a running Ray cluster, as HOST:6379 or auto from a "
                                              "node of it (ray://HOST:10001 needs pip install 'ray[client]') "
                                              "(default: start a local Ray instance)")
    parser.add_argument("--ray-workers", type=positive_int,
                        help="with --engine ray: tasks at once (default: every CPU of the Ray instance)")


def check_engine_arguments(args) -> None:
    """Refuse Ray flags without ``--engine ray`` (before any work)."""
    if args.engine == "local":
        for flag, value in (("--ray-address", args.ray_address), ("--ray-workers", args.ray_workers)):
            if value is not None:
                raise UsageError(f"{flag}: only the ray engine uses it (give --engine ray)")


def engine_from_args(args):
    """The engine the engine arguments ask for (close it when done), or a :class:`UsageError`."""
    from click_models.engine import RayUnavailableError, make_engine

    check_engine_arguments(args)
    try:
        return make_engine(args.engine, address=args.ray_address, workers=args.ray_workers)
    except (RayUnavailableError, ValueError) as error:
        raise UsageError(str(error)) from None

"""The ``ultr`` command line: one module per command group, all thin over the library.

Exit codes: 0 success; 2 bad input or usage (``ultr <command>: <what>`` on
stderr); 1 a runtime failure (a download that failed); 130 an interrupt.
"""

from __future__ import annotations

import argparse
import sys

from . import baidu, datasets, fit, propensity, rank, run, simulate, train
from .common import UsageError

COMMANDS = (fit, simulate, train, rank, propensity, run, datasets, baidu)


class OneLineParser(argparse.ArgumentParser):
    """argparse, with usage errors on one line: ``ultr <command>: <what>``, exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="ultr", description="Unbiased learning to rank in JAX.")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import pyarrow as pa

    from click_models.logs import ClickLogError
    from click_models.registry import UnknownNameError
    from simulators.letor import LetorFormatError
    from simulators.registry import DownloadError
    from ultr.options import OptionError

    try:
        return args.handler(args)
    except UsageError as error:
        print(f"ultr {args.command}: {error.message}", file=sys.stderr)
        raise
    except (ClickLogError, LetorFormatError, OptionError, UnknownNameError, pa.ArrowException) as error:
        print(f"ultr {args.command}: {error}", file=sys.stderr)
        return 2
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as error:  # a path given in the wrong place
        print(f"ultr {args.command}: {error}", file=sys.stderr)
        return 2
    except (DownloadError, OSError) as error:  # runtime failures: a download, the file system (full, read-only)
        print(f"ultr {args.command}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ultr {args.command}: interrupted", file=sys.stderr)
        return 130


__all__ = ["build_parser", "main"]

"""``ultr baidu convert``: Baidu-ULTR raw partitions (and annotations) into ultr's formats."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from click_models.storage import path_argument

from .common import UsageError, add_engine_arguments, check_engine_arguments, engine_from_args, positive_int


def add_parser(commands) -> None:
    baidu = commands.add_parser("baidu", help="read the Baidu-ULTR real click logs and annotations")
    baidu_commands = baidu.add_subparsers(dest="baidu_command", required=True)
    convert = baidu_commands.add_parser(
        "convert",
        help="convert raw gzip partitions into a click log, lexical features and an annotated dataset",
        description=(
            "Stream Baidu-ULTR partitions (part-*.gz) into ultr's click-log format (OUT/logs), compute corpus "
            "statistics and the 12 lexical features (OUT/features), and with --annotations the annotated "
            "validation/test data. Then: ultr train --logs OUT/logs --data baidu:OUT. One partition per task "
            "of a process pool; a rerun skips finished partitions. See docs/baidu.md."
        ),
    )
    source = convert.add_mutually_exclusive_group(required=True)
    source.add_argument("--raw", type=path_argument, help="directory of part-*.gz partitions (or one file)")
    source.add_argument("--feather", type=path_argument, help="Hager et al.'s preprocessed release: a directory of .feather "
                                                     "click files (or one file), with lexical features and the "
                                                     "768-value query-document embedding")
    convert.add_argument("--out", type=path_argument, required=True, help="output directory")
    convert.add_argument("--annotations", type=path_argument, help="the expert-annotation file (tab-separated, 6 columns; "
                                                          "with --feather: the release's annotation .feather file)")
    convert.add_argument("--workers", type=positive_int, default=None,
                         help="processes (default: the CPU count, at most the number of partitions)")
    convert.add_argument("--skip-bad-lines", action="store_true",
                         help="count, skip and report bad lines instead of stopping at the first")
    convert.add_argument("--block-mb", type=positive_int, default=16,
                         help="decompressed megabytes parsed at a time per worker (memory per worker; default: 16)")
    convert.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_engine_arguments(convert, "a task converts each raw partition (local: --workers processes)")
    convert.set_defaults(handler=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    from simulators.baidu_convert import convert, convert_feather, raw_partitions

    check_engine_arguments(args)
    if args.annotations is not None and not args.annotations.is_file():
        raise UsageError(f"--annotations {args.annotations}: no such file")
    if args.engine != "local" and args.workers is not None:
        raise UsageError("--workers: sizes the local engine's process pool (with --engine ray, --ray-workers)")
    if args.feather is not None:
        for flag, given in (("--skip-bad-lines", args.skip_bad_lines), ("--workers", args.workers is not None),
                            ("--engine", args.engine != "local")):
            if given:
                raise UsageError(f"{flag}: only for --raw partitions")
        summary = convert_feather(args.feather, args.out, annotations=args.annotations)
        print(f"{len(summary['files'])} Feather files, {summary['total']['sessions']:,} queries with clicks; "
              f"lexical features and {summary['embedding']}-value embeddings in {summary['seconds']:.1f}s")
        print(f"wrote {args.out}/; train with ultr train --logs {args.out}/logs --data "
              f"baidu:{args.out}:lexical+embedding --learner naive --out DIR")
        return 0
    parts = raw_partitions(args.raw)
    workers = args.workers or min(os.cpu_count() or 1, len(parts))
    with engine_from_args(args) as engine:
        summary = convert(args.raw, args.out, annotations=args.annotations, workers=workers,
                          skip_bad_lines=args.skip_bad_lines, progress=not args.no_progress,
                          block_bytes=args.block_mb << 20, engine=engine)
    total = summary["total"]
    print(f"{len(parts)} partitions, {total['sessions']:,} sessions read, {total['sessions_kept']:,} kept "
          f"({total['sessions_too_short']:,} with fewer than 5 documents dropped), {total['documents']:,} "
          f"documents ({total['placeholders']:,} placeholders dropped) in {summary['seconds']:.1f}s")
    if total["bad_lines"]:
        print(f"skipped {total['bad_lines']:,} bad lines (and {total['documents_of_bad_queries']:,} documents of "
              "bad query lines), for example:")
        for example in total["bad_line_examples"][:5]:
            print(f"  {example}")
    if summary["annotations"]:
        a = summary["annotations"]
        print(f"annotations: {a['rows']:,} judged documents of {a['queries']:,} queries")
    print(f"wrote {args.out}/ (logs/, features/, corpus.parquet, doc_ids.parquet, baidu.json); train with "
          f"ultr train --logs {args.out}/logs --data baidu:{args.out} --learner naive --out DIR")
    return 0

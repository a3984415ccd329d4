"""``ultr datasets list|download``: the public learning-to-rank datasets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from click_models.storage import path_argument

from .common import UsageError


def add_parser(commands) -> None:
    datasets = commands.add_parser("datasets", help="list and download public learning-to-rank datasets")
    datasets_commands = datasets.add_subparsers(dest="datasets_command", required=True)
    listing = datasets_commands.add_parser("list", help="the registry, with what is downloaded")
    listing.add_argument("--dir", type=path_argument, help="data directory (default $ULTR_DATA_DIR or ~/.cache/ultr/data)")
    listing.set_defaults(handler=run_list)
    download = datasets_commands.add_parser("download", help="fetch, verify and extract a dataset")
    download.add_argument("name")
    download.add_argument("--dir", type=path_argument, help="data directory (default $ULTR_DATA_DIR or ~/.cache/ultr/data)")
    download.add_argument("--url", help="another address for the archive (a mirror or a file:// copy)")
    download.add_argument("--sha256", help="the archive's expected SHA-256 (default: the registry's, where known)")
    download.set_defaults(handler=run_download)


def run_list(args: argparse.Namespace) -> int:
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


def run_download(args: argparse.Namespace) -> int:
    from simulators.registry import (DATASETS, DownloadError, data_dir, download, info, is_downloaded, sha256_of,
                                     verify_files)

    if args.name not in DATASETS:  # a bad argument, not a failed download
        raise UsageError(f"unknown dataset {args.name!r}; known: {', '.join(sorted(DATASETS))}")
    try:
        entry = info(args.name)
        if entry.url is None and args.url is None and is_downloaded(entry.name, args.dir):
            problems = verify_files(entry.name, args.dir)
            if problems:
                print("; ".join(problems), file=sys.stderr)
                return 1
            print(f"{entry.name} is in place and its known checksums match")
            return 0
        path = download(entry.name, args.dir, url=args.url, sha256=args.sha256)
        archive = data_dir(args.dir) / entry.name / entry.archive
        if args.url is not None and archive.exists():
            print(f"archive SHA-256: {sha256_of(archive)} (pass --sha256 to check it next time)")
    except DownloadError as error:
        print(f"ultr datasets download: {error}", file=sys.stderr)
        return 1
    print(f"{entry.name}: ready at {path}")
    return 0

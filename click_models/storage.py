"""Where logs, datasets and outputs live: local paths and pyarrow filesystem URIs (``pyarrow.fs``).

ultr's guarantees on what it writes (a log is complete, with its manifest, or absent; an overwrite keeps the old
log whole until the new one is in place) rest on atomic renames within one directory. A location is therefore a
local path, a ``file://`` URI (resolved by :func:`pyarrow.fs.FileSystem.from_uri` to the local path), or a
mounted remote filesystem given by its mount path. Any other URI (``s3://``, ``gs://``, ``hdfs://``, ...) is
refused with one line that says so, instead of being taken for a local folder named ``s3:``.

>>> local_path("file:///tmp/logs")
PosixPath('/tmp/logs')
>>> local_path("runs/logs")
PosixPath('runs/logs')
>>> local_path("nosuchfs://bucket/logs")
Traceback (most recent call last):
...
click_models.storage.StorageError: nosuchfs://bucket/logs: not a filesystem pyarrow knows (Unrecognized filesystem type in URI: nosuchfs://bucket/logs)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .logs import ClickLogError

#: a URI scheme (two letters at least, so that a Windows drive letter is not one)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")


class StorageError(ClickLogError):
    """A location ultr cannot read or write with its guarantees (exit code 2 on the command line)."""


def is_uri(location) -> bool:
    """Whether ``location`` names a filesystem scheme (``file:``, ``s3://``, ...)."""
    return isinstance(location, str) and bool(_SCHEME.match(location)) and \
        (location.startswith("file:") or "://" in location)


def local_path(location: str | os.PathLike) -> Path:
    """The local path of a path or a ``file://`` URI; a :class:`StorageError` for other filesystems."""
    if not is_uri(location):
        return Path(location)
    import pyarrow as pa
    import pyarrow.fs as pafs

    try:
        filesystem, path = pafs.FileSystem.from_uri(location)
    except (OSError, pa.ArrowException) as error:
        detail = str(error).strip().splitlines()[0]
        scheme = _SCHEME.match(location).group(1).lower()
        known = scheme in ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss", "file", "mock")
        what = f"cannot open this {scheme} filesystem" if known else "not a filesystem pyarrow knows"
        raise StorageError(f"{location}: {what} ({detail})") from None
    if isinstance(filesystem, pafs.LocalFileSystem):
        return Path(path)
    raise StorageError(
        f"{location}: ultr reads and writes local paths and file:// URIs (its complete-or-absent logs rest on "
        f"atomic renames, which a {filesystem.type_name} filesystem lacks); mount it (s3fs, gcsfuse, an HDFS NFS "
        "gateway) and give the mount path")


def path_argument(value: str) -> Path:
    """An argparse ``type`` for paths that may be given as URIs."""
    import argparse

    try:
        return local_path(value)
    except StorageError as error:
        raise argparse.ArgumentTypeError(str(error)) from None

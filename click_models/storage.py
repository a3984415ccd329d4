"""Where logs, datasets and outputs live: local paths and pyarrow filesystem URIs (``pyarrow.fs``).

ultr's guarantees on what it writes (a log is complete, with its manifest, or absent; an overwrite keeps the old
log whole until the new one is in place) rest on atomic renames within one directory. An output is therefore a
local path, a ``file://`` URI (resolved by :func:`pyarrow.fs.FileSystem.from_uri` to the local path), or a
mounted remote filesystem given by its mount path. Any other URI (``s3://``, ``gs://``, ``hdfs://``, ...) is
refused as an output with one line that says so, instead of being taken for a local folder named ``s3:``.

A click log is read from any pyarrow filesystem (:func:`log_location`): a :class:`Location` names a file or
folder there, and the readers check its manifest (every part, its size and SHA-256) as on the local disk.

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

import dataclasses
import os
import posixpath
import re
from pathlib import Path
from typing import Any

from .logs import ClickLogError

#: a URI scheme (two letters at least, so that a Windows drive letter is not one)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")


class StorageError(ClickLogError):
    """A location ultr cannot read or write with its guarantees (exit code 2 on the command line)."""


def is_uri(location) -> bool:
    """Whether ``location`` names a filesystem scheme (``file:``, ``s3://``, ...)."""
    return isinstance(location, str) and bool(_SCHEME.match(location)) and \
        (location.startswith("file:") or "://" in location)


def _scheme(location: str) -> str:
    return _SCHEME.match(location).group(1).lower()


def _filesystem(location: str):
    """``(filesystem, path)`` of a URI by :func:`pyarrow.fs.FileSystem.from_uri`, or one line on why not."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(location)
    except (OSError, pa.ArrowException) as error:
        detail = str(error).strip().splitlines()[0]
        scheme = _scheme(location)
        known = scheme in (*REMOTE_SCHEMES, "file", "mock")
        what = f"cannot open this {scheme} filesystem" if known else "not a filesystem pyarrow knows"
        raise StorageError(f"{location}: {what} ({detail})") from None


def local_path(location: str | os.PathLike) -> Path:
    """The local path of a path or a ``file://`` URI; a :class:`StorageError` for other filesystems."""
    if not is_uri(location):
        return Path(location)
    import pyarrow.fs as pafs

    scheme = _scheme(location)
    if scheme in REMOTE_SCHEMES:  # decided by the scheme: building the filesystem may need the network
        raise StorageError(_no_rename(location, scheme))
    filesystem, path = _filesystem(location)
    if isinstance(filesystem, pafs.LocalFileSystem):
        return Path(path)
    raise StorageError(_no_rename(location, filesystem.type_name))


#: schemes of pyarrow filesystems that are not the local disk
REMOTE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")


def _no_rename(location: str, kind: str) -> str:
    return (f"{location}: ultr writes to local paths and file:// URIs (its complete-or-absent outputs rest on "
            f"atomic renames, which {kind}:// storage lacks); mount it (s3fs, gcsfuse, an HDFS NFS gateway) and give "
            "the mount path")


@dataclasses.dataclass(frozen=True)
class Location:
    """A file or folder on a pyarrow filesystem that is not the local disk (a log read from ``s3://``, ...).

    ``uri`` is what messages show; ``path`` is the filesystem's own path.
    """

    filesystem: Any
    path: str
    uri: str

    def __str__(self) -> str:
        return self.uri

    def __truediv__(self, name: str) -> "Location":
        return Location(self.filesystem, posixpath.join(self.path, name), self.uri.rstrip("/") + "/" + name)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))

    @property
    def parent(self) -> "Location":
        return Location(self.filesystem, posixpath.dirname(self.path.rstrip("/")),
                        self.uri.rstrip("/").rsplit("/", 1)[0])

    def info(self):
        try:
            return self.filesystem.get_file_info(self.path)
        except OSError as error:  # unreachable storage, missing credentials: one line naming the location
            raise OSError(f"{self.uri}: cannot reach it ({str(error).strip().splitlines()[0][:300]})") from None

    def exists(self) -> bool:
        import pyarrow.fs as pafs

        return self.info().type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        import pyarrow.fs as pafs

        return self.info().type == pafs.FileType.Directory

    def relative_to(self, base: "Location") -> str:
        """This file's path below the folder ``base``, with ``/``."""
        return posixpath.relpath(self.path.lstrip("/"), base.path.rstrip("/").lstrip("/"))

    def open(self):
        """A random-access file (for Parquet readers)."""
        return self.filesystem.open_input_file(self.path)

    def read_bytes(self) -> bytes:
        with self.filesystem.open_input_stream(self.path) as stream:
            return stream.read()

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def files(self, suffix: str) -> list["Location"]:
        """The files below this folder whose names end with ``suffix`` (hidden ones left out), sorted."""
        import pyarrow.fs as pafs

        found = []
        base = self.path.rstrip("/")
        for info in self.filesystem.get_file_info(pafs.FileSelector(base, recursive=True)):
            name = posixpath.basename(info.path)
            if info.type == pafs.FileType.File and name.endswith(suffix) and not name.startswith("."):
                relative = posixpath.relpath(info.path.lstrip("/"), base.lstrip("/"))
                found.append(self / relative)
        return sorted(found, key=lambda location: location.path)


def log_location(location) -> "Path | Location":
    """Where a click log is read from: a local path (paths and ``file://`` URIs) or a :class:`Location` on another
    pyarrow filesystem (``s3://bucket/logs``; the URI's query sets the filesystem's options, such as
    ``?endpoint_override=HOST:PORT``)."""
    import pyarrow.fs as pafs

    if isinstance(location, Location):
        return location
    if not is_uri(location):
        return Path(location)
    filesystem, path = _filesystem(location)
    if isinstance(filesystem, pafs.LocalFileSystem):
        return Path(path)
    return Location(filesystem, path, location.split("?", 1)[0])


def log_argument(value: str) -> "Path | Location":
    """An argparse ``type`` for a click log to read: a path or the URI of any pyarrow filesystem."""
    import argparse

    try:
        return log_location(value)
    except StorageError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def path_argument(value: str) -> Path:
    """An argparse ``type`` for paths that may be given as URIs."""
    import argparse

    try:
        return local_path(value)
    except StorageError as error:
        raise argparse.ArgumentTypeError(str(error)) from None

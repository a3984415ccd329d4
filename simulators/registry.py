"""Registry of the public learning-to-rank datasets and their download.

``ultr datasets list`` shows them; ``ultr datasets download NAME`` fetches an
archive from its official address, checks its SHA-256, and extracts it under
the data directory (``$ULTR_DATA_DIR``, default ``~/.cache/ultr/data``).
Datasets whose terms must be accepted by hand (LETOR 4.0, Yahoo! LTR) are not
fetched: the command says where to get them and where to put the files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from click_models.logs import atomic_path
from click_models.registry import Registry


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str
    queries: str
    features: int
    labels: str
    homepage: str
    url: str | None  # direct archive address, None when terms must be accepted by hand
    archive: str | None
    sha256: str | None  # of the archive
    folds: tuple[str, ...]  # fold directories inside the extracted archive, e.g. "MSLR-WEB10K/Fold1"
    manual: str | None = None  # what to do by hand, when the data cannot be fetched automatically
    file_sha256: dict[str, str] = dataclasses.field(default_factory=dict)  # of extracted files
    citation: str = ""


DATASETS: Registry[DatasetInfo] = Registry("dataset")
"""The public datasets that ``ultr datasets`` lists and downloads (``synthetic`` is built in besides)."""

for _info in [
        DatasetInfo(
            "mq2007", "LETOR 4.0 MQ2007", "1,692", 46, "0-2",
            "https://www.microsoft.com/en-us/research/project/letor-learning-rank-information-retrieval/letor-4-0/",
            None, "MQ2007.rar", None, tuple(f"MQ2007/Fold{i}" for i in range(1, 6)),
            manual="LETOR 4.0 asks you to accept its licence agreement on the download page. Download "
                   "MQ2007.rar (supervised ranking) from the homepage, extract it, and place the folder so that "
                   "{dir}/MQ2007/Fold1/train.txt exists.",
            citation="Qin and Liu, Introducing LETOR 4.0 Datasets, arXiv:1306.2597 (2013)",
        ),
        DatasetInfo(
            "mq2008", "LETOR 4.0 MQ2008", "784", 46, "0-2",
            "https://www.microsoft.com/en-us/research/project/letor-learning-rank-information-retrieval/letor-4-0/",
            None, "MQ2008.rar", None, tuple(f"MQ2008/Fold{i}" for i in range(1, 6)),
            manual="LETOR 4.0 asks you to accept its licence agreement on the download page. Download "
                   "MQ2008.rar (supervised ranking) from the homepage, extract it, and place the folder so that "
                   "{dir}/MQ2008/Fold1/train.txt exists.",
            file_sha256={
                "MQ2008/Fold1/train.txt": "906deb7d4db46e908de7d9d8d82a9ce63a12090217a658b2524fcd860dd66bba",
                "MQ2008/Fold1/vali.txt": "971ab752d71d7b019c1c512d7ba4a05b1198bdeeda57a10dd69c62f3ac47dbb9",
                "MQ2008/Fold1/test.txt": "ce33aa98a1cc42847008f2d4280c30a52b6c8491206893cbc97e412ccb97426b",
            },
            citation="Qin and Liu, Introducing LETOR 4.0 Datasets, arXiv:1306.2597 (2013)",
        ),
        DatasetInfo(
            "mslr-web10k", "Microsoft MSLR-WEB10K", "10,000", 136, "0-4",
            "https://www.microsoft.com/en-us/research/project/mslr/",
            "https://api.onedrive.com/v1.0/shares/s!AtsMfWUz5l8nbOIoJ6Ks0bEMp78/root/content",
            "MSLR-WEB10K.zip", "2902142ea33f18c59414f654212de5063033b707d5c3939556124b1120d3a0ba",
            tuple(f"MSLR-WEB10K/Fold{i}" for i in range(1, 6)),
            citation="Qin and Liu, Introducing LETOR 4.0 Datasets, arXiv:1306.2597 (2013)",
        ),
        DatasetInfo(
            "mslr-web30k", "Microsoft MSLR-WEB30K", "31,531", 136, "0-4",
            "https://www.microsoft.com/en-us/research/project/mslr/",
            "https://api.onedrive.com/v1.0/shares/s!AtsMfWUz5l8nbXGPBlwD1rnFdBY/root/content",
            "MSLR-WEB30K.zip", "08cb7977e1d5cbdeb57a9a2537a0923dbca6d46a76db9a6afc69e043c85341ae",
            tuple(f"MSLR-WEB30K/Fold{i}" for i in range(1, 6)),
            citation="Qin and Liu, Introducing LETOR 4.0 Datasets, arXiv:1306.2597 (2013)",
        ),
        DatasetInfo(
            "yahoo-set1", "Yahoo! Learning to Rank Challenge, set 1", "29,921", 700, "0-4",
            "https://webscope.sandbox.yahoo.com/catalog.php?datatype=c",
            None, "ltrc_yahoo.tar.bz2", None, ("yahoo/set1",),
            manual="Yahoo! Webscope C14 is licensed per user: request it on the homepage, accept the data "
                   "agreement, extract set1.train.txt, set1.valid.txt and set1.test.txt and save them as "
                   "{dir}/yahoo/set1/train.txt, vali.txt and test.txt.",
            citation="Chapelle and Chang, Yahoo! Learning to Rank Challenge Overview, JMLR W&CP 14 (2011)",
        ),
        DatasetInfo(
            "yahoo-set2", "Yahoo! Learning to Rank Challenge, set 2", "6,330", 700, "0-4",
            "https://webscope.sandbox.yahoo.com/catalog.php?datatype=c",
            None, "ltrc_yahoo.tar.bz2", None, ("yahoo/set2",),
            manual="Yahoo! Webscope C14 is licensed per user: request it on the homepage, accept the data "
                   "agreement, extract set2.train.txt, set2.valid.txt and set2.test.txt and save them as "
                   "{dir}/yahoo/set2/train.txt, vali.txt and test.txt.",
            citation="Chapelle and Chang, Yahoo! Learning to Rank Challenge Overview, JMLR W&CP 14 (2011)",
        ),
        DatasetInfo(
            "istella-s", "Istella-S LETOR", "33,018", 220, "0-4",
            "http://quickrank.isti.cnr.it/istella-dataset/",
            "http://library.istella.it/dataset/istella-s-letor.tar.gz",
            "istella-s-letor.tar.gz", "41b21116a3650cc043dbe16f02ee39f4467f9405b37fdbcc9a6a05e230a38981",
            ("sample",),
            file_sha256={
                "sample/train.txt": "5cda4187b88b597ca6fa98d6cd3a6d7551ba69ffff700eae63a59fbc8af385b8",
                "sample/test.txt": "2cd1a4f46fa21ea2489073979b5e5913146d1e451f1d6e268bc4e472d39da5d7",
            },
            citation="Dato et al., Fast Ranking with Additive Ensembles of Oblivious and Non-Oblivious "
                     "Regression Trees, ACM TOIS 35(2) (2016)",
        ),
]:
    DATASETS.add(_info.name, _info, summary=_info.title)


class DownloadError(RuntimeError):
    """A dataset could not be fetched or verified."""


def data_dir(directory: str | os.PathLike | None = None) -> Path:
    if directory is not None:
        return Path(directory)
    root = os.environ.get("ULTR_DATA_DIR")
    return Path(root) if root else Path.home() / ".cache" / "ultr" / "data"


def info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise DownloadError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}") from None


def dataset_path(name: str, directory: str | os.PathLike | None = None, fold: int = 1) -> Path:
    """The fold directory of a downloaded dataset; explains how to get it when absent."""
    entry = info(name)
    root = data_dir(directory) / entry.name
    path = root / entry.folds[min(fold, len(entry.folds)) - 1]
    if not path.exists():
        raise DownloadError(f"{entry.name} is not downloaded ({path} does not exist): run "
                            f"'ultr datasets download {entry.name}'")
    return path


def is_downloaded(name: str, directory: str | os.PathLike | None = None) -> bool:
    entry = info(name)
    return (data_dir(directory) / entry.name / entry.folds[0]).exists()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(url: str, target: Path, progress: bool = True) -> None:
    from tqdm import tqdm

    try:
        with atomic_path(target) as tmp, open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, disable=not progress) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise DownloadError(f"could not download {url}: {error}") from error


def _extract(archive: Path, into: Path) -> None:
    name = archive.name.lower()
    if name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(into)
    elif name.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar")):
        with tarfile.open(archive) as tf:
            tf.extractall(into, filter="data")
    elif name.endswith(".rar"):
        tool = shutil.which("bsdtar") or shutil.which("unrar")
        if tool is None:
            raise DownloadError(f"{archive}: extracting .rar needs bsdtar (Debian: libarchive-tools) or unrar")
        args = [tool, "-xf", str(archive), "-C", str(into)] if tool.endswith("bsdtar") else [tool, "x", "-o+", str(archive), str(into)]
        subprocess.run(args, check=True)
    else:
        raise DownloadError(f"{archive}: unknown archive type")


def verify_files(name: str, directory: str | os.PathLike | None = None) -> list[str]:
    """Check the SHA-256 of the extracted files whose checksums are known; returns the problems."""
    entry = info(name)
    root = data_dir(directory) / entry.name
    problems = []
    for relative, expected in entry.file_sha256.items():
        path = root / relative
        if not path.exists():
            problems.append(f"{path}: missing")
        elif sha256_of(path) != expected:
            problems.append(f"{path}: SHA-256 differs from the published file")
    return problems


def download(name: str, directory: str | os.PathLike | None = None, progress: bool = True,
             url: str | None = None, sha256: str | None = None) -> Path:
    """Fetch, verify and extract a dataset; returns its first fold directory.

    ``url`` overrides the registry address (a mirror, or a ``file://`` copy); ``sha256``
    is the archive's expected checksum (default: the registry's, where it has one).
    An archive that fails its checksum or its extraction is moved aside, so a retry
    fetches it again.
    """
    entry = info(name)
    root = data_dir(directory) / entry.name
    if entry.url is None and url is None:
        raise DownloadError(
            f"{entry.title} cannot be downloaded automatically. {entry.manual.format(dir=root)} "
            f"Homepage: {entry.homepage}"
        )
    root.mkdir(parents=True, exist_ok=True)
    archive = root / entry.archive
    if not archive.exists():
        _fetch(url or entry.url, archive, progress)
    expected = sha256 or entry.sha256
    if expected is not None:
        actual = sha256_of(archive)
        if actual != expected.lower():
            bad = archive.with_suffix(archive.suffix + ".corrupt")
            os.replace(archive, bad)
            raise DownloadError(f"{archive}: SHA-256 {actual} differs from the expected {expected} "
                                f"(kept as {bad.name}); download again")
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        try:
            _extract(archive, staging)
        except DownloadError:
            raise
        except Exception as error:  # a broken archive (tar or zip error, a path filter): move it aside
            bad = archive.with_suffix(archive.suffix + ".corrupt")
            os.replace(archive, bad)
            raise DownloadError(f"{archive}: cannot extract it ({error}); moved it to {bad.name}, so the next "
                                "download fetches it again") from None
        for item in staging.iterdir():
            destination = root / item.name
            if destination.exists():
                shutil.rmtree(destination) if destination.is_dir() else destination.unlink()
            os.replace(item, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    problems = verify_files(name, directory)
    if problems:
        raise DownloadError("extracted files do not match: " + "; ".join(problems))
    return dataset_path(name, directory)

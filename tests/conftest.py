import os
import tempfile
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# One persistent compilation cache for the whole run, set before JAX is imported and inherited by the processes
# the tests start (Ray workers, jax.distributed processes, notebook kernels, the CLI): a program compiled once
# (a learner's step on the same shapes, in another module or another process) is loaded, not compiled again.
_OWN_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _OWN_CACHE = tempfile.mkdtemp(prefix="ultr-test-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")


def pytest_sessionfinish(session, exitstatus):
    if _OWN_CACHE is not None:
        import shutil

        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Dataset caches and downloads go to a per-session temporary directory."""
    root = tmp_path_factory.getbasetemp() / "ultr-cache"
    monkeypatch.setenv("ULTR_CACHE_DIR", str(root / "cache"))
    monkeypatch.setenv("ULTR_DATA_DIR", str(root / "data"))


def shared(*parts: str) -> Path:
    """A path under ../shared/data; the test is skipped when the shared data is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


#: resident memory above which the compiled programs are dropped after a test (the suite's goal: under 2 GB)
RELEASE_ABOVE_MIB = 1100


def _resident_mib() -> float:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


_after_last_release = [0.0]


@pytest.fixture(autouse=True)
def release_compiled_code_when_large():
    """A module of many small programs (every click model at every list size) grows by a few MiB per test:
    past :data:`RELEASE_ABOVE_MIB`, and 300 MiB above what the last release left (freed memory is not always
    handed back), drop JAX's compiled functions after the test."""
    yield
    if _resident_mib() > max(RELEASE_ABOVE_MIB, _after_last_release[0] + 300):
        _drop_compiled_code()
        _after_last_release[0] = _resident_mib()


@pytest.fixture(autouse=True, scope="module")
def release_compiled_code():
    """Drop JAX's compiled functions after each test module: one pytest process runs hundreds of
    differently shaped programs, and keeping them all would grow its memory past 2 GB."""
    yield
    _drop_compiled_code()


def _drop_compiled_code() -> None:
    import gc

    import jax

    jax.clear_caches()
    gc.collect()
    _return_freed_memory()


def _return_freed_memory() -> None:
    """glibc keeps freed heap in its arenas: hand it back to the system, so that the next module starts from
    what is live rather than from the last module's peak."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def pytest_runtest_teardown(item):
    """With ULTR_TRACE_MEMORY=1, print each test that raised this process's peak resident memory; with
    ULTR_TRACE_MEMORY=FILE, append those lines to FILE (xdist workers do not show what they print)."""
    target = os.environ.get("ULTR_TRACE_MEMORY")
    if not target:
        return
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # MiB (Linux: KiB)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    last = getattr(pytest_runtest_teardown, "last", (0, 0))
    if (peak, children) != last:
        line = f"[memory] {item.nodeid}: peak {peak} MiB, children {children} MiB, now {_resident_mib():.0f} MiB"
        if target == "1":
            print("\n" + line)
        else:
            with open(target, "a") as handle:
                handle.write(f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')} {line}\n")
        pytest_runtest_teardown.last = (peak, children)

import contextlib
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


#: resident memory of a worker above which the compiled programs are dropped after a test. The goal is the whole
#: run under 2 GB: two workers of at most this much (about 400 MiB of it is the imports, a third of that shared
#: between the workers), plus the processes of one spawning test at a time (see ``one_spawning_test_at_a_time``).
RELEASE_ABOVE_MIB = 800
#: growth above what the last release left that triggers the next one (freed memory is not always handed back)
RELEASE_STEP_MIB = 250


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
    past :data:`RELEASE_ABOVE_MIB`, and :data:`RELEASE_STEP_MIB` above what the last release left (freed memory is not always
    handed back), drop JAX's compiled functions after the test."""
    yield
    if _resident_mib() > max(RELEASE_ABOVE_MIB, _after_last_release[0] + RELEASE_STEP_MIB):
        _release_compiled_code()


def _release_compiled_code() -> None:
    import gc

    import jax

    jax.clear_caches()
    gc.collect()
    _return_freed_memory()
    _after_last_release[0] = _resident_mib()


_spawning_lock = {"depth": 0, "handle": None}


@contextlib.contextmanager
def spawning_lock(root: Path):
    """Exclusive across the xdist workers of a run (a lock file in their common temporary root), re-entrant within
    one: held by every test marked ``spawns``, and by a module fixture whose processes outlive one test (Ray)."""
    import fcntl

    if _spawning_lock["depth"] == 0:
        root = root.parent if root.name.startswith("popen-gw") else root
        handle = open(root / "spawning-tests.lock", "w")
        fcntl.flock(handle, fcntl.LOCK_EX)
        _spawning_lock["handle"] = handle
    _spawning_lock["depth"] += 1
    try:
        yield
    finally:
        _spawning_lock["depth"] -= 1
        if _spawning_lock["depth"] == 0:
            _spawning_lock["handle"].close()  # closing releases the lock
            _spawning_lock["handle"] = None


@pytest.fixture(autouse=True)
def one_spawning_test_at_a_time(request, tmp_path_factory):
    """A test marked ``spawns`` starts processes that import JAX (a Ray instance, jax.distributed, the CLI, a
    notebook kernel: 300 MiB to 1 GB together). Only one such test runs at a time across the xdist workers, and
    its worker first drops its own compiled programs."""
    if request.node.get_closest_marker("spawns") is None:
        yield
        return
    if _resident_mib() > RELEASE_ABOVE_MIB / 2:
        _release_compiled_code()
    with spawning_lock(tmp_path_factory.getbasetemp()):
        yield


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
    """With ULTR_TRACE_MEMORY=1, print each test that raised this process's peak resident memory."""
    import os

    if not os.environ.get("ULTR_TRACE_MEMORY"):
        return
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # MiB (Linux: KiB)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    last = getattr(pytest_runtest_teardown, "last", (0, 0))
    if (peak, children) != last:
        print(f"\n[memory] {item.nodeid}: peak {peak} MiB, children {children} MiB")
        pytest_runtest_teardown.last = (peak, children)

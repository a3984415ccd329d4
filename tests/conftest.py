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


@pytest.fixture(autouse=True, scope="module")
def release_compiled_code():
    """Drop JAX's compiled functions after each test module: one pytest process runs hundreds of
    differently shaped programs, and keeping them all would grow its memory past 2 GB."""
    yield
    import gc

    import jax

    jax.clear_caches()
    gc.collect()


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

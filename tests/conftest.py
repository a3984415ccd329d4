from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


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

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

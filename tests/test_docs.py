"""The code in docs/contributing.md and docs/api.md runs: each example does what the page says."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _blocks(page):
    return re.findall(r"```python\n(.*?)```", (ROOT / "docs" / page).read_text(), flags=re.S)


def _execute(page: str, count: int, namespace: dict) -> None:
    """Run the ``count`` Python blocks of ``docs/page`` in order, in ``namespace``."""
    blocks = _blocks(page)
    assert len(blocks) == count
    for block in blocks:
        exec(compile(block, page, "exec"), namespace)


@pytest.mark.slow
def test_contributing_examples_register_working_entries(tmp_path, monkeypatch):
    from click_models import CLICK_MODELS
    from ultr.cli import main
    from ultr.estimators import ESTIMATORS
    from ultr.learners import LEARNERS

    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    try:
        _execute("contributing.md", 4, namespace)
        assert {"steep-pbm" in CLICK_MODELS, "plain-ctr" in ESTIMATORS, "capped-ips" in LEARNERS} == {True}
        logs, data = tmp_path / "runs" / "api-logs", "synthetic:queries=50,docs=10,features=8"
        assert main(["propensity", "--logs", str(logs), "--estimator", "plain-ctr", "--out", "p.json",
                     "--bootstrap", "0"]) == 0
        assert json.loads(Path("p.json").read_text())["examination"][0] == 1.0
        assert main(["train", "--logs", str(logs), "--data", data, "--learner", "capped-ips", "--propensities",
                     "plain-ctr", "--max-weight", "5", "--ranker", "linear", "--max-steps", "20", "--eval-every",
                     "10", "--out", "capped"]) == 0
        assert json.loads(Path("capped/metrics.json").read_text())["propensity_source"]["source"] == "plain-ctr"
        assert main(["simulate", "--data", data, "--click-model", "steep-pbm", "--sessions", "2000",
                     "--out", "steep"]) == 0
    finally:
        for registry, name in ((CLICK_MODELS, "steep-pbm"), (ESTIMATORS, "plain-ctr"), (LEARNERS, "capped-ips")):
            if name in registry:
                registry.remove(name)


@pytest.mark.parametrize("page", ["learners.md", "propensity.md", "experiments.md", "index.md"])
def test_docs_link_the_generated_reference(page):
    assert "reference.md" in (ROOT / "docs" / page).read_text() or page == "propensity.md"


@pytest.mark.slow
def test_api_page_examples_run_and_print_what_they_say(capsys):
    """docs/api.md: simulate, fit, estimate, train and load a saved ranker, each block as written."""
    import shutil

    namespace: dict = {}
    try:
        _execute("api.md", 6, namespace)
        printed = capsys.readouterr().out.splitlines()
        assert printed[0].startswith("20000 [")
        assert printed[-1] == "ips 8 True"
        assert (namespace["work"] / "ips" / "model" / "model.json").exists()
    finally:
        if "work" in namespace:
            shutil.rmtree(namespace["work"], ignore_errors=True)


def test_every_public_class_and_function_has_a_docstring():
    import inspect

    import click_models
    import simulators
    import ultr

    missing = []
    for package in (click_models, simulators, ultr):
        for name in package.__all__:
            obj = getattr(package, name)
            if inspect.isclass(obj) and not obj.__dict__.get("__doc__") or inspect.isfunction(obj) and not obj.__doc__:
                missing.append(f"{package.__name__}.{name}")
    assert not missing, f"public names without a docstring: {missing}"

"""The teaching notebooks: their structure, from the committed rendered copies, and a full run of each, in which
every exercise's check must accept the solution and reject a wrong answer."""

import importlib.util
import json
import re
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parents[1] / "docs" / "notebooks"
NOTEBOOKS = sorted(HERE.glob("[0-9]*.ipynb"))
EXPECTED = ["01_position_bias_and_click_models", "02_from_clicks_to_rankers", "03_estimating_propensities",
            "04_trust_bias_and_click_noise", "05_real_logs", "06_two_stage_ranking_from_clicks"]
#: a lab has 90 minutes; a notebook must run in 90 seconds on a laptop CPU
MAX_SECONDS = 90


def _read(path):
    return json.loads(path.read_text())


def _source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def _exercises(cells):
    """(number, [question, answer, solution, check]) for each exercise heading."""
    found = []
    for i, cell in enumerate(cells):
        match = re.match(r"### Exercise (\d+):", _source(cell)) if cell["cell_type"] == "markdown" else None
        if match:
            found.append((int(match.group(1)), cells[i:i + 4]))
    return found


def test_the_six_lessons_are_there():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem[:2] for p in NOTEBOOKS])
def test_rendered_notebook_is_a_lesson(path):
    notebook = _read(path)
    cells = notebook["cells"]
    first, last = _source(cells[0]), _source(cells[-1])
    assert first.startswith("# ") and "## Learning objectives" in first
    assert len(re.findall(r"^- ", first, re.M)) >= 3, "at least three learning objectives"
    assert last.startswith("## Summary") and len(re.findall(r"^- ", last, re.M)) >= 3
    markdown = "\n".join(_source(c) for c in cells if c["cell_type"] == "markdown")
    assert markdown.count("$$") >= 4, "the model's or estimator's equations, displayed"
    code = [c for c in cells if c["cell_type"] == "code"]
    assert all(c.get("execution_count") for c in code), "the committed copy is rendered: every cell was run"
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3, "at least three plots"
    exercises = _exercises(cells)
    assert len(exercises) >= 2 and [n for n, _ in exercises] == list(range(1, len(exercises) + 1))
    for number, (question, answer, solution, check) in exercises:
        assert _tags(answer) == ["exercise"] and f"answer_{number} = None" in _source(answer)
        assert _tags(solution) == ["solution"] and solution["metadata"]["jupyter"]["source_hidden"]
        assert f"if answer_{number} is None:" in _source(solution)
        assert _tags(check) == ["check"] and f"assert answer_{number} is not None" in _source(check)
        assert "assert" in _source(check).split("\n", 1)[1], "a check asserts the answer, not only its presence"
    assert 0 < notebook["metadata"]["ultr"]["seconds"] < MAX_SECONDS


def test_index_lists_every_notebook_with_objectives_and_time():
    spec = importlib.util.spec_from_file_location("make_notebooks", HERE / "make_notebooks.py")
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    assert [lesson[0] for lesson in maker.LESSONS] == EXPECTED
    index = (HERE.parent / "index.md").read_text()
    assert maker.index_table() in index, "docs/index.md is stale: run python docs/notebooks/make_notebooks.py"
    for path in NOTEBOOKS:
        meta = _read(path)["metadata"]["ultr"]
        assert f"(notebooks/{path.name})" in index and all(o in index for o in meta["objectives"])


# Appended after each check: the check must raise AssertionError for a wrong answer, then the answer is restored.
_WRONG_ANSWER = """
import numpy as _np
def _wrong(x):
    if isinstance(x, list):
        return x[:-1]
    if isinstance(x, tuple):
        return tuple(_np.asarray(v, float) + 0.5 for v in x)
    return _np.asarray(x, float) + 0.5
_kept, answer_{n} = answer_{n}, _wrong(answer_{n})
try:
{check}
except AssertionError:
    pass
else:
    raise RuntimeError("the check of exercise {n} accepted a wrong answer")
finally:
    answer_{n} = _kept
"""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
@pytest.mark.slow
def test_notebook_runs_and_its_checks_can_fail(path, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(path, as_version=4)
    cells = []
    for cell in notebook.cells:
        cells.append(cell)
        if "check" in cell.metadata.get("tags", []):
            number = re.search(r"assert answer_(\d+) is not None", cell.source).group(1)
            indented = "\n".join("    " + line for line in cell.source.splitlines())
            cells.append(nbformat.v4.new_code_cell(_WRONG_ANSWER.format(n=number, check=indented)))
    notebook.cells = cells
    started = time.perf_counter()
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    elapsed = time.perf_counter() - started
    assert elapsed < MAX_SECONDS, f"{path.name} ran {elapsed:.0f} s"
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3

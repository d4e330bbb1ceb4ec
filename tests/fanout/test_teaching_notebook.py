"""The instructor's notebook ``notebooks/teaching.ipynb`` passes nbval.

The notebook leaves its local server running, as a user's session would;
``run_nbval`` stops it.
"""

from __future__ import annotations

from tests.support.notebooks import NOTEBOOKS, assert_nbval_passed, run_nbval


def test_teaching_notebook_passes_nbval(tmp_path):
    assert_nbval_passed(run_nbval(NOTEBOOKS / "teaching.ipynb", tmp_path))

"""The result table on its own: subsets, merging, bounded display, DataFrame."""

from __future__ import annotations

import sys

import pytest

from cocalc_magics.fanout import FanoutResult, Operation, ProjectRun
from cocalc_magics.fanout.grid import DisplayGrid, choose_view

EXEC = Operation("exec", "python3 check.py", {"timeout": 60.0})


def make_result() -> FanoutResult:
    rows = [
        ProjectRun(
            "00000000-0000-4000-8000-000000000001", "Lab - Ada", "done", 0, "42\n"
        ),
        ProjectRun(
            "00000000-0000-4000-8000-000000000002",
            "Lab - Ben",
            "failed",
            1,
            "",
            "ZeroDivisionError\n",
            error="exit code 1",
        ),
        ProjectRun(
            "00000000-0000-4000-8000-000000000003",
            "Lab - Cy",
            "cancelled",
            error="cancelled before it started",
        ),
    ]
    return FanoutResult(rows, EXEC, wall_s=1.25)


def test_failed_includes_cancelled_by_default():
    result = make_result()

    assert [row.title for row in result.failed()] == ["Lab - Ben", "Lab - Cy"]
    assert [row.title for row in result.failed(include_cancelled=False)] == [
        "Lab - Ben"
    ]
    assert [row.title for row in result.succeeded()] == ["Lab - Ada"]
    assert not result.ok


def test_subsets_copy_rows():
    result = make_result()

    subset = result.failed()
    subset.rows[0].status = "done"

    assert result.rows[1].status == "failed"


def test_merged_replaces_rows_by_project():
    result = make_result()
    retried = FanoutResult(
        [ProjectRun(result.rows[1].project_id, "Lab - Ben", "done", 0, "42\n")], EXEC
    )

    merged = result.merged(retried)

    assert [row.status for row in merged] == ["done", "done", "cancelled"]
    assert len(result) == 3
    assert result.rows[1].status == "failed"


def test_summary_counts_statuses():
    assert make_result().summary() == (
        "exec 'python3 check.py': 1 done, 1 failed, 1 cancelled of 3 projects in 1.2 s"
    )


def test_repr_bounds_long_output():
    result = make_result()
    result.rows[0].stdout = "x" * 100_000 + "\n"

    text = repr(result)
    markup = result._repr_html_()

    assert max(len(line) for line in text.splitlines()) < 200
    assert len(markup) < 5_000
    assert len(result.rows[0].stdout) == 100_001


def test_note_prefers_error_then_last_output_line():
    ada, ben, cy = make_result().rows

    assert ada.note() == "42"
    assert ben.note() == "exit code 1"
    assert cy.note() == "cancelled before it started"


def test_to_dataframe_or_clear_import_error():
    result = make_result()
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install pandas"):
            result.to_dataframe()
        return

    frame = result.to_dataframe()
    assert list(frame["status"]) == ["done", "failed", "cancelled"]
    assert {
        "project_id",
        "title",
        "exit_code",
        "stdout",
        "stderr",
        "duration_s",
        "error",
    } <= set(frame.columns)


def test_rows_as_dicts_hide_internal_fields():
    row = make_result().rows[0].as_dict()

    assert row["project_id"].endswith("0001")
    assert "pid" not in row


def test_widget_view_falls_back_without_ipywidgets(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)

    view = choose_view("widget", EXEC)

    assert isinstance(view, DisplayGrid)

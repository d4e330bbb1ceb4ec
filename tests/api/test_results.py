"""Result objects: parsing of replies, readable repr, escaped HTML, output shapes."""

from __future__ import annotations

import copy

import pytest

from cocalc_magics.api import (
    AsyncJob,
    ExecResult,
    JupyterResult,
    ProjectState,
    ProjectStatus,
    normalize_outputs,
)
from cocalc_magics.api.hub_results import to_number

PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"
    "AAAABJRU5ErkJggg=="
)
NOTICE = "Output truncated since it exceeded the cell output limit of 500000 characters"
ITEMS = [
    {"name": "stdout", "text": "par"},
    {"name": "stdout", "text": "tial\n"},
    {"name": "stderr", "text": "warn\n"},
    {"data": {"text/plain": "42"}},
    {
        "data": {"image/png": PNG, "text/plain": "<Figure size 640x480 with 1 Axes>"},
        "metadata": {"image/png": {"width": 640}},
    },
    {
        "data": {
            "text/html": "<table><tr><td>1</td></tr></table>",
            "text/plain": "   a\n0  1",
        }
    },
    {"foo": 1},
    {
        "ename": "ZeroDivisionError",
        "evalue": "division by zero",
        "traceback": ["\u001b[0;31mZeroDivisionError\u001b[0m: division by zero"],
    },
]


def with_output_types(items):
    typed = copy.deepcopy(items)
    for item in typed:
        if "name" in item:
            item["output_type"] = "stream"
        elif "data" in item:
            item["output_type"] = "execute_result"
            item["execution_count"] = 3
        elif "ename" in item:
            item["output_type"] = "error"
    return typed


def test_jupyter_items_without_output_type():
    outputs = normalize_outputs(ITEMS)
    assert [o["output_type"] for o in outputs] == [
        "stream",
        "stream",
        "display_data",
        "display_data",
        "display_data",
        "display_data",
        "error",
    ]
    assert outputs[0] == {
        "output_type": "stream",
        "name": "stdout",
        "text": "partial\n",
    }
    assert outputs[1]["text"] == "warn\n"
    assert outputs[2]["data"] == {"text/plain": "42"}
    assert outputs[3]["data"]["image/png"] == PNG
    assert outputs[3]["metadata"] == {"image/png": {"width": 640}}
    assert outputs[4]["data"]["text/plain"] == "   a\n0  1"
    assert outputs[5]["data"] == {"text/plain": '{"foo": 1}'}
    assert outputs[6]["ename"] == "ZeroDivisionError"


def test_jupyter_items_with_output_type_match():
    assert normalize_outputs(with_output_types(ITEMS)) == normalize_outputs(ITEMS)


def test_jupyter_result_properties():
    result = JupyterResult(
        items=ITEMS, kernel="python3", project_id=None, duration_s=0.5
    )
    assert result.stdout == "partial\n"
    assert result.stderr == "warn\n"
    assert result.error["evalue"] == "division by zero"
    assert "ZeroDivisionError: division by zero" in repr(result)
    assert result.items is ITEMS


def test_truncation_notices_collapse():
    notice = {
        "name": "stdout",
        "output_type": "stream",
        "text": [NOTICE],
    }
    items = [
        {"name": "stdout", "text": "start"},
        notice,
        notice,
        notice,
        {"ename": "E", "evalue": "", "traceback": []},
    ]
    outputs = normalize_outputs(items)
    assert outputs[0]["text"] == f"start\n{NOTICE}\n"
    assert outputs[1]["output_type"] == "error"
    assert len(outputs) == 2


def test_stream_text_as_list_and_wait_marker():
    outputs = normalize_outputs(
        [{"wait": False}, {"name": "stderr", "text": ["a", "b\n"]}, "odd"]
    )
    assert outputs[0] == {"output_type": "stream", "name": "stderr", "text": "ab\n"}
    assert outputs[1]["data"]["text/plain"] == '"odd"'


def test_exec_result_repr_shortens_long_output():
    result = ExecResult(
        stdout="x" * 10_000,
        stderr="",
        exit_code=0,
        command="cat big.log",
        project_id=None,
        duration_s=0.1234,
    )
    text = repr(result)
    assert len(text) < 300
    assert "(10000 chars)" in text
    assert text.startswith("ExecResult(command='cat big.log', exit_code=0")


def test_exec_result_html_is_escaped_and_capped():
    result = ExecResult(
        stdout="<script>alert(1)</script>\n" + "y" * 50_000,
        stderr="a & b",
        exit_code=1,
        command="echo '<b>'",
        project_id=None,
        duration_s=0.1,
    )
    page = result._repr_html_()
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "a &amp; b" in page
    assert "echo &#x27;&lt;b&gt;&#x27;" in page
    assert len(page) < 15_000
    assert "more characters" in page


def test_async_job_exit_code_hidden_while_running():
    running = AsyncJob.from_reply(
        {"type": "async", "job_id": "j", "status": "running", "exit_code": 0},
        project_id=None,
    )
    done = AsyncJob.from_reply(
        {
            "type": "async",
            "job_id": "j",
            "status": "error",
            "exit_code": 1,
            "stderr": "killed command 'x'",
        },
        project_id=None,
    )
    assert running.exit_code is None
    assert running.running
    assert done.exit_code == 1
    assert not done.running
    assert "job_id='j'" in repr(done)
    assert "killed command" in done._repr_html_()


def test_project_state_and_status_parsing():
    state = ProjectState.from_reply(
        {"state": "running", "ip": "10.2.3.4"}, project_id="p"
    )
    assert state.running
    assert state.raw["ip"] == "10.2.3.4"
    status = ProjectStatus.from_reply({}, project_id="p")
    assert status.memory_rss_mib is None
    assert status.raw == {}


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1000", 1000), ("1.5", 1.5), ("x", "x"), (3, 3), (None, None), ("1e3", 1000)],
)
def test_to_number(value, expected):
    assert to_number(value) == expected

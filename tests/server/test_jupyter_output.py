"""Limits, output items and directory statements of the stateless Jupyter API."""

from __future__ import annotations

import ast
import subprocess

import pytest

from cocalc_magics.server.errors import MethodError
from cocalc_magics.server.jupyter_output import (
    Limits,
    change_directory_code,
    check_total_time,
    clean_content,
    collect_items,
    json_length,
    resolve_limits,
)

NOW_MS = 1_767_000_000_000.0

NO_CAPS = Limits(0, 0, 0, None, None, 0)


def cell_notice(limit: int) -> dict:
    return {
        "name": "stdout",
        "output_type": "stream",
        "text": [
            (
                f"Output truncated since it exceeded the cell output limit of {limit} "
                "characters"
            )
        ],
    }


def global_notice(limit: int) -> dict:
    return {
        "name": "stdout",
        "output_type": "stream",
        "text": [
            (
                f"Output truncated since it exceeded the global output limit of "
                f"{limit} characters"
            )
        ],
    }


def stream(text: str) -> tuple[str, dict]:
    return ("stream", {"name": "stdout", "text": text})


# Limits


def test_limits_without_limits_object():
    limits = resolve_limits(None, NOW_MS)
    assert limits.timeout_ms_per_cell == 30000
    assert limits.max_output_per_cell == 1000000
    assert limits.max_output == 5000000
    assert limits.timeout_ms == 30000
    assert limits.start_time == NOW_MS
    assert limits.total_output == 0


def test_limits_partial_object_fills_other_table():
    limits = resolve_limits({"max_output_per_cell": 200000}, NOW_MS)
    assert limits.timeout_ms_per_cell == 60000
    assert limits.max_output_per_cell == 200000
    assert limits.max_output == 4000000
    assert limits.timeout_ms is None
    assert limits.start_time is None
    assert limits.total_output == 0


def test_limits_empty_object_uses_sent_table():
    limits = resolve_limits({}, NOW_MS)
    assert limits.timeout_ms_per_cell == 60000
    assert limits.max_output_per_cell == 500000
    assert limits.max_output == 4000000


def test_limits_zero_means_no_limit():
    limits = resolve_limits({"timeout_ms_per_cell": 0, "max_output": 0}, NOW_MS)
    assert limits.timeout_ms_per_cell == 0
    assert limits.max_output == 0


def test_limits_total_output_is_starting_count():
    limits = resolve_limits({"total_output": 123}, NOW_MS)
    assert limits.total_output == 123


@pytest.mark.parametrize(
    "limits, fragment",
    [
        ({"timeout_ms_per_cell": "10"}, "limits.timeout_ms_per_cell must be a number"),
        ({"max_output": True}, "limits.max_output must be a number"),
        ({"max_output_per_cell": -5}, "limits.max_output_per_cell must be 0 or more"),
        ([1, 2], "limits must be an object"),
    ],
)
def test_limits_invalid_values_raise(limits, fragment):
    with pytest.raises(MethodError) as raised:
        resolve_limits(limits, NOW_MS)
    assert raised.value.text.startswith("Error: ")
    assert fragment in raised.value.text


def test_total_time_exceeded_message():
    limits = resolve_limits({"timeout_ms": 2500, "start_time": NOW_MS - 3000}, NOW_MS)
    with pytest.raises(MethodError) as raised:
        check_total_time(limits, NOW_MS)
    # JavaScript's Math.round(2.5) is 3, where Python's round(2.5) is 2.
    assert raised.value.text == "Error: Total time limit (=3 seconds) exceeded"


def test_total_time_needs_both_keys():
    check_total_time(resolve_limits({"timeout_ms": 1}, NOW_MS), NOW_MS + 10_000)
    check_total_time(resolve_limits({"start_time": 0}, NOW_MS), NOW_MS)


def test_total_time_default_never_triggers():
    check_total_time(resolve_limits(None, NOW_MS), NOW_MS + 29_999)


def test_total_time_within_budget_passes():
    limits = resolve_limits({"timeout_ms": 5000, "start_time": NOW_MS - 4999}, NOW_MS)
    check_total_time(limits, NOW_MS)


# Output items


def test_clean_content_removes_execution_fields():
    content = {
        "data": {"text/plain": "5"},
        "metadata": {},
        "execution_count": 3,
        "transient": {},
    }
    assert clean_content(content) == {"data": {"text/plain": "5"}}


@pytest.mark.parametrize(
    "content",
    [
        {"execution_state": "busy"},
        {"code": "1 + 1", "execution_count": 1},
        {"status": "ok", "execution_count": 1, "user_expressions": {}, "payload": []},
        {"comm_id": "abc", "data": {"state": {}}, "target_name": "x"},
        {"source": "page", "metadata": {}},
    ],
)
def test_clean_content_skips_empty_and_comm(content):
    assert clean_content(content) is None


def test_collect_items_keeps_streams_separate():
    items = collect_items([stream("par"), stream("tial\n")], NO_CAPS)
    assert items == [
        {"name": "stdout", "text": "par"},
        {"name": "stdout", "text": "tial\n"},
    ]


def test_collect_items_clear_output_drops_earlier():
    messages = [stream("a\n"), ("clear_output", {"wait": False}), stream("b\n")]
    assert collect_items(messages, NO_CAPS) == [
        {"wait": False},
        {"name": "stdout", "text": "b\n"},
    ]


def test_collect_items_cell_cap_replaces_later_items():
    item_size = json_length({"name": "stdout", "text": "x" * 50})
    limits = Limits(0, 2 * item_size, 0, None, None, 0)
    error = ("error", {"ename": "E", "evalue": "", "traceback": ["t"]})
    messages = [stream("x" * 50), stream("x" * 50), stream("x" * 50), error]
    messages.append(stream("y"))

    items = collect_items(messages, limits)

    assert items[0] == {"name": "stdout", "text": "x" * 50}
    assert items[1] == {"name": "stdout", "text": "x" * 50}
    assert items[2] == cell_notice(2 * item_size)
    assert items[3] == {"ename": "E", "evalue": "", "traceback": ["t"]}
    assert items[4] == cell_notice(2 * item_size)
    assert len(items) == 5


def test_collect_items_global_cap_counts_from_total_output():
    limits = Limits(0, 0, 100, None, None, 90)
    items = collect_items([stream("x" * 5), stream("x" * 50)], limits)
    assert items == [global_notice(100), global_notice(100)]


def test_collect_items_cell_cap_wins_over_global():
    limits = Limits(0, 10, 10, None, None, 0)
    items = collect_items([stream("x" * 50)], limits)
    assert items == [cell_notice(10)]


def test_json_length_counts_utf16_units():
    # JSON.stringify({text: "é🚀"}) has 13 code points but 14 JavaScript
    # characters, because the rocket lies outside the Basic Multilingual Plane.
    assert json_length({"text": "é🚀"}) == 14
    assert json_length({"a": [1, 2]}) == len('{"a":[1,2]}')


# Change-directory statements


@pytest.mark.parametrize(
    "language, expected",
    [
        ("python", "import os; os.chdir('/h/a b')"),
        ("Python", "import os; os.chdir('/h/a b')"),
        ("sagemath", "import os; os.chdir('/h/a b')"),
        ("R", 'setwd("/h/a b")'),
        ("julia", 'cd("/h/a b")'),
        ("octave", "cd('/h/a b')"),
        ("matlab", "cd('/h/a b')"),
        ("javascript", 'process.chdir("/h/a b")'),
        ("bash", "cd '/h/a b'"),
        ("prolog", "working_directory(_, '/h/a b')."),
        ("C++17", '#include <unistd.h>\nchdir("/h/a b")\n'),
        ("sparql", ""),
    ],
)
def test_change_directory_code_by_language(language, expected):
    assert change_directory_code(language, "/h/a b") == expected


def test_change_directory_code_escapes_quotes():
    path = '/h/it\'s "quoted" $HOME\\x'
    python = change_directory_code("python", path)
    prefix = "import os; os.chdir("
    assert python.startswith(prefix)
    assert ast.literal_eval(python[len(prefix) : -1]) == path
    assert (
        change_directory_code("r", path) == 'setwd("/h/it\'s \\"quoted\\" $HOME\\\\x")'
    )
    assert change_directory_code("octave", path) == "cd('/h/it''s \"quoted\" $HOME\\x')"


def test_change_directory_code_bash_runs(tmp_path):
    target = tmp_path / 'it\'s a "dir" $HOME `x`'
    target.mkdir()
    code = change_directory_code("bash", str(target))
    result = subprocess.run(
        ["bash", "-c", f"{code} && pwd"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == str(target)


def test_change_directory_code_unknown_language():
    with pytest.raises(ValueError) as raised:
        change_directory_code("gap", "/h")
    assert str(raised.value).startswith("Error: unable to change directory:")
    assert "'gap'" in str(raised.value)

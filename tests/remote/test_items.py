"""Classifying and merging the output items of system.jupyterExecute."""

from __future__ import annotations

import pytest
from tests.remote.remote_samples import MIXED_ITEMS, with_output_type

from cocalc_magics.remote import normalize_items
from cocalc_magics.remote.items import classify_item

NOTICE = "Output truncated since it exceeded the cell output limit of 500000 characters"


def summarize(items):
    normalized = normalize_items(items)
    return [
        (
            output.kind,
            output.name,
            output.text,
            output.data,
            output.ename,
            output.sources,
        )
        for output in normalized.outputs
    ]


def test_mixed_items_keep_order_and_kinds():
    outputs = normalize_items(MIXED_ITEMS).outputs
    kinds = [output.kind for output in outputs]
    assert kinds == [
        "stream",
        "stream",
        "display",
        "display",
        "display",
        "unknown",
        "error",
    ]


def test_adjacent_stdout_chunks_merge():
    outputs = normalize_items(MIXED_ITEMS).outputs
    assert outputs[0].text == "partial\n"
    assert outputs[0].sources == [0, 1]
    assert outputs[1].name == "stderr"
    assert outputs[1].text == "warn\n"


def test_streams_separated_by_other_stream_stay_apart():
    items = [
        {"name": "stdout", "text": "a"},
        {"name": "stderr", "text": "b"},
        {"name": "stdout", "text": "c"},
    ]
    outputs = normalize_items(items).outputs
    assert [(output.name, output.text) for output in outputs] == [
        ("stdout", "a"),
        ("stderr", "b"),
        ("stdout", "c"),
    ]


def test_output_type_keys_change_nothing():
    assert summarize(with_output_type(MIXED_ITEMS)) == summarize(MIXED_ITEMS)


def test_truncation_notices_collapse_to_one():
    notice = {"name": "stdout", "output_type": "stream", "text": [NOTICE]}
    error = {"ename": "ValueError", "evalue": "late", "traceback": []}
    items = [
        {"name": "stdout", "text": "start\n"},
        notice,
        notice,
        error,
        notice,
        notice,
    ]
    outputs = normalize_items(items).outputs
    notices = [output for output in outputs if output.kind == "notice"]
    assert len(notices) == 1
    assert notices[0].repeat == 4
    assert notices[0].text == NOTICE
    assert [output.kind for output in outputs] == ["stream", "notice", "error"]


def test_stream_text_as_line_list_is_joined():
    item = {"output_type": "stream", "name": "stdout", "text": ["a\n", "b\n"]}
    output = classify_item(0, item)
    assert output.kind == "stream"
    assert output.text == "a\nb\n"


def test_display_text_lists_joined_but_json_kept():
    item = {
        "data": {
            "text/plain": ["line 1\n", "line 2"],
            "application/json": ["x", "y"],
            "application/vnd.custom+json": ["z"],
        }
    }
    output = classify_item(0, item)
    assert output.data["text/plain"] == "line 1\nline 2"
    assert output.data["application/json"] == ["x", "y"]
    assert output.data["application/vnd.custom+json"] == ["z"]


def test_clear_marker_drops_earlier_outputs():
    items = [
        {"name": "stdout", "text": "old\n"},
        {"data": {"text/plain": "old display"}},
        {"wait": False},
        {"name": "stdout", "text": "new\n"},
    ]
    normalized = normalize_items(items)
    assert [output.text for output in normalized.outputs] == ["new\n"]
    assert normalized.cleared == 2


def test_clear_marker_alone_gives_no_output():
    normalized = normalize_items([{"wait": True}])
    assert normalized.outputs == []


def test_display_updates_keep_first_position():
    items = [
        {"data": {"text/plain": "0%"}, "transient": {"display_id": "bar"}},
        {"name": "stdout", "text": "between\n"},
        {"data": {"text/plain": "100%"}, "transient": {"display_id": "bar"}},
    ]
    outputs = normalize_items(items).outputs
    assert [output.kind for output in outputs] == ["display", "stream"]
    assert outputs[0].data == {"text/plain": "100%"}
    assert outputs[0].sources == [0, 2]


@pytest.mark.parametrize(
    "item",
    [
        {"foo": 1},
        {"name": "stdin", "text": "x"},
        {"name": "stdout", "text": 5},
        {"data": "not a bundle"},
        {},
        "a string",
        None,
        ["a", "list"],
    ],
)
def test_odd_items_become_unknown(item):
    outputs = normalize_items([item]).outputs
    assert len(outputs) == 1
    assert outputs[0].kind == "unknown"
    assert outputs[0].item == item


def test_error_with_odd_fields_is_still_error():
    output = classify_item(0, {"ename": None, "traceback": "line 1\nline 2"})
    assert output.kind == "error"
    assert output.ename == "Error"
    assert output.traceback == ["line 1", "line 2"]

"""Rendering remote outputs in an InteractiveShell, checked with capture_output."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from IPython.utils.capture import capture_output
from tests.remote.remote_samples import MIXED_ITEMS, PIXEL_PNG, png_base64, with_output_type

from cocalc_magics.remote import (
    OutputLimits,
    RemoteKernelError,
    normalize_items,
    plan_outputs,
    render_outputs,
)

NOTICE = "Output truncated since it exceeded the cell output limit of 500000 characters"


def render(items, **options):
    with capture_output() as captured:
        result = render_outputs(items, kernel="python3", **options)
    return result, captured


def displayed(captured):
    return [(output.data, output.metadata) for output in captured.outputs]


def big_png_item(size: int) -> dict:
    payload = base64.b64encode(os.urandom(size * 3 // 4)).decode("ascii")
    return {
        "data": {
            "image/png": payload,
            "text/plain": "<Figure size 8000x8000 with 1 Axes>",
        }
    }


def test_mixed_items_render_each_kind(shell):
    result, captured = render(MIXED_ITEMS)
    assert captured.stdout == "partial\n"
    assert captured.stderr == "warn\n"

    outputs = displayed(captured)
    assert len(outputs) == 4
    assert outputs[0] == ({"text/plain": "42"}, {})
    assert outputs[1][0]["image/png"] == PIXEL_PNG
    assert outputs[1][1] == {"image/png": {"width": 640}}
    assert outputs[2][0]["text/html"] == "<table><tr><td>1</td></tr></table>"
    assert outputs[2][0]["text/plain"] == "   a\n0  1"
    assert outputs[3][0] == {"text/plain": 'Unrecognized output item: {"foo": 1}'}
    assert not result.ok


def test_output_type_variant_renders_identically(shell):
    _, plain = render(MIXED_ITEMS)
    _, typed = render(with_output_type(MIXED_ITEMS))
    assert typed.stdout == plain.stdout
    assert typed.stderr == plain.stderr
    assert displayed(typed) == displayed(plain)


def test_remote_error_fails_the_cell(shell):
    shell.user_ns["remote_items"] = MIXED_ITEMS
    code = (
        "from cocalc_magics.remote import render_outputs\n"
        "render_outputs(remote_items, kernel='python3').raise_for_error()\n"
    )
    with capture_output() as captured:
        outcome = shell.run_cell(code)

    error = outcome.error_in_exec
    assert isinstance(error, RemoteKernelError)
    assert type(error).__name__ == "ZeroDivisionError"
    assert str(error) == "division by zero"
    assert "Error raised on the remote python3 kernel" in captured.stdout
    assert "\x1b[0;31mZeroDivisionError\x1b[0m: division by zero" in captured.stdout
    assert "raise_for_error" not in captured.stdout


def test_remote_error_traceback_lines(shell):
    result, _ = render(MIXED_ITEMS)
    with pytest.raises(RemoteKernelError) as caught:
        result.raise_for_error()
    lines = caught.value._render_traceback_()
    assert lines[1:] == MIXED_ITEMS[-1]["traceback"]
    assert caught.value.result is result


def test_error_without_traceback_shows_name_and_value(shell):
    result, _ = render([{"ename": "KeyError", "evalue": "'x'"}])
    lines = result.exception()._render_traceback_()
    assert lines[-1] == "\x1b[0;31mKeyError\x1b[0m: 'x'"


def test_error_printed_in_place_when_not_raising(shell):
    items = [
        {"name": "stdout", "text": "before\n"},
        {
            "ename": "ValueError",
            "evalue": "bad",
            "traceback": ["\x1b[0;31mValueError\x1b[0m: bad"],
        },
    ]
    result, captured = render(items, show_errors=True)
    assert captured.stdout == "before\n"
    assert "\x1b[0;31mValueError\x1b[0m: bad" in captured.stderr
    assert result.errors[0].ename == "ValueError"


def test_successful_run_does_not_raise(shell):
    result, captured = render([{"name": "stdout", "text": "fine\n"}])
    result.raise_for_error()
    assert result.ok
    assert result.exception() is None
    assert captured.stdout == "fine\n"


def test_truncation_notices_show_once(shell):
    notice = {"name": "stdout", "output_type": "stream", "text": [NOTICE]}
    items = [{"name": "stdout", "text": "head\n"}, notice, notice, notice]
    _, captured = render(items)
    assert captured.stdout == "head\n"
    assert captured.stderr.count(NOTICE) == 1
    assert "replaced 3 outputs" in captured.stderr


@pytest.mark.parametrize("typed", [False, True], ids=["bare", "output_type"])
def test_oversized_image_is_withheld(shell, typed):
    items = [big_png_item(15_000_000), {"name": "stdout", "text": "done\n"}]
    if typed:
        items = with_output_type(items)
    result, captured = render(items)

    assert captured.stdout == "done\n"
    for data, _ in displayed(captured):
        assert "image/png" not in data
    shown = [data["text/plain"] for data, _ in displayed(captured)]
    assert shown[0] == "<Figure size 8000x8000 with 1 Axes>"
    placeholder = shown[1]
    assert "image/png" in placeholder
    assert "15.0 MB" in placeholder
    assert "last_result().payload(0, 'image/png')" in placeholder

    assert len(result.withheld) == 1
    assert result.withheld[0].mime == "image/png"
    payload = result.payload(0, "image/png")
    assert isinstance(payload, bytes)
    assert len(payload) == 15_000_000 * 3 // 4


def test_withheld_payload_named_after_out_variable(shell):
    _, captured = render([big_png_item(6_000_000)], result_name="plot")
    placeholder = displayed(captured)[-1][0]["text/plain"]
    assert "plot.payload(0, 'image/png')" in placeholder


def test_withheld_payload_saved_to_folder(shell, tmp_path):
    limits = OutputLimits(max_output_bytes=1_000, save_dir=tmp_path)
    image = png_base64(100, 100)
    result, captured = render([{"data": {"image/png": image}}], output_limits=limits)

    path = result.withheld[0].path
    assert path is not None
    assert path.parent == tmp_path
    assert path.suffix == ".png"
    assert path.read_bytes() == base64.b64decode(image)
    assert str(path) in displayed(captured)[-1][0]["text/plain"]


def test_result_saves_payload_on_request(shell, tmp_path):
    result, _ = render(MIXED_ITEMS)
    path = result.save_payload(4, "image/png", tmp_path)
    assert path.read_bytes() == base64.b64decode(PIXEL_PNG)
    with pytest.raises(KeyError, match="Items with data: 3, 4, 5"):
        result.payload(0, "image/png")


def test_wrapped_base64_png_is_shown_as_image(shell):
    image = png_base64(120, 40, wrap=True)
    assert "\n" in image
    _, captured = render([{"data": {"image/png": image, "text/plain": "<Figure>"}}])
    data = displayed(captured)[0][0]
    assert data["image/png"] == image.replace("\n", "")
    assert base64.b64decode(data["image/png"]).startswith(b"\x89PNG")


def test_invalid_base64_is_withheld_with_reason(shell):
    item = {"data": {"image/png": "not base64 at all!", "text/plain": "<Figure>"}}
    result, captured = render([item])
    outputs = displayed(captured)
    assert outputs[0][0] == {"text/plain": "<Figure>"}
    assert "not valid base64" in outputs[1][0]["text/plain"]
    assert result.withheld[0].reason == "not valid base64"


def test_cell_budget_withholds_later_outputs(shell):
    limits = OutputLimits(max_output_bytes=1_000, max_cell_bytes=2_500)
    items = [{"data": {"text/html": "x" * 900}} for _ in range(4)]
    result, captured = render(items, output_limits=limits)

    html_shown = [
        data
        for data, _ in displayed(captured)
        if data.get("text/html", "").startswith("x")
    ]
    assert len(html_shown) == 2
    assert [payload.index for payload in result.withheld] == [2, 3]
    assert "limit per cell" in result.withheld[0].reason


def test_small_fallback_survives_large_value(shell):
    limits = OutputLimits(max_output_bytes=1_000)
    item = {"data": {"text/html": "x" * 5_000, "text/plain": "summary"}}
    _, captured = render([item], output_limits=limits)
    assert displayed(captured)[0][0] == {"text/plain": "summary"}


def test_display_without_text_plain_gets_fallback(shell):
    _, captured = render([{"data": {"text/html": "<b>bold</b>"}}])
    data = displayed(captured)[0][0]
    assert data["text/html"] == "<b>bold</b>"
    assert data["text/plain"] == "<text/html output>"


@pytest.mark.parametrize(
    "mime, value",
    [
        ("text/markdown", "# Title"),
        ("text/latex", r"$\alpha$"),
        ("image/svg+xml", "<svg xmlns='http://www.w3.org/2000/svg'></svg>"),
        ("image/jpeg", PIXEL_PNG),
        ("application/json", {"a": [1, 2]}),
    ],
)
def test_rich_mime_types_pass_through(shell, mime, value):
    _, captured = render([{"data": {mime: value, "text/plain": "fallback"}}])
    data = displayed(captured)[0][0]
    assert data[mime] == value
    assert data["text/plain"] == "fallback"


def test_many_displays_are_capped(shell):
    limits = OutputLimits(max_displays=5)
    items = [{"data": {"text/plain": str(number)}} for number in range(8)]
    _, captured = render(items, output_limits=limits)
    assert [data["text/plain"] for data, _ in displayed(captured)] == list("01234")
    assert "3 more display outputs are not shown" in captured.stderr


def test_many_stream_items_cut_to_budget(shell):
    # 50,000 items of 41 bytes: about 2 MB, twice the default budget.
    items = [
        {"name": "stdout", "text": f"line {number:05d} {'.' * 29}\n"}
        for number in range(50_000)
    ]
    result, captured = render(items)

    assert len(captured.stdout.encode()) <= 1_000_000
    assert captured.stdout.startswith("line 00000 ")
    assert captured.stdout.endswith(f"line 49999 {'.' * 29}\n")
    omitted = 50_000 - captured.stdout.count("\n")
    assert omitted > 0
    assert f"... {omitted:,} lines ({omitted * 41:,} bytes)" in captured.stderr
    assert "last_result().stdout" in captured.stderr
    assert len(result.stdout) == 50_000 * 41


def test_stream_cut_keeps_whole_characters(shell):
    limits = OutputLimits(max_stream_bytes=101)
    _, captured = render(
        [{"name": "stdout", "text": "é🚀" * 200}], output_limits=limits
    )
    assert "\ufffd" not in captured.stdout
    assert set(captured.stdout) <= {"é", "🚀"}
    assert len(captured.stdout.encode()) <= 101


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(
        st.tuples(
            st.sampled_from(["stdout", "stderr"]), st.text(min_size=1, max_size=80)
        ),
        min_size=1,
        max_size=12,
    ),
    budget=st.integers(min_value=1, max_value=300),
)
def test_stream_cut_stays_in_budget(texts, budget):
    items = [{"name": name, "text": text} for name, text in texts]
    plan = plan_outputs(normalize_items(items), OutputLimits(max_stream_bytes=budget))
    marker = "lines ("
    shown = [step for step in plan.steps if marker not in step.text]
    shown_bytes = sum(len(step.text.encode("utf-8", "surrogatepass")) for step in shown)
    total = sum(len(text.encode("utf-8", "surrogatepass")) for _, text in texts)

    if total <= budget:
        assert shown_bytes == total
        assert plan.omitted_stream_bytes == 0
    else:
        assert shown_bytes <= budget
        assert plan.omitted_stream_bytes + shown_bytes == total


@pytest.mark.parametrize(
    "text",
    ["naïve café\n", "Grüße, 你好, Ωμέγα, 🚀\n", "broken \ufffd byte\n"],
)
def test_non_ascii_text_shown_unchanged(shell, text):
    _, captured = render([{"name": "stdout", "text": text}])
    assert captured.stdout == text


def test_invalid_limit_is_rejected():
    with pytest.raises(ValueError, match="max_output_bytes=-1"):
        OutputLimits(max_output_bytes=-1)


def test_zero_limits_mean_no_limit(shell):
    limits = OutputLimits(max_stream_bytes=0, max_output_bytes=0, max_cell_bytes=0)
    items = [{"name": "stdout", "text": "y" * 3_000_000}, big_png_item(6_000_000)]
    result, captured = render(items, output_limits=limits)
    assert len(captured.stdout) == 3_000_000
    assert result.withheld == []


def test_result_repr_is_short_and_escaped(shell):
    items = [
        {"name": "stdout", "text": "<script>alert(1)</script>\n"},
        big_png_item(6_000_000),
    ]
    result, _ = render(items)
    text = repr(result)
    assert text.startswith("<RemoteResult kernel='python3' ok items=2")
    assert "withheld=1" in text
    page = result._repr_html_()
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert len(page) < 10_000


def test_result_text_has_no_ansi(shell):
    result, _ = render(MIXED_ITEMS)
    assert "\x1b" not in result.text
    assert result.text.startswith("partial\nwarn\n42\n")
    assert result.text.endswith("ZeroDivisionError: division by zero\n")


def test_result_shows_again_with_larger_limits(shell):
    result, first = render([big_png_item(6_000_000)])
    assert all("image/png" not in output.data for output in first.outputs)

    with capture_output() as again:
        result.show(OutputLimits(max_output_bytes=0, max_cell_bytes=0))
    assert again.outputs[0].data["image/png"] == result.items[0]["data"]["image/png"]


def test_interrupted_run_explains_time_limit(shell):
    item = {
        "ename": "KeyboardInterrupt",
        "evalue": "",
        "traceback": ["KeyboardInterrupt: "],
    }
    result, _ = render([item])
    lines = result.exception()._render_traceback_()
    assert "time limit per run" in lines[-1]
    assert lines[1] == "KeyboardInterrupt: "

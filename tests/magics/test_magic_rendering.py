"""Display of command output: budget cuts, markers, notices, odd characters."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st
from IPython.utils.capture import capture_output

from cocalc_magics.magics.rendering import (
    cut_to_budget,
    printable,
    show_command_output,
    split_budget,
    write_stream,
)
from cocalc_magics.magics.results import CommandResult


def make_result(stdout="", stderr="", **fields) -> CommandResult:
    values = {
        "stdout": stdout,
        "stderr": stderr,
        "exit_code": 0,
        "duration_s": 0.1,
        "project_id": "11111111-2222-3333-4444-555555555555",
        "command": "cat big.log",
    }
    values.update(fields)
    return CommandResult(**values)


class TestCutToBudget:
    def test_short_text_unchanged(self):
        cut = cut_to_budget("a\nb\n", 100)
        assert cut.text == "a\nb\n"
        assert not cut.was_cut

    def test_long_text_keeps_head_and_tail(self):
        text = "".join(f"line {i}\n" for i in range(2_000_000))
        cut = cut_to_budget(text, 1_000_000)
        assert cut.text.startswith("line 0\nline 1\n")
        assert cut.text.endswith("line 1999999\n")
        assert len(cut.text.encode()) <= 1_000_000 + 100
        assert (
            f"... {cut.omitted_lines} lines ({cut.omitted_bytes} bytes) omitted ..."
            in cut.text
        )

    def test_counts_are_exact(self):
        text = "".join(f"{i:04d}\n" for i in range(1000))
        cut = cut_to_budget(text, 100)
        kept = cut.text.replace(
            f"... {cut.omitted_lines} lines ({cut.omitted_bytes} bytes) omitted ...\n",
            "",
        )
        assert len(kept.encode()) + cut.omitted_bytes == len(text.encode())
        assert kept.count("\n") + cut.omitted_lines == 1000

    def test_single_huge_line(self):
        cut = cut_to_budget("x" * 10_000, 1000)
        assert cut.was_cut
        assert len(cut.text) < 1100
        assert "omitted" in cut.text

    def test_multibyte_split_does_not_fail(self):
        cut = cut_to_budget("🚀" * 1000, 101)
        assert cut.was_cut
        assert "🚀" in cut.text

    @given(st.text(), st.integers(min_value=1, max_value=200))
    def test_any_text_any_budget(self, text, budget):
        cut = cut_to_budget(text, budget)
        if len(text.encode("utf-8", "surrogatepass")) <= budget:
            assert cut.text == text
        else:
            assert "omitted" in cut.text


class TestSplitBudget:
    def test_small_stderr_keeps_whole(self):
        assert split_budget("x" * 5000, "err\n", 1000) == (996, 4)

    def test_both_large_share(self):
        assert split_budget("x" * 5000, "y" * 5000, 1000) == (500, 500)

    def test_small_stdout_leaves_room(self):
        out_budget, err_budget = split_budget("x" * 10, "y" * 5000, 1000)
        assert out_budget >= 10
        assert out_budget + err_budget >= 1000


@pytest.mark.usefixtures("shell")
class TestShowCommandOutput:
    """Needs a shell: display() only publishes display_data inside one."""

    def test_streams_go_to_stdout_and_stderr(self):
        with capture_output() as captured:
            show_command_output(
                make_result("after\n", "grep: missing\n"), budget=1000, variable="r"
            )
        assert captured.stdout == "after\n"
        assert captured.stderr == "grep: missing\n"
        assert captured.outputs == []

    def test_ansi_and_html_kept_as_text(self):
        text = "\x1b[31mred\x1b[0m <b>bold</b> &amp;\n"
        with capture_output() as captured:
            show_command_output(make_result(text), budget=1000, variable="r")
        assert captured.stdout == text
        assert captured.outputs == []

    def test_cut_output_names_variable(self):
        big = "".join(f"{i}\n" for i in range(100_000))
        with capture_output() as captured:
            show_command_output(make_result(big), budget=10_000, variable="logs")
        assert len(captured.stdout.encode()) < 10_200
        assert "lines (" in captured.stdout
        notices = [o.data["text/plain"] for o in captured.outputs]
        assert any("logs.stdout" in notice for notice in notices)

    def test_server_truncation_noticed(self):
        result = make_result("x" * 10, stdout_truncated=True)
        with capture_output() as captured:
            show_command_output(result, budget=1000, variable="r")
        notices = " ".join(o.data["text/plain"] for o in captured.outputs)
        assert "The server cut stdout" in notices
        assert "--max-output" in notices

    def test_non_ascii_and_replacement_char(self):
        text = "Grüße, 你好, Ωμέγα, 🚀 \ufffd\n"
        with capture_output() as captured:
            show_command_output(make_result(text), budget=1000, variable="r")
        assert captured.stdout == text


class TestWriteStream:
    def test_lone_surrogate_replaced(self):
        assert printable("a\udcff b") == "a\ufffd b"

    def test_ascii_stream_gets_escapes(self):
        raw = io.BytesIO()
        stream = io.TextIOWrapper(raw, encoding="ascii")
        write_stream(stream, "naïve 🚀\n")
        assert raw.getvalue() == b"na\\xefve \\U0001f680\n"


def test_result_repr_is_short():
    result = make_result("x" * 100_000, job_id="job-1", site="local server")
    text = repr(result)
    assert len(text) < 200
    assert "exit_code=0" in text
    # The job id changes on every run, so saved notebooks would differ.
    assert "job-1" not in text
    assert result.job_id == "job-1"
    assert "local server" in text
    assert result.ok


def test_error_headline_without_project():
    from cocalc_magics.magics.errors import CoCalcMagicError

    error = CoCalcMagicError("config", "bad value", where="local server")
    headline = error._render_traceback_()[0]
    assert headline.endswith("config (on local server): bad value")


def test_error_headline_with_project():
    from cocalc_magics.magics.errors import CoCalcMagicError

    error = CoCalcMagicError(
        "project exec",
        "failed",
        project_id="11111111-2222-3333-4444-555555555555",
        where="local server",
    )
    headline = error._render_traceback_()[0]
    assert "(project 11111111" in headline
    assert "on local server): failed" in headline

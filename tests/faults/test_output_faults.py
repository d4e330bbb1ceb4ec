"""Hostile output from remote commands and kernels, end to end on a local server.

Commands print bytes that are not UTF-8, NUL bytes, ANSI escape sequences and
HTML. The output must arrive (nothing dropped or turned into an exception), and
text must never become markup: HTML in a command's output is shown escaped.
"""

from __future__ import annotations

import html

import pytest

from tests.faults.conftest import run_cell


@pytest.fixture
def connected(shell, magics, fault_server):
    from cocalc_magics.api import Connection
    from cocalc_magics.magics.session import LOCAL_LABEL

    magics.session.replace(
        Connection(
            host=fault_server.url,
            api_key=fault_server.api_key,
            project_id=fault_server.project_id,
            label=LOCAL_LABEL,
        )
    )
    return fault_server


SCRIPT = "<script>alert(1)</script>"


def test_non_utf8_and_nul_bytes_in_command_output(shell, connected):
    run = run_cell(
        shell, r"%cocalc exec printf 'before\377\376\000after\n'; printf 'e\377\n' >&2"
    )
    assert run.error is None, run.text
    result = shell.user_ns["_cocalc"]
    # Invalid bytes become U+FFFD; the text before and after them is kept.
    assert result.stdout.startswith("before")
    assert result.stdout.rstrip("\n").endswith("after")
    assert "\ufffd" in result.stdout
    assert result.stderr.startswith("e")
    assert "before" in run.stdout


def test_ansi_and_html_in_command_output_stay_text(shell, connected):
    run = run_cell(
        shell, f"%cocalc exec printf '\\033[31mred\\033[0m {SCRIPT}\\n' --out shown"
    )
    assert run.error is None, run.text
    result = shell.user_ns["_cocalc"]
    assert SCRIPT in result.stdout
    # Every rich form of the result, and of its job, shows the text escaped.
    objects = [result, getattr(result, "job", None)]
    for shown in filter(None, objects):
        data, _ = shell.display_formatter.format(shown)
        assert SCRIPT not in data.get("text/html", ""), type(shown)
    for output in run.outputs:
        assert SCRIPT not in output.get("text/html", "")

    # The client's own result object too.
    direct = connected_client(connected).exec(f"printf '{SCRIPT}'")
    assert direct.stdout == SCRIPT
    assert SCRIPT not in direct._repr_html_()
    assert html.escape(SCRIPT) in direct._repr_html_()


def connected_client(server):
    from cocalc_magics.api import Connection

    return Connection(
        host=server.url, api_key=server.api_key, project_id=server.project_id
    )


def test_html_in_a_remote_kernel_stream_stays_text(shell, connected):
    code = f"import sys\nprint({SCRIPT!r})\nprint('\\x1b[1mbold\\x1b[0m \\x00 nul')"
    run = run_cell(shell, f"%%cocalc_exec --kernel python3\n{code}")
    assert run.error is None, run.text
    assert SCRIPT in run.stdout
    assert "nul" in run.stdout
    for output in run.outputs:
        assert SCRIPT not in output.get("text/html", "")


def test_undecodable_file_name_printed_by_a_remote_kernel(shell, connected):
    # os.fsdecode turns the byte 0xff of a file name into a lone surrogate, which
    # UTF-8 cannot encode; the kernel and the server must still deliver the line.
    code = "import os\nprint('k' + os.fsdecode(b'\\xff') + 'z')"
    run = run_cell(shell, f"%%cocalc_exec --kernel python3\n{code}")
    assert run.error is None, run.text
    assert run.stdout.startswith("k") and run.stdout.rstrip().endswith("z")

"""``%cocalc panel`` through a real IPython shell and a real kernel."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import cocalc_magics.panels.magic  # noqa: F401 - registers the subcommand
from tests.panels.test_static_views import (
    WIDGET_VIEW,
    display_outputs,
    execute,
    server_environment,
)


@pytest.fixture
def shell(local_server, monkeypatch):
    for name, value in server_environment(local_server, "unused").items():
        monkeypatch.setenv(name, value)
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "cocalc_magics")
    yield ip
    ip.run_line_magic("unload_ext", "cocalc_magics")


def test_panel_magic_prints_summary_outside_kernel(shell, local_server):
    with capture_output() as captured:
        shell.run_line_magic("cocalc", "panel quotas")

    assert "Quotas:" in captured.stdout
    assert "Memory" in captured.stdout
    assert "<" not in captured.stdout
    assert local_server.api_key not in captured.stdout + captured.stderr


def test_panel_magic_rejects_unknown_kind(shell):
    with pytest.raises(UsageError, match="invalid choice"):
        shell.run_line_magic("cocalc", "panel nope")


@pytest.mark.parametrize("value", ["-1", "0.01", "nan"])
def test_panel_magic_rejects_bad_interval(shell, value):
    with pytest.raises(UsageError, match="--interval must be at least 0.1 seconds"):
        shell.run_line_magic("cocalc", f"panel --interval {value}")


def test_panel_magic_in_kernel_shows_widget(local_server, tmp_path):
    environment = server_environment(local_server, tmp_path / "ledger")
    sources = [
        "%load_ext cocalc_magics\nimport cocalc_magics.panels.magic",
        "%cocalc panel jobs --interval 1",
        "%cocalc panel --interval 0",
    ]
    notebook, _ = execute(sources, environment, tmp_path)

    for cell, title in zip(notebook.cells[1:], ("Jobs: ", "CoCalc project: ")):
        outputs = display_outputs(cell)
        assert len(outputs) == 1
        assert WIDGET_VIEW in outputs[0].data
        assert outputs[0].data["text/plain"].startswith(title)
        assert not [o for o in cell.outputs if o.output_type == "error"]

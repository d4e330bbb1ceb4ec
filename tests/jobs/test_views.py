"""Views outside a kernel: plain text in terminals and scripts, output budgets."""

from __future__ import annotations

import os
import subprocess
import sys

from cocalc_magics.jobs import Job
from cocalc_magics.jobs.views import BackgroundView, ForegroundView, in_kernel


def offline_job(**values) -> Job:
    job = Job(job_id="0123456789abcdef", project_id="p-1", site="http://127.0.0.1:1")
    for name, value in values.items():
        setattr(job, name, value)
    return job


def test_not_in_kernel_under_pytest():
    assert not in_kernel()


def test_foreground_writes_only_new_text(capsys):
    job = offline_job()
    view = ForegroundView(job)
    for text in ("a\n", "a\nb\n", "a\nb\n", "a\nb\nc\n"):
        job.stdout = text
        view.update(job)
    assert capsys.readouterr().out == "a\nb\nc\n"


def test_foreground_budget_cut(capsys):
    job = offline_job()
    view = ForegroundView(job, budget=20)
    job.stdout = "0123456789abcdef"
    view.update(job)
    job.stdout += "more"
    view.update(job)
    out = capsys.readouterr().out
    assert out.startswith("0123456789\n… more stdout is held back")
    assert "more" not in out.split("\n", 2)[-1]
    assert view.shown_everything


def test_foreground_shows_head_and_tail(capsys):
    job = offline_job(status="completed", exit_code=0)
    view = ForegroundView(job, budget=40)
    lines = [f"line {i:03d}" for i in range(100)]
    job.stdout = "\n".join(lines) + "\n"
    view.update(job)
    view.finish(job)
    out = capsys.readouterr().out
    assert out.startswith("line 000\nline 001\n")
    assert "lines (" in out and "bytes) omitted" in out
    assert "line 099\n" in out
    assert "line 050" not in out
    assert not view.shown_everything


def test_foreground_tail_fits_without_marker(capsys):
    job = offline_job(status="completed", exit_code=0)
    view = ForegroundView(job, budget=40)
    job.stdout = "a" * 15 + "\n"
    view.update(job)
    job.stdout += "b" * 10 + "\n"
    view.finish(job)
    out = capsys.readouterr().out
    shown = [line for line in out.splitlines() if not line.startswith(("…", "CoCalc"))]
    assert "".join(shown) == "a" * 15 + "b" * 10
    assert "omitted" not in out
    assert view.shown_everything


def test_background_plain_text(capsys):
    job = offline_job(status="completed", exit_code=0, elapsed_s=1.0)
    view = BackgroundView(job)
    view.finish(job)
    out = capsys.readouterr().out
    assert "CoCalc job 01234567…" in out
    assert "<" not in out


TERMINAL_SESSION = """
import sys
sys.modules["ipywidgets"] = None
from cocalc_magics.api import Connection
from cocalc_magics.jobs import run_job
conn = Connection()
job = run_job(conn, "sleep 1; echo bg", background=True)
job.wait(timeout=30)
job
"""


def test_terminal_ipython_without_widgets(local_server, tmp_path, data_dir):
    script = tmp_path / "session.ipy"
    script.write_text(TERMINAL_SESSION)
    env = {
        **os.environ,
        "COCALC_HOST": local_server.url,
        "COCALC_API_KEY": local_server.api_key,
        "COCALC_PROJECT_ID": local_server.project_id,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
    }
    ipython = [sys.executable, "-m", "IPython", "--no-banner", "--colors=nocolor"]
    child = subprocess.run(
        [*ipython, "-i", str(script)],
        input="exit\n",
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
        env=env,
    )
    assert child.returncode == 0, child.stderr
    assert "in the background" in child.stdout
    assert ": completed, exit 0" in child.stdout
    assert "<" not in child.stdout.replace("<cell", "")
    assert "ImportError" not in child.stderr
    assert "Widget" not in child.stdout
    assert local_server.api_key not in child.stdout + child.stderr

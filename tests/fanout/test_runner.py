"""Fan-out over a class of 100 projects on a real local server.

Commands append start and end lines to a log file outside the projects (local
projects are directories on this machine), so the tests see on the server side
what ran, when, and how many ran at once.
"""

from __future__ import annotations

import _thread
import threading
import time
import uuid
from pathlib import Path

import pytest

from cocalc_magics.fanout import (
    FanoutInterrupted,
    exec_many,
    retry_failed,
    start_many,
    status_many,
    stop_many,
)
from tests.fanout.conftest import CLASS_SIZE, ThreadSampler
from tests.support.local_server import wait_until


def logged(command: str, log: Path) -> str:
    """Wrap *command* so that it appends ``S``/``E`` lines with ns timestamps."""
    return (
        f'echo "S $COCALC_PROJECT_ID $(date +%s%N)" >> {log}\n'
        f"{command}\n"
        f'echo "E $COCALC_PROJECT_ID $(date +%s%N)" >> {log}\n'
    )


def read_log(log: Path) -> list[tuple[str, str, int]]:
    if not log.exists():
        return []
    entries = []
    for line in log.read_text().splitlines():
        kind, project_id, stamp = line.split()
        entries.append((kind, project_id, int(stamp)))
    return entries


def max_overlap(entries: list[tuple[str, str, int]]) -> int:
    """Largest number of commands between their S and E lines at one moment."""
    events = sorted((stamp, 1 if kind == "S" else -1) for kind, _, stamp in entries)
    running = peak = 0
    # At equal timestamps the end sorts first (-1 < 1), so touching runs don't count.
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


def test_concurrency_bound_observed_on_server(connection, class_projects, tmp_path):
    log = tmp_path / "runs.log"
    with ThreadSampler() as threads:
        baseline = threading.active_count()
        result = exec_many(
            connection,
            class_projects,
            logged("sleep 0.3", log),
            concurrency=8,
            display="none",
        )

    entries = read_log(log)
    assert result.ok, result.failed()
    assert len(result) == CLASS_SIZE
    assert sum(1 for kind, *_ in entries if kind == "S") == CLASS_SIZE
    assert sum(1 for kind, *_ in entries if kind == "E") == CLASS_SIZE
    assert max_overlap(entries) == 8
    # The pool has 8 threads whatever the number of projects.
    assert threads.peak <= baseline + 8


def test_first_run_starts_stopped_projects(connection, class_projects, tmp_path):
    # The projects were created without starting; a previous test may have run.
    stop_many(connection, class_projects[:10], concurrency=10, display="none")

    result = exec_many(connection, class_projects[:10], "echo ok", display="none")

    assert result.ok, result.failed()
    assert all(row.started_project for row in result)
    assert [row.state for row in result] == ["running"] * 10
    assert [row.stdout for row in result] == ["ok\n"] * 10


def test_rows_keep_input_order(connection, class_projects, tmp_path):
    chosen = class_projects[10:20]
    log = tmp_path / "order.log"
    # Project i sleeps longer the earlier it comes, so they finish in reverse.
    for index, project_id in enumerate(chosen):
        connection.write_text_file(
            "delay", f"{(10 - index) * 0.1:.1f}", project_id=project_id
        )

    result = exec_many(
        connection,
        chosen,
        logged("sleep $(cat delay)", log),
        concurrency=10,
        display="none",
    )

    assert [row.project_id for row in result] == chosen
    ends = [
        project_id
        for kind, project_id, _ in sorted(read_log(log), key=lambda e: e[2])
        if kind == "E"
    ]
    assert ends == list(reversed(chosen))


ROLE_SCRIPT = """
case "$(cat role 2>/dev/null)" in
  fail) echo "missing lab3.ipynb" >&2; exit 3 ;;
  hang) sleep 30 ;;
  *) echo "found lab3.ipynb" ;;
esac
"""


@pytest.fixture(scope="module")
def failing_run(connection, class_projects, tmp_path_factory):
    """A run over the class where 3 projects fail, 1 hangs and 1 is not ours."""
    log = tmp_path_factory.mktemp("failures") / "runs.log"
    for project_id in class_projects:
        connection.write_text_file("role", "ok", project_id=project_id)
    for project_id in class_projects[20:23]:
        connection.write_text_file("role", "fail", project_id=project_id)
    connection.write_text_file("role", "hang", project_id=class_projects[23])
    foreign = str(uuid.uuid4())
    projects = [*class_projects, foreign]

    result = exec_many(
        connection,
        projects,
        logged(ROLE_SCRIPT, log),
        timeout=2,
        concurrency=20,
        display="none",
    )
    return result, foreign, log


def test_failures_stay_in_their_rows(failing_run, class_projects):
    result, foreign, _ = failing_run
    rows = {row.project_id: row for row in result}

    for project_id in class_projects[20:23]:
        assert rows[project_id].status == "failed"
        assert rows[project_id].exit_code == 3
        assert rows[project_id].stderr == "missing lab3.ipynb\n"
        assert rows[project_id].error == "exit code 3"

    hung = rows[class_projects[23]]
    assert hung.status == "failed"
    assert hung.exit_code is None
    assert "timed out after 2 s" in hung.error
    assert hung.job_id is not None

    stranger = rows[foreign]
    assert stranger.status == "failed"
    assert "collaborator" in stranger.error
    assert stranger.job_id is None

    healthy = [
        row
        for row in result
        if row.project_id in class_projects[24:] + class_projects[:20]
    ]
    assert len(healthy) == CLASS_SIZE - 4
    assert all(row.status == "done" and row.exit_code == 0 for row in healthy)
    assert all(row.stdout == "found lab3.ipynb\n" for row in healthy)
    assert len(result.failed()) == 5
    assert "96 done, 5 failed of 101 projects" in result.summary()


def test_retry_failed_reruns_only_failed(failing_run, connection, class_projects):
    previous, foreign, log = failing_run
    for project_id in class_projects[20:24]:
        connection.write_text_file("role", "ok", project_id=project_id)
    log.unlink()

    again = retry_failed(previous, display="none")

    assert [row.project_id for row in again] == [*class_projects[20:24], foreign]
    assert [row.status for row in again] == ["done"] * 4 + ["failed"]
    started = sorted(project_id for kind, project_id, _ in read_log(log) if kind == "S")
    assert started == sorted(class_projects[20:24])

    merged = previous.merged(again)
    assert len(merged) == CLASS_SIZE + 1
    assert [row.project_id for row in merged.failed()] == [foreign]


def test_retry_failed_of_clean_run_runs_nothing(connection, class_projects):
    clean = status_many(connection, class_projects[:5], display="none")

    again = retry_failed(clean, display="none")

    assert clean.ok
    assert len(again) == 0


def test_interrupt_cancels_queue_and_signals_jobs(connection, class_projects, tmp_path):
    log = tmp_path / "cancel.log"
    threads_before = threading.active_count()
    timer = threading.Timer(2.0, _thread.interrupt_main)
    timer.start()
    began = time.monotonic()
    with pytest.raises(FanoutInterrupted) as caught:
        exec_many(
            connection,
            class_projects,
            logged("sleep 30", log),
            timeout=60,
            concurrency=5,
            display="none",
        )
    elapsed = time.monotonic() - began
    result = caught.value.result

    assert elapsed < 10
    assert result.interrupted
    signalled = [row for row in result if row.signalled]
    assert len(signalled) == 5
    assert all(row.status == "cancelled" for row in result)
    assert all(row.job_id for row in signalled)
    assert sum(1 for row in result if row.error == "cancelled before it started") == 95
    assert result.left_running() == []
    assert "no job was left running" in str(caught.value)

    # Only the 5 running projects ever started the command, and none finished it.
    time.sleep(0.5)
    entries = read_log(log)
    assert sorted(p for kind, p, _ in entries if kind == "S") == sorted(
        row.project_id for row in signalled
    )
    assert [kind for kind, *_ in entries if kind == "E"] == []
    for row in signalled:
        job = connection.async_get(row.job_id, project_id=row.project_id)
        assert not job.running
    wait_until(lambda: threading.active_count() <= threads_before, timeout=5)


def test_start_and_stop_many(connection, class_projects):
    chosen = class_projects[30:40]

    stopped = stop_many(connection, chosen, display="none")
    states = status_many(connection, chosen, display="none")
    started = start_many(connection, chosen, display="none")

    assert stopped.ok
    assert [row.detail for row in states] == ["state: opened"] * 10
    assert started.ok
    assert [row.detail for row in started] == ["started"] * 10
    assert [connection.project_state(p).state for p in chosen] == ["running"] * 10


def test_title_search_selects_class(connection, class_projects):
    result = status_many(connection, "title:lab 3 - STUDENT 04", display="none")

    assert sorted(row.project_id for row in result) == sorted(class_projects[40:50])
    assert all(row.title.startswith("Lab 3 - student 04") for row in result)


def test_interrupt_kills_jobs_ignoring_sigint(connection, class_projects):
    chosen = class_projects[50:54]
    threading.Timer(1.5, _thread.interrupt_main).start()

    with pytest.raises(FanoutInterrupted) as caught:
        exec_many(
            connection,
            chosen,
            "trap '' INT; sleep 30",
            concurrency=4,
            interrupt_grace=0.5,
            display="none",
        )

    result = caught.value.result
    assert [row.signalled for row in result] == ["SIGKILL"] * 4
    assert [row.status for row in result] == ["cancelled"] * 4
    assert all(row.error.startswith("interrupted with SIGKILL") for row in result)
    for row in result:
        assert not connection.async_get(row.job_id, project_id=row.project_id).running

"""Fixtures for the magics tests: a real IPython shell with the extension loaded."""

from __future__ import annotations

import itertools

import pytest
from IPython.core.interactiveshell import InteractiveShell

from tests.support.fake_server import FakeCoCalc
from tests.support.local_server import local_server  # noqa: F401 - a fixture


@pytest.fixture(autouse=True)
def job_ledger(monkeypatch, tmp_path):
    """A job ledger of the test's own, so jobs of other tests never show up."""
    directory = tmp_path / "data"
    monkeypatch.setenv("COCALC_MAGICS_DATA_DIR", str(directory))
    return directory / "jobs.sqlite3"


@pytest.fixture
def shell():
    """The process's InteractiveShell with ``cocalc_magics`` loaded, unloaded after.

    Names the test defines in the user namespace, and any CoCalcMagics config it
    sets, are removed afterwards, so tests do not see each other's state.
    """
    ip = InteractiveShell.instance()
    names_before = set(ip.user_ns)
    ip.run_line_magic("load_ext", "cocalc_magics")
    yield ip
    ip.run_line_magic("unload_ext", "cocalc_magics")
    for name in set(ip.user_ns) - names_before:
        del ip.user_ns[name]
    # %config writes into the shell's config, which the next load would read.
    ip.config.pop("CoCalcMagics", None)


@pytest.fixture
def magics(shell):
    """The registered ``CoCalcMagics`` instance."""
    return shell.magics_manager.registry["CoCalcMagics"]


PROJECT_ID = "11111111-2222-3333-4444-555555555555"
CANARY_KEY = "sk-CANARY-7f3a9c0e5b1d"


def reply_to_exec(request):
    """Reply to system.exec like CoCalc: blocking runs, async starts and polls."""
    options = request.args[0]
    if "async_get" in options:
        return {
            "type": "async",
            "job_id": options["async_get"],
            "status": "completed",
            "stdout": "",
            "stderr": "",
            "exit_code": 0,
            "start": 1,
            "elapsed_s": 0.1,
        }
    if options.get("async_call"):
        return {
            "type": "async",
            "job_id": "job-1",
            "status": "running",
            "stdout": "",
            "stderr": "",
            "exit_code": 0,
            "start": 1,
            "pid": 42,
        }
    return {"type": "blocking", "stdout": "ok\n", "stderr": "", "exit_code": 0}


def job_responder(final_for):
    """Reply to system.exec like CoCalc's async jobs, with a scripted outcome.

    ``final_for(command)`` returns the job's final ``stdout``, ``stderr`` and
    ``exit_code`` (a dict, or a ``Reply`` to send instead). The start reply says
    "running" with no output; the first ``async_get`` of the job completes it.
    """
    finals: dict[str, dict] = {}
    counter = itertools.count(1)

    def respond(request):
        options = request.args[0]
        if "async_get" in options:
            job_id = options["async_get"]
            final = finals.get(job_id, {"stdout": "", "stderr": "", "exit_code": 0})
            return {
                "type": "async",
                "job_id": job_id,
                "status": "completed",
                "start": 1,
                "elapsed_s": 0.1,
                "stats": [],
                **final,
            }
        final = final_for(options.get("command", ""))
        if not isinstance(final, dict):
            return final
        job_id = f"job-{next(counter)}"
        finals[job_id] = final
        return {
            "type": "async",
            "job_id": job_id,
            "status": "running",
            "stdout": "",
            "stderr": "",
            "exit_code": 0,
            "start": 1,
            "pid": 42,
        }

    return respond


@pytest.fixture
def fake(shell, monkeypatch, tmp_path):
    """A fake CoCalc server that the magics reach through the documented variables.

    The API key is a canary string, so tests can search every output for it.
    """
    server = FakeCoCalc(api_key=CANARY_KEY, project_id=PROJECT_ID).start()
    server.on("system.exec", reply_to_exec)
    server.script("projects.status", {"project.pid": 312, "memory": {"rss": 512000}})
    monkeypatch.setenv("COCALC_HOST", server.url)
    monkeypatch.setenv("COCALC_API_KEY", CANARY_KEY)
    monkeypatch.setenv("COCALC_PROJECT_ID", PROJECT_ID)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    yield server
    server.stop()


@pytest.fixture
def on_local_server(shell, magics, local_server):  # noqa: F811
    """The magics connected to the session's local server child process."""
    from cocalc_magics.api import Connection
    from cocalc_magics.magics.session import LOCAL_LABEL

    magics.session.replace(
        Connection(
            host=local_server.url,
            api_key=local_server.api_key,
            project_id=local_server.project_id,
            label=LOCAL_LABEL,
        )
    )
    return local_server

"""The stateless Jupyter methods over HTTP, against a local server child process."""

from __future__ import annotations

import threading
import time

import psutil

from tests.support.local_server import is_error, raw_call, wait_until

TIMEOUT_MS = 90000


def execute(server, project_id=None, **options):
    body = {
        "name": "system.jupyterExecute",
        "args": [{"kernel": "python3", **options}],
        "project_id": project_id or server.project_id,
        "timeout": TIMEOUT_MS,
    }
    return server.call("project", body)


def is_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_history_example(local_server):
    reply = execute(local_server, history=["a = 100"], input="sum(range(a + 1))")
    assert reply == [{"data": {"text/plain": "5050"}}]


def test_path_limits_and_error_example(local_server):
    home = local_server.data_dir / "projects" / local_server.project_id
    (home / "work").mkdir(exist_ok=True)
    reply = execute(
        local_server,
        input="import os; print(os.path.basename(os.getcwd())); 1/0",
        path="work",
        # Unknown fields, such as the timeout the Python client adds, are ignored.
        timeout=30,
        limits={"timeout_ms_per_cell": 20000, "max_output_per_cell": 200000},
    )
    assert reply[0] == {"name": "stdout", "text": "work\n"}
    assert reply[1]["ename"] == "ZeroDivisionError"
    assert reply[1]["evalue"] == "division by zero"
    assert len(reply) == 2


def test_unknown_kernel_error_envelope(local_server):
    reply = execute(local_server, kernel="nope", input="1")
    assert is_error(reply)
    assert reply["error"].startswith(
        "Error: **Unable to Spawn Jupyter Kernel:**\n\nNo spec available for kernel "
        '"nope".'
    )


def test_total_time_error_envelope(local_server):
    reply = execute(
        local_server, input="1", limits={"timeout_ms": 1000, "start_time": 0}
    )
    assert reply == {"error": "Error: Total time limit (=1 seconds) exceeded"}


def test_kernel_specs_on_both_endpoints(local_server):
    project_specs = local_server.project("editor.jupyterKernels")
    hub_specs = local_server.hub(
        "jupyter.kernels", {"project_id": local_server.project_id}
    )
    for specs in (project_specs, hub_specs):
        python = {spec["name"]: spec for spec in specs}["python3"]
        assert python["language"] == "python"
        assert isinstance(python["argv"], list)
        assert "resource_dir" in python


def test_list_and_stop_kernels(local_server):
    execute(local_server, input="1", pool={"size": 1})
    kernels = wait_until(lambda: local_server.project("system.listJupyterKernels"))
    entry = kernels[0]
    assert set(entry) == {"pid", "connectionFile", "kernel_name"}
    assert entry["kernel_name"] == "python3"

    reply = local_server.project("system.stopJupyterKernel", {"pid": entry["pid"]})
    assert reply == {"success": True}
    wait_until(lambda: not is_alive(entry["pid"]))
    reply = local_server.project("system.stopJupyterKernel", {"pid": entry["pid"]})
    assert reply == {"success": False}


def test_project_stop_kills_its_kernels(local_server):
    project_id = local_server.hub("projects.createProject", {"title": "kernels"})
    assert execute(local_server, project_id, input="2 + 3", pool={"size": 1}) == [
        {"data": {"text/plain": "5"}}
    ]

    def spares():
        body = {
            "name": "system.listJupyterKernels",
            "args": [],
            "project_id": project_id,
        }
        return local_server.call("project", body)

    pids = [entry["pid"] for entry in wait_until(spares)]
    assert all(is_alive(pid) for pid in pids)

    local_server.hub("projects.stop", {"project_id": project_id})
    wait_until(lambda: not any(is_alive(pid) for pid in pids))


def _execute_in_background(server, project_id, code, **options):
    """Start a jupyterExecute call in a thread; return the thread and its result box.

    The HTTP read timeout of 20 s is far below the code's run time, so a call that
    does not end when its kernel is killed fails the test instead of waiting.
    """
    outcome: dict = {}

    def call() -> None:
        body = {
            "name": "system.jupyterExecute",
            "args": [{"kernel": "python3", "input": code, **options}],
            "project_id": project_id,
            "timeout": TIMEOUT_MS,
        }
        try:
            outcome["reply"] = raw_call(
                server.url, server.api_key, "project", body, timeout=20
            )
        except Exception as error:  # noqa: BLE001 - reported by the assert
            outcome["reply"] = error

    worker = threading.Thread(target=call)
    worker.start()
    return worker, outcome


def _stop_listed_kernels(server, project_id, worker) -> list[int]:
    stopped = []
    while worker.is_alive():
        listed = server.call(
            "project",
            {"name": "system.listJupyterKernels", "args": [], "project_id": project_id},
        )
        for entry in listed:
            body = {
                "name": "system.stopJupyterKernel",
                "args": [{"pid": entry["pid"]}],
                "project_id": project_id,
            }
            server.call("project", body)
            stopped.append(entry["pid"])
        time.sleep(0.02)
    return stopped


def test_stopping_busy_kernel_fails_call(local_server):
    project_id = local_server.hub("projects.createProject", {"title": "stop busy"})
    home = local_server.data_dir / "projects" / project_id
    marker = home / "busy-kernel"
    code = (
        f"import os; open({str(marker)!r}, 'w').write(str(os.getpid()))\n"
        "import time; time.sleep(120)"
    )
    worker, outcome = _execute_in_background(
        local_server, project_id, code, pool={"size": 0}
    )
    wait_until(marker.exists, timeout=60)
    busy = int(marker.read_text())

    body = {
        "name": "system.stopJupyterKernel",
        "args": [{"pid": busy}],
        "project_id": project_id,
    }
    assert local_server.call("project", body) == {"success": True}
    worker.join(30)
    assert outcome["reply"] == {"error": "Error: Kernel last exited with code 137."}
    assert not is_alive(busy)


def test_stopping_starting_kernel_fails_call(local_server):
    # The first call of a new project starts its kernel while the caller waits, so
    # stopping every listed kernel at once hits the call's kernel while it starts.
    # The call must fail as if it had run, not as a failed kernel start, and must
    # not run the input on another kernel.
    project_id = local_server.hub("projects.createProject", {"title": "stop start"})
    home = local_server.data_dir / "projects" / project_id
    marker = home / "input-ran"
    code = f"open({str(marker)!r}, 'w').close()\nimport time; time.sleep(120)"
    worker, outcome = _execute_in_background(
        local_server, project_id, code, pool={"size": 0}
    )
    stopped = _stop_listed_kernels(local_server, project_id, worker)
    worker.join(30)

    assert stopped
    assert outcome["reply"] == {"error": "Error: Kernel last exited with code 137."}
    assert not any(is_alive(pid) for pid in stopped)

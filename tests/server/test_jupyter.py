"""JupyterService with real ipykernel kernels, driven on one asyncio loop.

The tests of this module share one service, so the pool of the default project
keeps warm kernels between them. Extra kernel specs, installed in a temporary
JUPYTER_PATH, cover a language without a change-directory statement and kernels
that fail to start.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from cocalc_magics.server.errors import MethodError
from cocalc_magics.server.jupyter import JupyterService
from cocalc_magics.server.jupyter_launcher import KERNEL_RLIMITS

PROJECT = "00000000-1111-2222-3333-444444444444"
IPYKERNEL_ARGV = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]

EXTRA_SPECS = {
    # An ipykernel that claims a language with no known change-directory statement.
    "python3-gap": {
        "argv": IPYKERNEL_ARGV,
        "display_name": "GAP-ish",
        "language": "gap",
    },
    "exits-at-start": {
        "argv": [
            sys.executable,
            "-c",
            "import sys; sys.stderr.write('broken kernel\\n'); sys.exit(3)",
        ],
        "display_name": "Broken",
        "language": "python",
    },
    "missing-binary": {
        "argv": ["/nonexistent/kernel-binary", "{connection_file}"],
        "display_name": "Missing",
        "language": "python",
    },
}


@pytest.fixture(scope="module")
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def jupyter_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("jupyter-path")
    for name, spec in EXTRA_SPECS.items():
        directory = root / "kernels" / name
        directory.mkdir(parents=True)
        (directory / "kernel.json").write_text(json.dumps(spec))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", str(root))
        yield root


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    (home / "work").mkdir()
    return home


@pytest.fixture(scope="module")
def service(loop, jupyter_path):
    service = JupyterService()
    # Shorter than CoCalc's 3 s so that waiting for spare kernels stays quick.
    service.pool_start_stagger_s = 1.0
    yield service
    loop.run_until_complete(service.close())
    assert kernel_children() == []


def kernel_children() -> list[psutil.Process]:
    """Live kernel processes started by this test process.

    Only direct children count: the service launches kernels itself, while kernels
    below a local server subprocess of another test module are grandchildren.
    """
    found = []
    for child in psutil.Process().children(recursive=False):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and any(
                "ipykernel" in part for part in child.cmdline()
            ):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def run(loop: asyncio.AbstractEventLoop, coroutine: Any, timeout_s: float = 60) -> Any:
    return loop.run_until_complete(asyncio.wait_for(coroutine, timeout_s))


@pytest.fixture
def execute(loop, service, home):
    """Call ``service.execute`` with the defaults of a plain API call."""

    def execute(input: str, **options: Any) -> list[dict]:
        arguments = {
            "project_id": PROJECT,
            "home": home,
            "kernel": "python3",
            "history": None,
            "path": None,
            "pool": None,
            "limits": None,
        }
        arguments.update(options)
        return run(loop, service.execute(input=input, **arguments))

    return execute


def assert_no_output_type(items: list[dict]) -> None:
    for item in items:
        assert "output_type" not in item, item
        assert "execution_count" not in item, item
        assert "comm_id" not in item, item


def stdout_text(items: list[dict]) -> str:
    return "".join(item["text"] for item in items if item.get("name") == "stdout")


def wait_until(loop, condition, timeout_s: float = 20.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.1)

    run(loop, poll(), timeout_s)


def sleep_after_marker(marker: Path) -> str:
    """Code that creates ``marker`` once it runs, then sleeps for 30 s."""
    return f"open({str(marker)!r}, 'w').close()\nimport time\ntime.sleep(30)"


async def wait_for_file(path: Path, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} was not created"
        await asyncio.sleep(0.05)


def is_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# Output kinds


def test_stream_stdout_and_stderr(execute):
    code = (
        "import sys\n"
        "print('out', flush=True)\n"
        "print('err', file=sys.stderr, flush=True)\n"
        "print('out again', flush=True)"
    )
    items = execute(code)
    assert items == [
        {"name": "stdout", "text": "out\n"},
        {"name": "stderr", "text": "err\n"},
        {"name": "stdout", "text": "out again\n"},
    ]


def test_execute_result_and_display_kinds(execute):
    png = (
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"
        "AAAABJRU5ErkJggg=="
    )
    code = (
        "import base64\n"
        "from IPython.display import HTML, JSON, Image, Latex, Markdown, display\n"
        "display(HTML('<b>bold</b>'))\n"
        f"display(Image(data=base64.b64decode('{png}'), format='png'))\n"
        "display(JSON({'a': 1}))\n"
        "display(Markdown('*md*'))\n"
        "display(Latex('$x^2$'))\n"
        "handle = display('first', display_id=True)\n"
        "handle.update('second')\n"
        "6 * 7"
    )
    items = execute(code)
    assert_no_output_type(items)
    data = [item["data"] for item in items]

    assert data[0]["text/html"] == "<b>bold</b>"
    assert data[1]["image/png"] == png
    assert "text/plain" in data[1]
    assert data[2]["application/json"] == {"a": 1}
    assert data[3]["text/markdown"] == "*md*"
    assert data[4]["text/latex"] == "$x^2$"
    assert data[5] == {"text/plain": "'first'"}
    assert items[5]["transient"]["display_id"]
    assert data[6] == {"text/plain": "'second'"}
    assert items[6]["transient"] == items[5]["transient"]
    # execute_result looks like display_data once execution_count is gone.
    assert items[7] == {"data": {"text/plain": "42"}}
    assert len(items) == 8


def test_error_item_with_traceback(execute):
    items = execute("print('hi'); 1/0")
    assert items[0] == {"name": "stdout", "text": "hi\n"}
    error = items[1]
    assert set(error) == {"ename", "evalue", "traceback"}
    assert error["ename"] == "ZeroDivisionError"
    assert error["evalue"] == "division by zero"
    assert all(isinstance(line, str) for line in error["traceback"])
    assert "\x1b[" in "".join(error["traceback"])
    assert len(items) == 2


def test_clear_output_drops_earlier_items(execute):
    code = (
        "from IPython.display import clear_output\n"
        "print('before', flush=True)\n"
        "clear_output()\n"
        "print('after')"
    )
    assert execute(code) == [{"wait": False}, {"name": "stdout", "text": "after\n"}]


def test_widget_comm_messages_dropped(execute):
    code = "import ipywidgets\ndisplay(ipywidgets.IntSlider(value=3))"
    items = execute(code)
    assert_no_output_type(items)
    assert len(items) == 1
    assert "application/vnd.jupyter.widget-view+json" in items[0]["data"]
    assert "text/plain" in items[0]["data"]


def test_empty_input_gives_no_items(execute):
    assert execute("x = 1") == []


def test_stdin_is_not_offered(execute):
    items = execute("input('name? ')")
    assert items[-1]["ename"] == "StdinNotImplementedError"


# History and path


def test_history_replayed_without_output(execute):
    history = ["a = 100", "print('from history')", "a"]
    items = execute("sum(range(a + 1))", history=history)
    assert items == [{"data": {"text/plain": "5050"}}]


def test_history_error_stops_the_one_cell(execute):
    # History runs as one cell, so an error skips the rest of it, silently.
    items = execute("b", history=["1/0", "b = 2"])
    assert len(items) == 1
    assert items[0]["ename"] == "NameError"

    items = execute("c", history=["c = 3", "1/0"])
    assert items == [{"data": {"text/plain": "3"}}]


def test_default_directory_is_fresh_temporary(execute, home):
    code = (
        "import os; print(os.getcwd()); print(os.environ['HOME']); print(os.listdir())"
    )
    lines = stdout_text(execute(code)).splitlines()
    assert Path(lines[0]).name.startswith("cocalc")
    assert Path(lines[0]) != home
    assert lines[1] == str(home)
    assert lines[2] == "[]"
    assert not Path(lines[0]).exists()


@pytest.mark.parametrize("path, relative", [("work", "work"), ("", "."), (".", ".")])
def test_path_changes_directory(execute, home, path, relative):
    items = execute("import os; print(os.getcwd())", path=path)
    assert items == [{"name": "stdout", "text": f"{(home / relative).resolve()}\n"}]


def test_non_ascii_code_path_and_output(execute, home):
    (home / "Données").mkdir(exist_ok=True)
    code = (
        "import os\nprint('naïve café, 你好, 🚀')\nprint(os.path.basename(os.getcwd()))"
    )
    items = execute(code, path="Données")
    assert stdout_text(items) == "naïve café, 你好, 🚀\nDonnées\n"


def test_path_missing_is_silent(execute, home):
    items = execute("import os; print(os.getcwd())", path="no/such/dir")
    assert len(items) == 1
    assert Path(items[0]["text"].strip()).name.startswith("cocalc")


def test_path_unknown_language_gives_stderr_first(execute):
    items = execute("print('ran')", kernel="python3-gap", path="work", pool={"size": 0})
    assert items[0]["name"] == "stderr"
    assert items[0]["text"].startswith("Error: unable to change directory:")
    assert "'gap'" in items[0]["text"]
    assert items[1:] == [{"name": "stdout", "text": "ran\n"}]


# Limits


def test_default_cell_cap_without_limits(execute):
    items = execute("print('x' * 1_000_100)")
    assert items == [
        {
            "name": "stdout",
            "output_type": "stream",
            "text": [
                (
                    "Output truncated since it exceeded the cell output limit of "
                    "1000000 characters"
                )
            ],
        }
    ]


def test_default_cell_cap_with_partial_limits(execute):
    items = execute("print('x' * 500_100)", limits={"timeout_ms_per_cell": 20000})
    assert items[0]["text"] == [
        "Output truncated since it exceeded the cell output limit of 500000 characters"
    ]
    assert len(items) == 1

    items = execute("print('x' * 500_100)")
    assert items == [{"name": "stdout", "text": "x" * 500_100 + "\n"}]


def test_cell_cap_notices_keep_errors(execute):
    code = "for i in range(4):\n    print('x' * 100, flush=True)\n1/0"
    items = execute(code, limits={"max_output_per_cell": 200})
    notice = {
        "name": "stdout",
        "output_type": "stream",
        "text": [
            "Output truncated since it exceeded the cell output limit of 200 characters"
        ],
    }
    assert items[0] == {"name": "stdout", "text": "x" * 100 + "\n"}
    assert items[-1]["ename"] == "ZeroDivisionError"
    assert len(items) >= 3
    assert all(item == notice for item in items[1:-1])


def test_global_cap_notice(execute):
    code = "for i in range(3):\n    print('y' * 100, flush=True)"
    items = execute(code, limits={"max_output_per_cell": 0, "max_output": 150})
    assert items[0] == {"name": "stdout", "text": "y" * 100 + "\n"}
    assert items[1]["text"] == [
        "Output truncated since it exceeded the global output limit of 150 characters"
    ]
    assert items[1]["output_type"] == "stream"


def test_history_output_not_counted_for_input(execute):
    items = execute(
        "print('z' * 100)",
        history=["print('h' * 1000)"],
        limits={"max_output_per_cell": 500, "max_output": 500},
    )
    assert items == [{"name": "stdout", "text": "z" * 100 + "\n"}]


def test_timeout_interrupts_run(execute):
    started = time.monotonic()
    items = execute("import time\ntime.sleep(30)", limits={"timeout_ms_per_cell": 500})
    assert items[-1]["ename"] == "KeyboardInterrupt"
    assert not any("Timeout" in json.dumps(item) for item in items)
    assert time.monotonic() - started < 10


def test_timeout_kills_kernel_that_ignores_sigint(execute):
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "time.sleep(60)"
    )
    started = time.monotonic()
    with pytest.raises(MethodError) as raised:
        execute(code, limits={"timeout_ms_per_cell": 300})
    assert raised.value.text.startswith("Error: Kernel last exited with code 137.")
    # Three SIGINTs 1, 1.3 and 1.69 s apart come before the SIGKILL.
    assert 3.5 < time.monotonic() - started < 15


def test_history_has_its_own_timeout(execute):
    items = execute(
        "print('input ran')",
        history=["import time", "time.sleep(30)"],
        limits={"timeout_ms_per_cell": 500},
    )
    assert items == [{"name": "stdout", "text": "input ran\n"}]


def test_total_time_budget_exceeded(execute):
    start_time = time.time() * 1000 - 5000
    with pytest.raises(MethodError) as raised:
        execute("1", limits={"timeout_ms": 2000, "start_time": start_time})
    assert raised.value.text == "Error: Total time limit (=2 seconds) exceeded"


def test_total_time_budget_without_start_time(execute):
    assert execute("1", limits={"timeout_ms": 1}) == [{"data": {"text/plain": "1"}}]


def test_process_limits_in_kernel(execute):
    code = (
        "import resource\n"
        f"names = {list(KERNEL_RLIMITS)}\n"
        "print([resource.getrlimit(getattr(resource, n)) for n in names])"
    )
    limits = json.loads(stdout_text(execute(code)).replace("(", "[").replace(")", "]"))
    for (name, value), (soft, hard) in zip(KERNEL_RLIMITS.items(), limits):
        _, our_hard = resource.getrlimit(getattr(resource, name))
        expected = value if our_hard == resource.RLIM_INFINITY else min(value, our_hard)
        assert soft == expected, name
        assert hard == expected, name


# Errors


def test_unknown_kernel(execute):
    with pytest.raises(MethodError) as raised:
        execute("1", kernel="nope")
    text = raised.value.text
    assert text.startswith(
        "Error: **Unable to Spawn Jupyter Kernel:**\n\nNo spec available for kernel "
        '"nope".  Available specs: ['
    )
    assert '"python3"' in text
    assert "jupyter console --kernel=nope" in text


def test_kernel_exiting_at_start(execute):
    with pytest.raises(MethodError) as raised:
        execute("1", kernel="exits-at-start", pool={"size": 0})
    text = raised.value.text
    assert text.startswith("Error: **Unable to Spawn Jupyter Kernel:**\n\n")
    assert "Kernel last exited with code 3." in text
    assert "broken kernel" in text
    assert "jupyter console --kernel=exits-at-start" in text


def test_kernel_binary_missing(execute):
    with pytest.raises(MethodError) as raised:
        execute("1", kernel="missing-binary", pool={"size": 0})
    assert raised.value.text.startswith("Error: **Unable to Spawn Jupyter Kernel:**")
    assert "/nonexistent/kernel-binary" in raised.value.text


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"input": None}, "input must be a string"),
        ({"kernel": ""}, "kernel must be a kernel spec name"),
        ({"history": "a = 1"}, "history must be a list of strings"),
        ({"path": 3}, "path must be a directory"),
        ({"pool": {"size": -1}}, "pool.size must be an integer of 0 or more"),
        ({"pool": {"size": 1000}}, "pool.size must be at most"),
        ({"limits": {"timeout_ms_per_cell": "1s"}}, "limits.timeout_ms_per_cell"),
    ],
)
def test_invalid_arguments(loop, service, home, options, fragment):
    arguments = {
        "project_id": PROJECT,
        "home": home,
        "kernel": "python3",
        "input": "1",
        "history": None,
        "path": None,
        "pool": None,
        "limits": None,
    }
    arguments.update(options)
    with pytest.raises(MethodError) as raised:
        run(loop, service.execute(**arguments))
    assert raised.value.text.startswith("Error: ")
    assert fragment in raised.value.text


# Kernel specs


def test_kernel_specs_shape(service):
    specs = {spec["name"]: spec for spec in service.kernel_specs()}
    python = specs["python3"]
    assert python["language"] == "python"
    assert python["display_name"]
    assert isinstance(python["argv"], list)
    assert python["env"] == {}
    assert isinstance(python["metadata"], dict)
    assert Path(python["resource_dir"]).is_dir()
    assert specs["python3-gap"]["language"] == "gap"


# Pools, running kernels and stopping


def test_pool_reuses_prestarted_kernels(loop, service, execute):
    project = "pool-project"
    execute("1", project_id=project)
    wait_until(loop, lambda: len(service.running_kernels(project)) == 2)
    spares = service.running_kernels(project)
    for entry in spares:
        assert entry["kernel_name"] == "python3"
        assert Path(entry["connectionFile"]).is_file()

    items = execute("import os; os.getpid()", project_id=project)
    used_pid = int(items[0]["data"]["text/plain"])

    assert used_pid in {entry["pid"] for entry in spares}
    assert not is_alive(used_pid)
    assert used_pid not in {entry["pid"] for entry in service.running_kernels(project)}


def test_pool_size_zero_starts_kernel_per_call(loop, service, execute):
    project = "fresh-project"
    pids = set()
    for _ in range(2):
        items = execute("import os; os.getpid()", project_id=project, pool={"size": 0})
        pids.add(int(items[0]["data"]["text/plain"]))
        assert service.running_kernels(project) == []
    assert len(pids) == 2
    assert not any(is_alive(pid) for pid in pids)


def test_concurrent_calls_get_separate_kernels(loop, service, home):
    async def call(value: int) -> list[dict]:
        return await service.execute(
            project_id=PROJECT,
            home=home,
            kernel="python3",
            input=(
                f"import os, time\nshared = {value}\n"
                "time.sleep(0.5)\n(os.getpid(), shared)"
            ),
            history=None,
            path=None,
            pool=None,
            limits=None,
        )

    async def both() -> list[list[dict]]:
        return await asyncio.gather(call(1), call(2))

    first, second = run(loop, both())
    first_pid, first_value = ast.literal_eval(first[0]["data"]["text/plain"])
    second_pid, second_value = ast.literal_eval(second[0]["data"]["text/plain"])
    assert first_pid != second_pid
    assert (first_value, second_value) == (1, 2)


def test_idle_pool_shrinks_to_one(loop, service, execute):
    project = "idle-project"
    execute("1", project_id=project, pool={"size": 2, "timeout_s": 4})
    wait_until(loop, lambda: len(service.running_kernels(project)) == 2)
    wait_until(loop, lambda: len(service.running_kernels(project)) == 1, timeout_s=10)
    run(loop, asyncio.sleep(1.0))
    assert len(service.running_kernels(project)) == 1


def test_stop_kernel(loop, service, execute):
    project = "stop-kernel-project"
    execute("1", project_id=project, pool={"size": 1})
    wait_until(loop, lambda: len(service.running_kernels(project)) == 1)
    spare_pid = service.running_kernels(project)[0]["pid"]

    assert run(loop, service.stop_kernel("other-project", spare_pid)) == {
        "success": False
    }
    assert run(loop, service.stop_kernel(project, os.getpid())) == {"success": False}
    assert is_alive(spare_pid)

    assert run(loop, service.stop_kernel(project, spare_pid)) == {"success": True}
    assert not is_alive(spare_pid)
    assert spare_pid not in {k["pid"] for k in service.running_kernels(project)}

    # The next call must not pick up the stopped kernel.
    assert execute("2", project_id=project, pool={"size": 1}) == [
        {"data": {"text/plain": "2"}}
    ]


def test_stop_kernel_in_use_fails_its_call(loop, service, home):
    project = "busy-kernel-project"
    marker = home / "busy-kernel-started"

    async def stop_while_running() -> None:
        call = asyncio.ensure_future(
            service.execute(
                project_id=project,
                home=home,
                kernel="python3",
                input=sleep_after_marker(marker),
                history=None,
                path=None,
                pool={"size": 0},
                limits=None,
            )
        )
        await wait_for_file(marker)
        pid = service.running_kernels(project)[0]["pid"]
        assert await service.stop_kernel(project, pid) == {"success": True}
        with pytest.raises(MethodError) as raised:
            await call
        assert raised.value.text.startswith("Error: Kernel last exited with code 137.")
        assert not is_alive(pid)

    run(loop, stop_while_running())


def test_stop_project_kills_spare_and_busy_kernels(loop, service, home, execute):
    project = "stopped-project"
    marker = home / "stopped-project-started"
    execute("1", project_id=project, pool={"size": 1})
    wait_until(loop, lambda: len(service.running_kernels(project)) == 1)

    async def stop_while_running() -> list[int]:
        call = asyncio.ensure_future(
            service.execute(
                project_id=project,
                home=home,
                kernel="python3",
                input=sleep_after_marker(marker),
                history=None,
                path=None,
                pool={"size": 1},
                limits=None,
            )
        )
        await wait_for_file(marker)
        pids = [entry["pid"] for entry in service.running_kernels(project)]
        await service.stop_project(project)
        with pytest.raises(MethodError) as raised:
            await call
        assert "Kernel last exited with code" in raised.value.text
        return pids

    pids = run(loop, stop_while_running())
    assert pids
    assert service.running_kernels(project) == []
    assert not any(is_alive(pid) for pid in pids)


def test_close_leaves_no_processes_files_or_tasks(home, jupyter_path):
    loop = asyncio.new_event_loop()
    try:
        service = JupyterService()
        service.pool_start_stagger_s = 1.0
        fds_before = psutil.Process().num_fds()
        run(
            loop,
            service.execute(
                project_id=PROJECT,
                home=home,
                kernel="python3",
                input="1",
                history=None,
                path=None,
                pool={"size": 2},
                limits=None,
            ),
        )
        wait_until(loop, lambda: len(service.running_kernels(PROJECT)) == 2)
        entries = service.running_kernels(PROJECT)
        runtime_dir = Path(entries[0]["connectionFile"]).parent

        run(loop, service.close())

        assert not any(is_alive(entry["pid"]) for entry in entries)
        assert not runtime_dir.exists()
        assert psutil.Process().num_fds() <= fds_before
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        assert pending == []
        with pytest.raises(MethodError):
            run(
                loop,
                service.execute(
                    project_id=PROJECT,
                    home=home,
                    kernel="python3",
                    input="1",
                    history=None,
                    path=None,
                    pool=None,
                    limits=None,
                ),
            )
    finally:
        loop.close()

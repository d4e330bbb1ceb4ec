"""The methods served by a project (``POST /api/conat/project``).

Each method receives the running project and the ``args`` list of the request. CoCalc
spreads that list into positional parameters, and most methods read one options
object from ``args[0]``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal as signal_module
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cocalc_magics.server import processes
from cocalc_magics.server.errors import MethodError, not_implemented
from cocalc_magics.server.execution import parse_exec_options, run_blocking
from cocalc_magics.server.files import ProjectFiles
from cocalc_magics.server.projects import VERSION, ProjectRuntime

logger = logging.getLogger(__name__)

Method = Callable[[ProjectRuntime, list], Awaitable[Any]]

# Methods a CoCalc project serves that this server does not provide.
NOT_PROVIDED = {
    "system.configuration",
    "system.terminate",
    "editor.jupyterKernelLogo",
    "editor.jupyterRunNotebook",
    "editor.jupyterNbconvert",
    "editor.jupyterStripNotebook",
    "editor.formatterString",
    "editor.printSageWS",
    "editor.createTerminalService",
    "sync.close",
}


def options(name: str, args: list, example: str) -> dict[str, Any]:
    """Return ``args[0]`` when it is an options object, else raise a clear error."""
    if args and isinstance(args[0], dict):
        return args[0]
    raise MethodError.thrown(
        f"{name} expects one options object as its first argument, e.g. {example}"
    )


def now_ms() -> int:
    return int(time.time() * 1000)


async def system_ping(runtime: ProjectRuntime, args: list) -> Any:
    return {"now": now_ms()}


async def system_test(runtime: ProjectRuntime, args: list) -> Any:
    # The bridge has put the target project_id into args[0].
    opts = args[0] if args and isinstance(args[0], dict) else {}
    return {
        "project_id": opts.get("project_id", runtime.project_id),
        "server_time": now_ms(),
    }


async def system_version(runtime: ProjectRuntime, args: list) -> Any:
    return VERSION


async def system_exec(runtime: ProjectRuntime, args: list) -> Any:
    opts = options("system.exec", args, '[{"command": "ls", "args": ["-la"]}]')
    if opts.get("async_get") is not None:
        return await runtime.jobs.poll(opts)

    spec = parse_exec_options(opts, runtime.home)
    env = runtime.environment(spec.env)
    quotas = runtime.enforced_quotas()
    if spec.async_call:
        return await runtime.jobs.start(spec, env, quotas)
    return await run_blocking(spec, env, quotas, runtime.sessions)


async def system_signal(runtime: ProjectRuntime, args: list) -> Any:
    """Send a signal to processes of this project; a negative pid means its group."""
    opts = options("system.signal", args, '[{"signal": 15, "pid": 1234}]')
    signum = opts.get("signal", signal_module.SIGTERM)
    if not isinstance(signum, int) or isinstance(signum, bool) or signum < 0:
        raise MethodError.thrown(f"signal must be a signal number, not {signum!r}")
    if "pids" in opts:
        pids = opts["pids"]
    elif "pid" in opts:
        pids = [opts["pid"]]
    else:
        raise MethodError.thrown("system.signal needs 'pid' or 'pids'")
    if not isinstance(pids, list) or not all(
        isinstance(pid, int) and not isinstance(pid, bool) and pid != 0 for pid in pids
    ):
        raise MethodError.thrown("'pids' must be a list of non-zero process ids")

    allowed = set(runtime.sessions)
    if runtime.manager.jupyter_loaded:
        kernels = runtime.manager.jupyter_service().running_kernels(runtime.project_id)
        allowed.update(kernel["pid"] for kernel in kernels)
    for pid in pids:
        send_signal(runtime, pid, signum, allowed)
    return None


def send_signal(
    runtime: ProjectRuntime, pid: int, signum: int, allowed: set[int]
) -> None:
    target = abs(pid)
    if not processes.belongs_to(target, runtime.tag, allowed):
        if not process_exists(target):
            # A process that already ended is not an error, as in CoCalc.
            return
        raise MethodError.thrown(
            f"process {target} is not a process of project {runtime.project_id}; "
            "only processes started in this project can be signalled"
        )
    try:
        if pid < 0:
            os.killpg(target, signum)
        else:
            os.kill(target, signum)
    except ProcessLookupError:
        return
    logger.info("sent signal %s to %s in project %s", signum, pid, runtime.project_id)


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def files_of(runtime: ProjectRuntime) -> ProjectFiles:
    return ProjectFiles(runtime.home)


async def system_listing(runtime: ProjectRuntime, args: list) -> Any:
    opts = options("system.listing", args, '[{"path": "", "hidden": false}]')
    return files_of(runtime).listing(opts.get("path", ""), bool(opts.get("hidden")))


async def system_read_text(runtime: ProjectRuntime, args: list) -> Any:
    opts = options("system.readTextFileFromProject", args, '[{"path": "a.txt"}]')
    return files_of(runtime).read_text(opts.get("path"))


async def system_write_text(runtime: ProjectRuntime, args: list) -> Any:
    opts = options(
        "system.writeTextFileToProject", args, '[{"path": "a.txt", "content": "hi"}]'
    )
    files_of(runtime).write_text(opts.get("path"), opts.get("content"))
    return None


async def system_delete_files(runtime: ProjectRuntime, args: list) -> Any:
    opts = options("system.deleteFiles", args, '[{"paths": ["a.txt"]}]')
    files_of(runtime).delete(opts.get("paths"))
    return None


async def system_move_files(runtime: ProjectRuntime, args: list) -> Any:
    opts = options("system.moveFiles", args, '[{"paths": ["a.txt"], "dest": "dir"}]')
    files_of(runtime).move(opts.get("paths"), opts.get("dest"))
    return None


async def system_rename_file(runtime: ProjectRuntime, args: list) -> Any:
    opts = options("system.renameFile", args, '[{"src": "a.txt", "dest": "b.txt"}]')
    files_of(runtime).rename(opts.get("src"), opts.get("dest"))
    return None


async def system_realpath(runtime: ProjectRuntime, args: list) -> Any:
    if not args:
        raise MethodError.thrown('system.realpath expects a path, e.g. ["a/b.txt"]')
    return files_of(runtime).realpath(args[0])


async def system_canonical_paths(runtime: ProjectRuntime, args: list) -> Any:
    if not args:
        raise MethodError.thrown('system.canonicalPaths expects [["a", "b"]]')
    return files_of(runtime).canonical_paths(args[0])


async def editor_new_file(runtime: ProjectRuntime, args: list) -> Any:
    if not args:
        raise MethodError.thrown('editor.newFile expects a path, e.g. ["a.txt"]')
    files_of(runtime).new_file(args[0])
    return None


async def jupyter_execute(runtime: ProjectRuntime, args: list) -> Any:
    opts = options(
        "system.jupyterExecute", args, '[{"kernel": "python3", "input": "1 + 1"}]'
    )
    kernel = opts.get("kernel")
    source = opts.get("input")
    if not isinstance(kernel, str) or not kernel:
        raise MethodError.thrown(
            "system.jupyterExecute needs 'kernel', e.g. \"python3\""
        )
    if not isinstance(source, str):
        raise MethodError.thrown("system.jupyterExecute needs 'input', the code to run")
    service = runtime.manager.jupyter_service()
    return await service.execute(
        project_id=runtime.project_id,
        home=Path(runtime.home),
        kernel=kernel,
        input=source,
        history=opts.get("history"),
        path=opts.get("path"),
        pool=opts.get("pool"),
        limits=opts.get("limits"),
    )


async def list_jupyter_kernels(runtime: ProjectRuntime, args: list) -> Any:
    if not runtime.manager.jupyter_loaded:
        return []
    return runtime.manager.jupyter_service().running_kernels(runtime.project_id)


async def stop_jupyter_kernel(runtime: ProjectRuntime, args: list) -> Any:
    opts = options("system.stopJupyterKernel", args, '[{"pid": 1234}]')
    pid = opts.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool):
        raise MethodError.thrown("system.stopJupyterKernel needs 'pid', a process id")
    if not runtime.manager.jupyter_loaded:
        return {"success": False}
    return await runtime.manager.jupyter_service().stop_kernel(runtime.project_id, pid)


async def jupyter_kernels(runtime: ProjectRuntime, args: list) -> Any:
    service = runtime.manager.jupyter_service()
    return await asyncio.get_running_loop().run_in_executor(None, service.kernel_specs)


METHODS: dict[str, Method] = {
    "system.ping": system_ping,
    "system.test": system_test,
    "system.version": system_version,
    "system.exec": system_exec,
    "system.signal": system_signal,
    "system.listing": system_listing,
    "system.readTextFileFromProject": system_read_text,
    "system.writeTextFileToProject": system_write_text,
    "system.deleteFiles": system_delete_files,
    "system.moveFiles": system_move_files,
    "system.renameFile": system_rename_file,
    "system.realpath": system_realpath,
    "system.canonicalPaths": system_canonical_paths,
    "system.jupyterExecute": jupyter_execute,
    "system.listJupyterKernels": list_jupyter_kernels,
    "system.stopJupyterKernel": stop_jupyter_kernel,
    "editor.jupyterKernels": jupyter_kernels,
    "editor.newFile": editor_new_file,
}


async def call_project_method(runtime: ProjectRuntime, name: str, args: list) -> Any:
    """Run one project method by name."""
    if name == "ping":
        return "pong"
    method = METHODS.get(name)
    if method is None:
        if name in NOT_PROVIDED:
            raise not_implemented(name)
        raise MethodError.thrown(f"unknown function '{name}'")
    return await method(runtime, args)

"""Typed helpers for other project methods: ping, key scope, Jupyter, files.

Every call to the project endpoint starts a stopped project first. Bridge timeouts
(``timeout_ms``) are in milliseconds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from cocalc_magics.api.errors import AuthenticationError, ProtocolError
from cocalc_magics.api.execution import check_strings
from cocalc_magics.api.jupyter_results import JupyterResult, KernelSpec, RunningKernel
from cocalc_magics.api.results import (
    DirEntry,
    KeyScope,
    PingResult,
    expect_dict,
    expect_list,
)
from cocalc_magics.api.transport import DEFAULT_BRIDGE_TIMEOUT_MS

__all__ = ["JUPYTER_TIMEOUT_MS", "ProjectMethods"]

JUPYTER_TIMEOUT_MS = 90_000


class ProjectMethods:
    """Project helpers of :class:`~cocalc_magics.api.Connection`.

    Each helper takes ``project_id`` (default: the connection's project) and
    ``compute_server_id`` (0 is the project itself). Every call to a project starts
    it if it is stopped.
    """

    def ping(
        self, *, project_id: str | None = None, compute_server_id: int = 0
    ) -> PingResult:
        """Call ``system.ping`` on the project and time the round trip."""
        started = time.perf_counter()
        reply = self.project_call(
            "system.ping",
            [],
            project_id=project_id,
            compute_server_id=compute_server_id,
            idempotent=True,
        )
        return PingResult.from_reply(
            reply,
            round_trip_s=time.perf_counter() - started,
            project_id=self._target(project_id),
        )

    def test(self) -> KeyScope:
        """Find out whether the key is an account key or a project-scoped key.

        Calls hub ``system.test`` first. The hub rejects project-scoped keys with
        the same message as invalid ones, so on that message it calls project
        ``system.test`` without a project id, which names the key's project. That
        second call starts the key's project if it is stopped.
        """
        try:
            return self.hub_test()
        except AuthenticationError as error:
            if "must be signed in" not in (error.raw or ""):
                raise

        body = self._build_body(
            "project", "system.test", [], timeout_ms=DEFAULT_BRIDGE_TIMEOUT_MS
        )
        body.pop("project_id", None)
        read_timeout = body["timeout"] / 1000 + self.cold_start_margin
        reply = expect_dict(
            self._send("project", "system.test", body, None, True, read_timeout),
            "system.test",
        )
        return KeyScope(
            kind="project",
            account_id=None,
            project_id=reply.get("project_id"),
            server_time_ms=reply.get("server_time"),
        )

    def jupyter_execute(
        self,
        input: str,
        *,
        kernel: str = "python3",
        history: Sequence[str] | None = None,
        path: str | None = None,
        limits: Mapping[str, Any] | None = None,
        timeout_ms: float = JUPYTER_TIMEOUT_MS,
        project_id: str | None = None,
        compute_server_id: int = 0,
    ) -> JupyterResult:
        """Run *input* on a fresh Jupyter kernel in the project and return its outputs.

        The call is stateless: *history* (earlier inputs, run first as one cell
        whose output is discarded) and *path* (a directory relative to the home
        directory) must be sent every time. *limits* uses CoCalc's keys, for example
        ``timeout_ms_per_cell`` in milliseconds. A remote exception is returned as
        an error output (see :attr:`JupyterResult.error`), not raised.
        """
        if not isinstance(input, str):
            raise TypeError(f"input must be a string, not {type(input).__name__}")
        if not isinstance(kernel, str) or not kernel.strip():
            raise ValueError("kernel must be a non-empty kernel name such as 'python3'")
        options: dict[str, Any] = {"kernel": kernel, "input": input}
        if history is not None:
            options["history"] = check_strings(history, "history")
        if path is not None:
            options["path"] = str(path)
        if limits is not None:
            if not isinstance(limits, Mapping):
                raise TypeError("limits must be a mapping of CoCalc's limit names")
            options["limits"] = dict(limits)

        started = time.perf_counter()
        reply = self.project_call(
            "system.jupyterExecute",
            [options],
            project_id=project_id,
            compute_server_id=compute_server_id,
            timeout_ms=timeout_ms,
        )
        return JupyterResult(
            items=expect_list(reply, "system.jupyterExecute"),
            kernel=kernel,
            project_id=self._target(project_id),
            duration_s=time.perf_counter() - started,
        )

    def running_kernels(
        self, *, project_id: str | None = None, compute_server_id: int = 0
    ) -> list[RunningKernel]:
        """List the kernel processes the project started (system.listJupyterKernels)."""
        reply = self.project_call(
            "system.listJupyterKernels",
            [],
            project_id=project_id,
            compute_server_id=compute_server_id,
            idempotent=True,
        )
        entries = expect_list(reply, "system.listJupyterKernels")
        return [RunningKernel.from_reply(e) for e in entries if isinstance(e, dict)]

    def stop_kernel(
        self, pid: int, *, project_id: str | None = None, compute_server_id: int = 0
    ) -> bool:
        """Kill a kernel the project started; return False if it did not start *pid*."""
        reply = self.project_call(
            "system.stopJupyterKernel",
            [{"pid": pid}],
            project_id=project_id,
            compute_server_id=compute_server_id,
        )
        return bool(expect_dict(reply, "system.stopJupyterKernel").get("success"))

    def kernel_specs(
        self, *, project_id: str | None = None, compute_server_id: int = 0
    ) -> list[KernelSpec]:
        """List the kernels installed in the project (``editor.jupyterKernels``)."""
        reply = self.project_call(
            "editor.jupyterKernels",
            [],
            project_id=project_id,
            compute_server_id=compute_server_id,
            idempotent=True,
        )
        return [
            KernelSpec.from_reply(spec)
            for spec in expect_list(reply, "editor.jupyterKernels")
        ]

    def listing(
        self,
        path: str = "",
        *,
        hidden: bool = False,
        project_id: str | None = None,
        compute_server_id: int = 0,
    ) -> list[DirEntry]:
        """List directory *path*, relative to the home directory (``""`` is home)."""
        reply = self.project_call(
            "system.listing",
            [{"path": path, "hidden": bool(hidden)}],
            project_id=project_id,
            compute_server_id=compute_server_id,
            idempotent=True,
        )
        entries = expect_list(reply, "system.listing")
        return [DirEntry.from_reply(e) for e in entries if isinstance(e, dict)]

    def read_text_file(
        self, path: str, *, project_id: str | None = None, compute_server_id: int = 0
    ) -> str:
        """Return the content of text file *path* in the project."""
        reply = self.project_call(
            "system.readTextFileFromProject",
            [{"path": path}],
            project_id=project_id,
            compute_server_id=compute_server_id,
            idempotent=True,
        )
        if not isinstance(reply, str):
            raise ProtocolError(
                "system.readTextFileFromProject",
                f"expected the file content as a string, got {type(reply).__name__}",
            )
        return reply

    def write_text_file(
        self,
        path: str,
        content: str,
        *,
        project_id: str | None = None,
        compute_server_id: int = 0,
    ) -> None:
        """Write *content* to *path* in the project, creating parent directories.

        The whole content travels in one request, which CoCalc limits to 1 MB. Larger
        content raises :class:`~cocalc_magics.api.errors.RequestTooLargeError`
        before anything is sent.
        """
        if not isinstance(content, str):
            raise TypeError(f"content must be a string, not {type(content).__name__}")
        self.project_call(
            "system.writeTextFileToProject",
            [{"path": path, "content": content}],
            project_id=project_id,
            compute_server_id=compute_server_id,
        )

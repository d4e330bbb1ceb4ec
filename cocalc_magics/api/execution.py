"""Typed helpers for ``system.exec``: blocking runs, async jobs, polling, signals.

Units follow CoCalc: ``system.exec`` takes its ``timeout`` in seconds, while every
bridge timeout (``timeout_ms``) is in milliseconds. Execs always send
``err_on_exit: false`` so that stdout, stderr and the real exit code come back as a
result instead of an error string. Blocking execs also send a finite ``max_output``
so that a chatty command cannot send gigabytes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from cocalc_magics.api.errors import BridgeTimeoutError, CoCalcError, JobNotFoundError
from cocalc_magics.api.results import AsyncJob, ExecResult, format_command

__all__ = [
    "ASYNC_START_TIMEOUT_MS",
    "DEFAULT_MAX_OUTPUT",
    "EXEC_BRIDGE_MARGIN_S",
    "ExecMethods",
    "check_strings",
]

#: Default cap, in characters, on each of stdout and stderr of an exec. It equals
#: CoCalc's own default for async jobs; blocking execs have no cap unless sent one.
DEFAULT_MAX_OUTPUT = 1_048_576
#: Seconds the bridge waits beyond a blocking exec's own timeout, so that CoCalc's
#: "killed command" error arrives before the bridge's 408.
EXEC_BRIDGE_MARGIN_S = 5.0
ASYNC_START_TIMEOUT_MS = 20_000


def _check_seconds(value: Any, name: str, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {value!r}")
    if (
        math.isnan(value)
        or math.isinf(value)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        limit = ">= 0" if allow_zero else "> 0"
        raise ValueError(
            f"{name} must be a finite number of seconds {limit}, not {value!r}"
        )
    return value


def check_strings(values: Any, name: str) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise TypeError(
            f"{name} must be a list of strings, not {type(values).__name__}"
        )
    if not all(isinstance(item, str) for item in values):
        raise TypeError(f"every item of {name} must be a string")
    return list(values)


def _check_env(env: Any) -> dict[str, str]:
    if not isinstance(env, Mapping):
        raise TypeError(f"env must be a mapping of strings, not {type(env).__name__}")
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"env entries must map strings to strings, got {key!r}")
    return dict(env)


def _exec_options(
    command: str,
    args: Sequence[str] | None,
    *,
    bash: bool | None,
    path: str | None,
    cwd: str | None,
    env: Mapping[str, str] | None,
    timeout: float,
    max_output: int | None,
    allow_zero_timeout: bool,
) -> dict:
    """Build ``args[0]`` of ``system.exec``; optional fields are left out, not null."""
    if not isinstance(command, str) or not command.strip():
        raise ValueError("command must be a non-empty string")

    options: dict[str, Any] = {"command": command}
    if args is not None:
        options["args"] = check_strings(args, "args")
    if bash is not None:
        options["bash"] = bool(bash)
    for name, value in (("path", path), ("cwd", cwd)):
        if value is not None:
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a string, not {type(value).__name__}")
            options[name] = value
    if env is not None:
        options["env"] = _check_env(env)

    options["timeout"] = _check_seconds(
        timeout, "timeout", allow_zero=allow_zero_timeout
    )
    if max_output is not None:
        if (
            isinstance(max_output, bool)
            or not isinstance(max_output, int)
            or max_output <= 0
        ):
            raise ValueError(
                f"max_output must be a positive integer, not {max_output!r}"
            )
        options["max_output"] = max_output
    options["err_on_exit"] = False
    return options


def _exec_request(
    command: str,
    args: Sequence[str] | None,
    *,
    async_call: bool,
    **keywords: Any,
) -> tuple[dict, int]:
    """Return ``args[0]`` of ``system.exec`` and the bridge timeout in ms."""
    options = _exec_options(command, args, allow_zero_timeout=async_call, **keywords)
    if async_call:
        options["async_call"] = True
        return options, ASYNC_START_TIMEOUT_MS
    return options, math.ceil((options["timeout"] + EXEC_BRIDGE_MARGIN_S) * 1000)


class ExecMethods:
    """Exec helpers of :class:`~cocalc_magics.api.Connection`.

    Each helper takes ``project_id`` (default: the connection's project) and
    ``compute_server_id`` (0 is the project itself).
    """

    def describe_exec(
        self,
        command: str,
        args: Sequence[str] | None = None,
        *,
        async_call: bool = False,
        bash: bool | None = None,
        path: str | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        max_output: int | None = DEFAULT_MAX_OUTPUT,
        project_id: str | None = None,
        compute_server_id: int = 0,
    ) -> dict:
        """Return the request that :meth:`exec` would send, with the key masked.

        Nothing is sent. The options are checked exactly as :meth:`exec` checks
        them, so a dry run fails where the real call would.

        Parameters
        ----------
        command, args, bash, path, cwd, env, timeout, max_output
            As for :meth:`exec`. Note that ``max_output`` defaults to
            :data:`DEFAULT_MAX_OUTPUT` here as in :meth:`exec`; pass ``None`` to
            describe :meth:`exec_async` with CoCalc's own default.
        async_call : bool
            Describe the start request of :meth:`exec_async` instead: it adds
            ``async_call: true``, allows ``timeout=0`` and has a fixed bridge
            timeout.

        Returns
        -------
        dict
            ``method``, ``url``, ``headers`` (with ``Authorization`` masked),
            ``json`` (the body) and ``timeout_s``, as :meth:`describe_request`
            returns them.

        Examples
        --------
        >>> request = cocalc.describe_exec("make -j2", timeout=30)  # doctest: +SKIP
        >>> request["json"]["args"][0]["timeout"], request["json"]["timeout"]
        (30, 35000)
        """
        options, bridge_ms = _exec_request(
            command,
            args,
            bash=bash,
            path=path,
            cwd=cwd,
            env=env,
            timeout=timeout,
            max_output=max_output,
            async_call=async_call,
        )
        return self.describe_request(
            "project",
            "system.exec",
            [options],
            project_id=project_id,
            compute_server_id=compute_server_id,
            timeout_ms=bridge_ms,
        )

    def exec(
        self,
        command: str,
        args: Sequence[str] | None = None,
        *,
        bash: bool | None = None,
        path: str | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        max_output: int | None = DEFAULT_MAX_OUTPUT,
        project_id: str | None = None,
        compute_server_id: int = 0,
    ) -> ExecResult:
        """Run *command* in the project and wait for it to finish.

        The whole run takes one HTTP request. For commands that may run longer than
        about a minute, prefer :meth:`exec_async` and poll, because proxies in front
        of a site may cut requests that stay open long.

        Parameters
        ----------
        command : str
            Program to run, or a bash script. With no *args*, a command containing
            whitespace runs under bash (CoCalc switches bash mode on by itself).
        args : list of str, optional
            Arguments passed without a shell.
        bash : bool, optional
            Force bash mode on or off; left out of the request when None.
        path, cwd : str, optional
            Working directory: *path* relative to the home directory, *cwd* an
            absolute path that overrides *path*.
        env : mapping, optional
            Variables added to the project's environment.
        timeout : float
            Wall-clock limit in seconds; CoCalc kills the process group after it.
            The bridge timeout is set :data:`EXEC_BRIDGE_MARGIN_S` seconds higher.
        max_output : int, optional
            Cap in characters on each of stdout and stderr.

        Returns
        -------
        ExecResult
            Also for a non-zero exit code: check ``result.ok``.

        Raises
        ------
        ExecTimeoutError
            The command ran past *timeout* and was killed.
        CoCalcError
            Any other failure. An exec is never retried automatically.
        """
        options, bridge_ms = _exec_request(
            command,
            args,
            bash=bash,
            path=path,
            cwd=cwd,
            env=env,
            timeout=timeout,
            max_output=max_output,
            async_call=False,
        )
        started = time.perf_counter()
        reply = self.project_call(
            "system.exec",
            [options],
            project_id=project_id,
            compute_server_id=compute_server_id,
            timeout_ms=bridge_ms,
        )
        return ExecResult.from_reply(
            reply,
            command=format_command(command, args),
            project_id=self._target(project_id),
            duration_s=time.perf_counter() - started,
        )

    def exec_async(
        self,
        command: str,
        args: Sequence[str] | None = None,
        *,
        bash: bool | None = None,
        path: str | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        max_output: int | None = None,
        project_id: str | None = None,
        compute_server_id: int = 0,
    ) -> AsyncJob:
        """Start *command* as an async job and return its record at once.

        Parameters are as for :meth:`exec`, except that ``timeout`` may be 0 for no
        limit and ``max_output`` defaults to CoCalc's own 1048576 characters. Poll
        the job with :meth:`async_get`. The start is never retried automatically,
        so a failed start cannot leave two copies running.
        """
        options, bridge_ms = _exec_request(
            command,
            args,
            bash=bash,
            path=path,
            cwd=cwd,
            env=env,
            timeout=timeout,
            max_output=max_output,
            async_call=True,
        )
        reply = self.project_call(
            "system.exec",
            [options],
            project_id=project_id,
            compute_server_id=compute_server_id,
            timeout_ms=bridge_ms,
        )
        return AsyncJob.from_reply(
            reply,
            project_id=self._target(project_id),
            command=format_command(command, args),
        )

    def async_get(
        self,
        job_id: str,
        *,
        wait: bool = False,
        stats: bool = False,
        wait_timeout: float = 30.0,
        project_id: str | None = None,
        compute_server_id: int = 0,
    ) -> AsyncJob:
        """Return the current record of async job *job_id*.

        Parameters
        ----------
        wait : bool
            Hold the request until the job ends, for at most *wait_timeout* seconds
            (the bridge timeout). If the bridge gives up first (408), the job's
            current record is fetched with an ordinary poll and returned.
        stats : bool
            Include the CPU and memory samples.

        Raises
        ------
        JobNotFoundError
            The project has no record of the job (expired, evicted or restarted).
        """
        if not isinstance(job_id, str) or not job_id:
            raise ValueError("job_id must be a non-empty string")
        options: dict[str, Any] = {"async_get": job_id}
        if stats:
            options["async_stats"] = True
        call = {
            "project_id": project_id,
            "compute_server_id": compute_server_id,
            "idempotent": True,
        }

        seconds = None
        if wait:
            seconds = _check_seconds(wait_timeout, "wait_timeout", allow_zero=False)

        try:
            reply = self._poll_job(options, seconds, call)
        except JobNotFoundError:
            raise
        except CoCalcError as error:
            # A failed poll does not affect the job, so tell the caller how to
            # reattach to it.
            error.job_id = job_id
            error.hint = (
                f"{error.hint} The job {job_id} is not affected by this failure; "
                f"poll it again with async_get({job_id!r})."
            ).strip()
            raise
        return AsyncJob.from_reply(reply, project_id=self._target(project_id))

    def _poll_job(self, options: dict, wait_s: float | None, call: dict) -> Any:
        if wait_s is None:
            return self.project_call("system.exec", [options], **call)
        try:
            return self.project_call(
                "system.exec",
                [{**options, "async_await": True}],
                timeout_ms=math.ceil(wait_s * 1000),
                **call,
            )
        except BridgeTimeoutError:
            return self.project_call("system.exec", [options], **call)

    def signal(
        self,
        pid: int,
        signal: int = 15,
        *,
        group: bool = True,
        project_id: str | None = None,
        compute_server_id: int = 0,
    ) -> None:
        """Send *signal* to process *pid* in the project.

        With ``group=True`` the negated pid is sent, which reaches the whole process
        group: an async job's pid leads the group of every process it started. A
        job killed this way later reports ``status "completed"`` with exit code 0.
        """
        for name, value in (("pid", pid), ("signal", signal)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        self.project_call(
            "system.signal",
            [{"signal": signal, "pid": -pid if group else pid}],
            project_id=project_id,
            compute_server_id=compute_server_id,
        )

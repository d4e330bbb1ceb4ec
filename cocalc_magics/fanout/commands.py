"""The fan-out operations users call: exec, start, stop, status, and retry.

Each function resolves *projects* (see :func:`~cocalc_magics.fanout.resolve_projects`),
runs one operation in every project with bounded concurrency, shows a live status
grid, and returns a :class:`~cocalc_magics.fanout.FanoutResult` with one row per
project in the given order. With ``dry_run=True`` nothing runs: the return value
is a :class:`~cocalc_magics.fanout.FanoutPlan` saying how many projects would be
touched and how many would have to be started.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cocalc_magics.api import DEFAULT_MAX_OUTPUT
from cocalc_magics.fanout.plan import FanoutPlan, plan_fanout
from cocalc_magics.fanout.results import FanoutResult, Operation
from cocalc_magics.fanout.runner import DEFAULT_TIMEOUT_S, run_fanout
from cocalc_magics.fanout.targets import ProjectTarget

if TYPE_CHECKING:
    from cocalc_magics.api import Connection

__all__ = ["exec_many", "retry_failed", "start_many", "status_many", "stop_many"]

# Keyword arguments of the runner and of plan_fanout, as opposed to options of the
# operation itself.
_RUN_OPTIONS = frozenset(
    {
        "concurrency",
        "start_timeout",
        "max_rate",
        "pacer",
        "display",
        "refresh_interval",
        "interrupt_grace",
    }
)
_PLAN_OPTIONS = frozenset({"concurrency", "max_rate", "pacer"})


def exec_many(
    connection: Connection,
    projects: Any,
    command: str,
    *,
    path: str | None = None,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    max_output: int = DEFAULT_MAX_OUTPUT,
    start_stopped: bool = True,
    dry_run: bool = False,
    **options: Any,
) -> FanoutResult | FanoutPlan:
    """Run the bash script *command* in every project.

    Parameters
    ----------
    connection : Connection
    projects
        Project ids, project objects, ``@FILE`` or ``title:TEXT``.
    command : str
        A bash script, run with ``bash`` in each project's home (or *path*/*cwd*).
    path, cwd, env
        As for :meth:`Connection.exec`.
    timeout : float
        Seconds the command may run in each project; the project kills its process
        group after that. Starting a stopped project does not count against it.
    max_output : int
        Cap in characters on each of stdout and stderr per project.
    start_stopped : bool
        Start projects that are not running (hub ``projects.start``) before the
        exec; when False their rows fail instead.
    dry_run : bool
        Only read the projects' states and return a :class:`FanoutPlan`.
    **options
        ``concurrency`` (default 10), ``start_timeout`` (seconds, default 150),
        ``max_rate`` (requests per second, default 50, None for no limit),
        ``display`` (``"auto"``, ``"widget"``, ``"html"``, ``"text"``, ``"none"``),
        ``refresh_interval`` and ``interrupt_grace`` (seconds).

    Raises
    ------
    FanoutInterrupted
        On Ctrl-C; its ``result`` has the rows so far and its message names any
        job left running.
    """
    if not isinstance(command, str) or not command.strip():
        raise ValueError("the command to run in every project is empty")
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or timeout <= 0
    ):
        raise ValueError(
            f"timeout must be a number of seconds above 0, not {timeout!r}"
        )
    operation = Operation(
        "exec",
        command,
        {
            "path": path,
            "cwd": cwd,
            "env": dict(env) if env is not None else None,
            "timeout": float(timeout),
            "max_output": max_output,
            "start_stopped": bool(start_stopped),
        },
    )
    return _run(connection, projects, operation, dry_run, options)


def start_many(
    connection: Connection, projects: Any, *, dry_run: bool = False, **options: Any
) -> FanoutResult | FanoutPlan:
    """Start every project that is not running and wait until each one runs."""
    return _run(connection, projects, Operation("start"), dry_run, options)


def stop_many(
    connection: Connection, projects: Any, *, dry_run: bool = False, **options: Any
) -> FanoutResult | FanoutPlan:
    """Stop every project (their processes, kernels and async jobs end)."""
    return _run(connection, projects, Operation("stop"), dry_run, options)


def status_many(connection: Connection, projects: Any, **options: Any) -> FanoutResult:
    """Read every project's run state through the hub, without starting any."""
    return _run(connection, projects, Operation("status"), False, options)


def retry_failed(
    previous: FanoutResult,
    connection: Connection | None = None,
    *,
    include_cancelled: bool = True,
    **options: Any,
) -> FanoutResult:
    """Run the operation of *previous* again in its failed (and cancelled) projects.

    Parameters
    ----------
    previous : FanoutResult
        An earlier result; its operation and, by default, its connection are used.
    connection : Connection, optional
        Overrides the connection of *previous*.
    include_cancelled : bool
        Also rerun projects that were cancelled by Ctrl-C.
    **options
        Runner options as for :func:`exec_many` (``concurrency``, ``display``, ...)
        and, for exec, new values of ``timeout``, ``path``, ``cwd``, ``env``,
        ``max_output`` or ``start_stopped``.

    Returns
    -------
    FanoutResult
        Rows of the retried projects only; ``previous.merged(new)`` gives the
        whole class again. Empty when nothing had failed.
    """
    connection = connection or previous.connection
    if connection is None:
        raise ValueError("retry_failed needs a connection: pass connection=...")

    failed = previous.failed(include_cancelled=include_cancelled)
    run_options = {k: v for k, v in options.items() if k in _RUN_OPTIONS}
    changed = {k: v for k, v in options.items() if k not in _RUN_OPTIONS}
    operation = previous.operation
    if changed:
        unknown = set(changed) - set(operation.options)
        if unknown:
            raise TypeError(
                f"retry_failed got unknown option(s) {', '.join(sorted(unknown))} "
                f"for a {operation.kind} operation"
            )
        operation = Operation(
            operation.kind, operation.command, {**operation.options, **changed}
        )

    if not failed.rows:
        return FanoutResult([], operation, connection=connection, wall_s=0.0)
    targets = [ProjectTarget(row.project_id, row.title) for row in failed.rows]
    return run_fanout(connection, targets, operation, **run_options)


def _run(
    connection: Connection,
    projects: Any,
    operation: Operation,
    dry_run: bool,
    options: dict[str, Any],
) -> FanoutResult | FanoutPlan:
    unknown = set(options) - _RUN_OPTIONS
    if unknown:
        raise TypeError(f"unknown fan-out option(s): {', '.join(sorted(unknown))}")
    if dry_run:
        plan_options = {k: v for k, v in options.items() if k in _PLAN_OPTIONS}
        return plan_fanout(connection, projects, operation, **plan_options)
    return run_fanout(connection, projects, operation, **options)

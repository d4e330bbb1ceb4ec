"""Run a cell on a remote Jupyter kernel and show its outputs locally.

This is the entry point behind ``%%cocalc_exec --kernel NAME``. It sends the cell
with ``system.jupyterExecute``, with the session's history when a session is named,
and renders what the remote kernel produced. It then records the call in the
session and raises the remote error unless ``no_raise`` is set, so "Run All" stops
where the remote code failed.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from .items import normalize_items
from .render import OutputLimits, plan_outputs, publish_steps, write_stream
from .result import RemoteResult
from .sessions import DEFAULT_TIME_LIMIT_S, Session, SessionKey, SessionStore

logger = logging.getLogger(__name__)

# Bridge timeout of a call: history and input may each use the 30 s per-run limit,
# plus a kernel start on a cold project.
DEFAULT_TIMEOUT_MS = 90_000

# Per-run time limit that the server applies when `limits` is sent without
# `timeout_ms_per_cell`.
LIMITS_DEFAULT_TIME_LIMIT_S = 60.0

_store = SessionStore()
_last_result: RemoteResult | None = None


class JupyterConnection(Protocol):
    """The part of :class:`cocalc_magics.api.Connection` that this module uses."""

    host: str
    project_id: str | None

    def jupyter_execute(
        self,
        input: str,
        *,
        kernel: str = "python3",
        history: list[str] | None = None,
        path: str | None = None,
        limits: dict[str, Any] | None = None,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
    ) -> Any: ...


def run_remote_cell(
    connection: JupyterConnection,
    code: str,
    *,
    kernel: str = "python3",
    session: str | None = None,
    path: str | None = None,
    no_raise: bool = False,
    out: str | None = None,
    namespace: dict[str, Any] | None = None,
    output_limits: OutputLimits | None = None,
    server_limits: dict[str, Any] | None = None,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
    sessions: SessionStore | None = None,
    show: bool = True,
) -> RemoteResult:
    """Run code on a fresh remote kernel and display its outputs here.

    Parameters
    ----------
    connection
        A :class:`cocalc_magics.api.Connection`.
    code
        The cell to run.
    kernel
        Kernel name in the project, for example ``"python3"``.
    session
        Session name. Its earlier successful inputs are replayed first, and this
        input joins them if it succeeds. ``None`` runs the code with no history.
    path
        Working directory for the code, relative to the project's home. It is
        sent on every call because the server keeps no state.
    no_raise
        Print a remote error in place instead of raising it.
    out
        Name under which ``namespace`` receives the result, also when the remote
        code raised. Placeholders of withheld payloads refer to this name.
    namespace
        Where ``out`` is stored, usually the shell's ``user_ns``.
    output_limits
        Size limits for what is sent to the frontend.
    server_limits
        The ``limits`` object of ``system.jupyterExecute``, or ``None`` to send
        none (the server then allows 30 s per run).
    timeout_ms
        Bridge timeout of the call in milliseconds.
    sessions
        Session store, the process-wide one by default.
    show
        Display the outputs. With ``False`` only the result is returned.

    Returns
    -------
    RemoteResult
        Also stored in ``namespace[out]`` and returned by :func:`last_result`.

    Raises
    ------
    RemoteKernelError
        A subclass named after the remote error, when the remote code raised and
        ``no_raise`` is false. Its ``result`` attribute contains the result.
    ValueError
        If ``kernel``, ``session``, ``path`` or ``out`` is invalid.
    cocalc_magics.api.CoCalcError
        If the call itself failed, for example with an unknown kernel name.
    """
    _check_arguments(code, kernel, session, path, out, namespace)
    remote_session = _find_session(connection, kernel, session, sessions)
    if remote_session is not None:
        remote_session.time_limit_s = _time_limit_s(server_limits)
    history = remote_session.history if remote_session else []

    items, duration_s = _call(
        connection,
        code,
        kernel,
        history,
        path,
        server_limits,
        timeout_ms,
        remote_session,
    )
    result = render_outputs(
        items,
        kernel=kernel,
        result_name=out,
        output_limits=output_limits,
        show=show,
        show_errors=no_raise,
        input=code,
        session=session,
        history_length=len(history),
        path=path,
        duration_s=duration_s,
        project_id=getattr(connection, "project_id", None),
    )
    if out is not None and namespace is not None:
        namespace[out] = result

    if remote_session is not None:
        warnings = remote_session.record_call(code, duration_s, result.ok)
        for warning in warnings:
            write_stream("stderr", f"Warning: {warning}\n")
    if not no_raise:
        result.raise_for_error()
    return result


def render_outputs(
    items: list[Any],
    *,
    kernel: str = "",
    result_name: str | None = None,
    output_limits: OutputLimits | None = None,
    show: bool = True,
    show_errors: bool = False,
    **fields: Any,
) -> RemoteResult:
    """Display output items of ``system.jupyterExecute`` and return their result.

    Remote errors are not raised here: call ``result.raise_for_error()``.

    Parameters
    ----------
    items
        The raw output items, with or without ``output_type`` keys.
    kernel
        Kernel name, shown in the header of a remote traceback.
    result_name
        Python expression that names the result for the user, used in the
        placeholders of withheld payloads. Defaults to ``last_result()``.
    output_limits
        Size limits for what is sent to the frontend.
    show
        Display the outputs. With ``False`` only the result is built.
    show_errors
        Print remote errors in place, for callers that do not raise them.
    **fields
        Further :class:`RemoteResult` fields, such as ``input`` or ``duration_s``.

    Returns
    -------
    RemoteResult
        Also returned by :func:`last_result` from now on.
    """
    global _last_result

    normalized = normalize_items(items)
    result = RemoteResult.from_items(items, normalized, kernel=kernel, **fields)
    plan = plan_outputs(normalized, output_limits, result_name=result_name)
    result.withheld = plan.withheld
    _last_result = result

    if show:
        publish_steps(plan.steps, show_errors=show_errors, kernel=kernel)
    return result


def last_result() -> RemoteResult | None:
    """Return the result of the latest remote run in this process, if any."""
    return _last_result


def session_store() -> SessionStore:
    """Return the process-wide session store."""
    return _store


def session_key(connection: JupyterConnection, kernel: str, name: str) -> SessionKey:
    """Build the key of a session of ``connection``'s site and project."""
    site = str(getattr(connection, "host", "") or "")
    project_id = str(getattr(connection, "project_id", "") or "")
    return SessionKey(site, project_id, kernel, name)


def find_sessions(
    connection: JupyterConnection,
    name: str,
    kernel: str | None = None,
    *,
    sessions: SessionStore | None = None,
) -> list[Session]:
    """Return the sessions called ``name`` in the connection's project.

    Parameters
    ----------
    connection
        Connection whose site and project the sessions belong to.
    name
        Session name.
    kernel
        Kernel name, or ``None`` for sessions of every kernel.
    sessions
        Session store, the process-wide one by default.
    """
    key = session_key(connection, kernel or "", name)
    store = sessions or _store
    return store.find(key.site, key.project_id, name, kernel)


def reset_sessions(
    connection: JupyterConnection,
    name: str,
    kernel: str | None = None,
    *,
    sessions: SessionStore | None = None,
) -> int:
    """Reset the sessions called ``name`` in the project; return how many matched."""
    found = find_sessions(connection, name, kernel, sessions=sessions)
    for session in found:
        session.reset()
    return len(found)


def _check_arguments(
    code: Any,
    kernel: Any,
    session: Any,
    path: Any,
    out: Any,
    namespace: Any,
) -> None:
    if not isinstance(code, str):
        raise TypeError(f"The code to run must be a string, not {type(code).__name__}.")
    if not isinstance(kernel, str) or not kernel.strip():
        raise ValueError(
            f"Invalid kernel name {kernel!r}: give the name of a Jupyter kernel in "
            "the project, for example python3."
        )
    if session is not None and (not isinstance(session, str) or not session.strip()):
        raise ValueError(
            f"Invalid session name {session!r}: use a non-empty name, for example "
            "--session analysis."
        )
    if path is not None and not isinstance(path, str):
        raise ValueError(f"Invalid path {path!r}: give a folder relative to the home.")
    if out is not None and not (isinstance(out, str) and out.isidentifier()):
        raise ValueError(
            f"Invalid variable name {out!r} for the result: use a Python identifier."
        )
    if out is not None and namespace is None:
        raise ValueError(f"No namespace given to store the result as {out!r}.")


def _find_session(
    connection: JupyterConnection,
    kernel: str,
    name: str | None,
    sessions: SessionStore | None,
) -> Session | None:
    if name is None:
        return None
    store = sessions or _store
    return store.get(session_key(connection, kernel, name))


def _time_limit_s(server_limits: dict[str, Any] | None) -> float:
    if server_limits is None:
        return DEFAULT_TIME_LIMIT_S
    limit_ms = server_limits.get("timeout_ms_per_cell")
    if limit_ms is None:
        return LIMITS_DEFAULT_TIME_LIMIT_S
    # 0 means no limit on the server, which no replay can reach.
    return float(limit_ms) / 1000 if limit_ms else float("inf")


def _call(
    connection: JupyterConnection,
    code: str,
    kernel: str,
    history: list[str],
    path: str | None,
    server_limits: dict[str, Any] | None,
    timeout_ms: int,
    session: Session | None,
) -> tuple[list[Any], float]:
    started = time.perf_counter()
    try:
        reply = connection.jupyter_execute(
            code,
            kernel=kernel,
            history=history or None,
            path=path,
            limits=server_limits,
            timeout_ms=timeout_ms,
        )
    except Exception:
        if session is not None:
            session.record_call(code, time.perf_counter() - started, ok=False)
        raise
    duration_s = time.perf_counter() - started
    logger.debug(
        "jupyterExecute on %s with %d history inputs took %.2f s",
        kernel,
        len(history),
        duration_s,
    )

    items = reply if isinstance(reply, (list, dict)) else getattr(reply, "items", reply)
    if items is None:
        items = []
    if not isinstance(items, list):
        # A reply of another shape is still shown, as an unknown item.
        items = [items]
    return items, duration_s

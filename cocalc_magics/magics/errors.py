"""Errors the magics raise into the notebook, and how they are shown.

Every class here defines ``_render_traceback_``: IPython and ipykernel then show the
lines it returns instead of a traceback through our modules, the HTTP library and
IPython. The cell still fails, so "Run All", nbconvert and papermill stop there.
``CoCalcMagics.show_tracebacks = True`` re-raises the client's own exception
instead, with its full chain, for debugging.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cocalc_magics.api.errors import CoCalcError


def _short_id(project_id: str | None) -> str:
    return project_id if project_id else "(no project)"


class CoCalcMagicError(Exception):
    """A failure of a CoCalc operation, shown as a message and a hint.

    Parameters
    ----------
    operation
        What was being done, e.g. ``"project exec"`` or ``"projects.start"``.
    message
        What went wrong, one line; never contains the API key.
    hint
        What to do next, or ``None``.
    project_id
        The project involved, if any.
    where
        The site's label, e.g. ``"local server"`` or the host URL.
    """

    def __init__(
        self,
        operation: str,
        message: str,
        *,
        hint: str | None = None,
        project_id: str | None = None,
        where: str | None = None,
    ) -> None:
        self.operation = operation
        self.message = message
        self.hint = hint
        self.project_id = project_id
        self.where = where
        super().__init__(self._headline())

    def _headline(self) -> str:
        parts = []
        if self.project_id:
            parts.append(f"project {_short_id(self.project_id)}")
        if self.where:
            parts.append(f"on {self.where}")
        context = f" ({' '.join(parts)})" if parts else ""
        return f"{self.operation}{context}: {self.message}"

    def _render_traceback_(self) -> list[str]:
        lines = [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self._headline()}"]
        if self.hint:
            lines.append(f"Hint: {self.hint}")
        return lines


class CommandFailedError(CoCalcMagicError):
    """A remote command that ran and exited with a non-zero code.

    Its output was shown before this is raised, and ``result`` contains it in full.
    """

    def __init__(self, result, *, where: str | None = None) -> None:
        self.result = result
        if result.exit_code is not None:
            message = f"the command exited with code {result.exit_code}"
        else:
            # Timed out, killed or lost: the job's summary names which.
            message = f"the command did not complete: {result.summary()}"
        hint = "pass --no-raise to continue after a failing command."
        status = getattr(result, "status", None)
        if status == "timed out":
            hint = "pass a larger --timeout (in seconds), or --no-raise to continue."
        elif status == "failed" and _spawn_missing_file(result):
            message = (
                "the command could not start: its working folder (--path or --cwd) "
                "probably does not exist in the project"
            )
            hint = (
                "--path is relative to the project's home; create the folder with "
                "%cocalc exec -- mkdir -p FOLDER, or fix the option."
            )
        elif status == "lost":
            job = getattr(result, "job", None)
            if job is not None and job.message:
                message = f"{message}: {job.message}"
            hint = (
                "the output shown may be partial; %cocalc job "
                f"{result.job_id} shows what the job ledger kept."
            )
        super().__init__(
            "project exec",
            message,
            hint=hint,
            project_id=result.project_id,
            where=where,
        )


def _spawn_missing_file(result) -> bool:
    # CoCalc spawns bash in the working folder. When the folder is missing, Node
    # reports ENOENT for "spawn bash", which reads as if bash were missing.
    job = getattr(result, "job", None)
    text = (getattr(job, "message", None) or "") + (result.stderr or "")
    return '"code":"ENOENT"' in text and '"syscall":"spawn' in text


def from_client_error(
    error: CoCalcError,
    operation: str,
    *,
    project_id: str | None = None,
    where: str | None = None,
    hint: str | None = None,
) -> CoCalcMagicError:
    """Turn a client error into the one-message form shown in the notebook.

    The client error's text never contains the API key. This adds the operation,
    the project and the site, and keeps the client's hint unless ``hint`` replaces
    it.
    """
    from cocalc_magics.api import ProjectNotRunningError

    message = getattr(error, "message", None) or str(error)
    if isinstance(error, ProjectNotRunningError):
        message = f"the project is not running (server error: {message})"
        hint = hint or (
            "run %cocalc start (or start it in the CoCalc web UI), then run this again."
        )
    return CoCalcMagicError(
        operation,
        message,
        hint=hint or getattr(error, "hint", None),
        project_id=project_id or getattr(error, "project_id", None),
        where=where,
    )


class JobDetached(KeyboardInterrupt):
    """Ctrl-C with ``--detach``: the job keeps running in the project.

    It is a ``KeyboardInterrupt``, so "Run All" stops at the cell as after any
    interrupt.
    """

    def __init__(self, job_id: str, variable: str) -> None:
        self.job_id = job_id
        self.variable = variable
        super().__init__(
            f"detached from job {job_id}; it keeps running (stored in {variable})"
        )

    def _render_traceback_(self) -> list[str]:
        return [
            f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self}",
            (
                f"Hint: %cocalc job {self.job_id[:8]} --wait waits for it; "
                f"%cocalc job {self.job_id[:8]} --kill stops it."
            ),
        ]

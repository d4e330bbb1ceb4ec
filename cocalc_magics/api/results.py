"""Result objects of the project helpers: ping, key scope, exec, async jobs, listing.

Every result is a small dataclass built from the raw reply by a ``from_reply``
class method, with a ``repr`` that shortens long text and an HTML form whose every
value is escaped. Units follow CoCalc's wire format but are named in each field:
``_ms`` for epoch milliseconds, ``_s`` for seconds, ``_mib`` for mebibytes.
"""

from __future__ import annotations

import html
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cocalc_magics.api.errors import ProtocolError

__all__ = [
    "AsyncJob",
    "DirEntry",
    "ExecResult",
    "KeyScope",
    "PingResult",
    "ResultDisplay",
    "StatsSample",
    "expect_dict",
    "expect_list",
    "format_command",
]

_REPR_TEXT_LIMIT = 60
_HTML_TEXT_LIMIT = 10_000

# system.exec appends this to a stream that reached max_output (characters).
_TRUNCATION_SUFFIX = re.compile(r" \(truncated at (\d+) characters\)\Z")


def expect_dict(reply: Any, method: str) -> dict:
    """Return *reply* if it is a JSON object, else raise :class:`ProtocolError`."""
    if not isinstance(reply, dict):
        raise ProtocolError(
            method,
            f"expected a JSON object as the result, got {type(reply).__name__}",
            hint="The server does not follow CoCalc's API for this method.",
        )
    return reply


def expect_list(reply: Any, method: str) -> list:
    """Return *reply* if it is a JSON array, else raise :class:`ProtocolError`."""
    if not isinstance(reply, list):
        raise ProtocolError(
            method,
            f"expected a JSON array as the result, got {type(reply).__name__}",
            hint="The server does not follow CoCalc's API for this method.",
        )
    return reply


def format_command(command: str, args: Sequence[str] | None) -> str:
    """Return the command line as a user would type it, for display only."""
    if not args:
        return command
    return f"{command} {shlex.join(args)}"


def _shorten(value: Any) -> str:
    text = repr(value)
    if isinstance(value, str) and len(text) > _REPR_TEXT_LIMIT:
        return f"{text[: _REPR_TEXT_LIMIT - 4]}…' ({len(value)} chars)"
    return text


class ResultDisplay:
    """Mixin giving results a short ``repr`` and an escaped ``_repr_html_`` table."""

    def _display_fields(self) -> list[tuple[str, Any]]:
        raise NotImplementedError

    def _display_blocks(self) -> list[tuple[str, str]]:
        """Labelled texts (stdout, stderr) shown below the table in HTML."""
        return []

    def __repr__(self) -> str:
        fields_text = ", ".join(
            f"{name}={_shorten(value)}" for name, value in self._display_fields()
        )
        return f"{type(self).__name__}({fields_text})"

    def _repr_html_(self) -> str:
        # Texts shown as <pre> blocks below the table are left out of the table.
        in_blocks = {label for label, _ in self._display_blocks()}
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(name)}</th>"
            f"<td style='text-align:left'>{html.escape(str(value))}</td></tr>"
            for name, value in self._display_fields()
            if value is not None and name not in in_blocks
        )
        title = html.escape(type(self).__name__)
        parts = [f"<div><strong>{title}</strong><table>{rows}</table>"]
        for label, text in self._display_blocks():
            if not text:
                continue
            if len(text) > _HTML_TEXT_LIMIT:
                omitted = len(text) - _HTML_TEXT_LIMIT
                text = f"{text[:_HTML_TEXT_LIMIT]}\n… {omitted} more characters"
            parts.append(
                f"<div>{html.escape(label)}:</div>"
                f"<pre style='white-space:pre-wrap'>{html.escape(text)}</pre>"
            )
        parts.append("</div>")
        return "".join(parts)


@dataclass(repr=False)
class PingResult(ResultDisplay):
    """Result of ``system.ping`` on the hub (``project_id`` None) or a project."""

    now_ms: int | None
    round_trip_s: float
    project_id: str | None = None

    @classmethod
    def from_reply(
        cls, reply: Any, *, round_trip_s: float, project_id: str | None
    ) -> PingResult:
        now = expect_dict(reply, "system.ping").get("now")
        return cls(now_ms=now, round_trip_s=round_trip_s, project_id=project_id)

    def _display_fields(self) -> list[tuple[str, Any]]:
        return [
            ("project_id", self.project_id),
            ("round_trip_s", round(self.round_trip_s, 4)),
            ("now_ms", self.now_ms),
        ]


@dataclass(repr=False)
class KeyScope(ResultDisplay):
    """Scope of an API key: a whole account (``kind="account"``) or one project.

    ``server_time_ms`` is the server clock in epoch milliseconds.
    """

    kind: str
    account_id: str | None
    project_id: str | None
    server_time_ms: int | None

    def _display_fields(self) -> list[tuple[str, Any]]:
        return [
            ("kind", self.kind),
            ("account_id", self.account_id),
            ("project_id", self.project_id),
            ("server_time_ms", self.server_time_ms),
        ]


def _split_truncation(text: str) -> tuple[str, bool]:
    match = _TRUNCATION_SUFFIX.search(text)
    if match is None:
        return text, False
    return text[: match.start()], True


@dataclass(repr=False)
class ExecResult(ResultDisplay):
    """Output of a finished ``system.exec`` command.

    ``stdout`` and ``stderr`` are the text the command printed. CoCalc appends
    ``" (truncated at N characters)"`` to a stream that reached ``max_output``. That
    suffix is removed here, and the ``*_truncated`` flags record it instead.

    NOTE: CoCalc also appends the suffix when a stream is exactly ``max_output``
    characters long, so a flag can be set although nothing was lost.

    A command killed by a signal from elsewhere has ``exit_code`` 0, because CoCalc
    reports no exit code for it.
    """

    stdout: str
    stderr: str
    exit_code: int
    command: str
    project_id: str | None
    duration_s: float
    job_id: str | None = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False

    @property
    def ok(self) -> bool:
        """True when the exit code is 0."""
        return self.exit_code == 0

    @classmethod
    def from_reply(
        cls, reply: Any, *, command: str, project_id: str | None, duration_s: float
    ) -> ExecResult:
        reply = expect_dict(reply, "system.exec")
        stdout, stdout_truncated = _split_truncation(reply.get("stdout") or "")
        stderr, stderr_truncated = _split_truncation(reply.get("stderr") or "")
        return cls(
            stdout=stdout,
            stderr=stderr,
            exit_code=int(reply.get("exit_code") or 0),
            command=command,
            project_id=project_id,
            duration_s=duration_s,
            job_id=reply.get("job_id"),
            stdout_truncated=stdout_truncated,
            stderr_truncated=stderr_truncated,
        )

    def _display_fields(self) -> list[tuple[str, Any]]:
        fields = [
            ("command", self.command),
            ("exit_code", self.exit_code),
            ("stdout", self.stdout),
            ("stderr", self.stderr),
            ("duration_s", round(self.duration_s, 3)),
            ("project_id", self.project_id),
        ]
        if self.job_id:
            fields.append(("job_id", self.job_id))
        if self.stdout_truncated or self.stderr_truncated:
            fields.append(("truncated", self._truncation_note()))
        return fields

    def _truncation_note(self) -> str:
        streams = [
            name
            for name, cut in (
                ("stdout", self.stdout_truncated),
                ("stderr", self.stderr_truncated),
            )
            if cut
        ]
        return " and ".join(streams) + " cut by the server at max_output"

    def _display_blocks(self) -> list[tuple[str, str]]:
        return [("stdout", self.stdout), ("stderr", self.stderr)]


@dataclass(repr=False)
class StatsSample(ResultDisplay):
    """One CPU and memory sample of an async job's process tree."""

    timestamp_ms: int
    mem_rss_mib: float
    cpu_pct: float
    cpu_secs: float

    @classmethod
    def from_reply(cls, sample: dict) -> StatsSample:
        return cls(
            timestamp_ms=sample.get("timestamp", 0),
            mem_rss_mib=float(sample.get("mem_rss", 0.0)),
            cpu_pct=float(sample.get("cpu_pct", 0.0)),
            cpu_secs=float(sample.get("cpu_secs", 0.0)),
        )

    def _display_fields(self) -> list[tuple[str, Any]]:
        return [
            ("timestamp_ms", self.timestamp_ms),
            ("mem_rss_mib", self.mem_rss_mib),
            ("cpu_pct", self.cpu_pct),
            ("cpu_secs", self.cpu_secs),
        ]


@dataclass(repr=False)
class AsyncJob(ResultDisplay):
    """The record of an async ``system.exec`` job, as of the last start or poll.

    ``stdout`` and ``stderr`` are cumulative: each poll returns everything so far.
    ``exit_code`` is None while the job runs, because CoCalc's running value (0)
    means nothing. ``start_ms`` is epoch milliseconds, ``elapsed_s`` seconds (set
    once finished), and ``stats`` only present when requested with ``stats=True``.
    """

    job_id: str
    status: str
    pid: int | None = None
    start_ms: int | None = None
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    elapsed_s: float | None = None
    stats: list[StatsSample] = field(default_factory=list)
    project_id: str | None = None
    command: str | None = None

    @property
    def running(self) -> bool:
        """True while the job's status is ``"running"``."""
        return self.status == "running"

    @classmethod
    def from_reply(
        cls, reply: Any, *, project_id: str | None, command: str | None = None
    ) -> AsyncJob:
        reply = expect_dict(reply, "system.exec")
        job_id = reply.get("job_id")
        if not isinstance(job_id, str) or reply.get("type") not in ("async", None):
            raise ProtocolError(
                "system.exec",
                "the reply is not an async job record (no job_id)",
                hint="The server does not follow CoCalc's async exec protocol.",
                project_id=project_id,
            )
        status = reply.get("status") or "running"
        samples = reply.get("stats") or []
        return cls(
            job_id=job_id,
            status=status,
            pid=reply.get("pid"),
            start_ms=reply.get("start"),
            stdout=reply.get("stdout") or "",
            stderr=reply.get("stderr") or "",
            exit_code=None if status == "running" else reply.get("exit_code"),
            elapsed_s=reply.get("elapsed_s"),
            stats=[StatsSample.from_reply(s) for s in samples if isinstance(s, dict)],
            project_id=project_id,
            command=command,
        )

    def _display_fields(self) -> list[tuple[str, Any]]:
        fields = [
            ("job_id", self.job_id),
            ("status", self.status),
            ("exit_code", self.exit_code),
            ("command", self.command),
            ("pid", self.pid),
            ("elapsed_s", self.elapsed_s),
            ("stdout", self.stdout),
            ("stderr", self.stderr),
            ("project_id", self.project_id),
        ]
        if self.stats:
            last = self.stats[-1]
            fields.append(
                ("last_sample", f"{last.mem_rss_mib} MiB, {last.cpu_pct} % CPU")
            )
        return fields

    def _display_blocks(self) -> list[tuple[str, str]]:
        return [("stdout", self.stdout), ("stderr", self.stderr)]


@dataclass(repr=False)
class DirEntry(ResultDisplay):
    """One entry of ``system.listing``.

    ``size`` is in bytes for files and the number of entries for directories;
    ``mtime_s`` is epoch seconds.
    """

    name: str
    size: int | None
    mtime_s: float | None
    is_dir: bool = False
    is_symlink: bool = False
    link_target: str | None = None
    error: str | None = None

    @classmethod
    def from_reply(cls, entry: dict) -> DirEntry:
        return cls(
            name=entry.get("name", ""),
            size=entry.get("size"),
            mtime_s=entry.get("mtime"),
            is_dir=bool(entry.get("isdir", False)),
            is_symlink=bool(entry.get("issymlink", False)),
            link_target=entry.get("link_target"),
            error=entry.get("error"),
        )

    def _display_fields(self) -> list[tuple[str, Any]]:
        fields = [
            ("name", self.name),
            ("is_dir", self.is_dir),
            ("size", self.size),
            ("mtime_s", self.mtime_s),
        ]
        if self.is_symlink:
            fields.append(("link_target", self.link_target))
        if self.error:
            fields.append(("error", self.error))
        return fields

"""Live views of a job: streamed output in the foreground, one updating display in
the background.

Foreground (the cell waits for the job): each poll writes only the new part of
stdout and stderr to ``sys.stdout`` and ``sys.stderr``, which a notebook shows
as one growing stream output, and a terminal prints as it comes. In a kernel, a
one-line status (elapsed time, latest CPU % and memory) sits in a display with a
``display_id`` and is updated in place.

Background (the cell returns at once): everything goes into one display with a
``display_id``, updated from the watcher thread with ``update_display_data``.
Such updates land in the job's own output, never in the cell that runs at the
time. A stream write from a thread would land in that cell instead, so the
background view never writes to a stream. Terminal IPython and plain Python get a line
when the job starts and one when it ends, as plain text.

Only ``text/plain`` and escaped ``text/html`` are sent, no widgets, so the same
code works without ipywidgets and a saved notebook shows the final state.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from cocalc_magics.jobs.render import (
    OUTPUT_DISPLAY_LIMIT,
    job_html,
    job_text,
    summary_line,
)

if TYPE_CHECKING:
    from cocalc_magics.jobs.job import Job

__all__ = [
    "BackgroundView",
    "ForegroundView",
    "background_view",
    "foreground_view",
    "in_kernel",
]

logger = logging.getLogger(__name__)

#: Bytes of streamed output shown per job; the job object keeps all of it.
DEFAULT_STREAM_BUDGET = 1_000_000
# Characters of each stream in a background display, which is resent on every
# update, so it shows the end of the output only while the job runs.
BACKGROUND_TAIL_CHARS = 2_000


def in_kernel() -> bool:
    """True inside a Jupyter kernel, where displays can be updated in place."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _display(data: dict[str, str], **kwargs: Any) -> Any:
    from IPython.display import display

    return display(data, raw=True, **kwargs)


def _bundle(job: Job, limit: int) -> dict[str, str]:
    return {
        "text/plain": job_text(job, limit=limit),
        "text/html": job_html(job, limit=limit),
    }


class ForegroundView:
    """Streams a job's new output and keeps a status line while the cell waits.

    At most half of ``budget`` is streamed while the job runs (the head). Output
    beyond that is held back, and when the job ends the view writes its last part
    (the tail, up to the other half) after a marker such as
    ``… 1200 lines (48000 bytes) omitted …``. So a flood of output never reaches
    the frontend, yet both ends of it are visible.

    Parameters
    ----------
    job : Job
        The job, used for the first status line.
    budget : int
        Bytes of stdout plus stderr to write in all; the job keeps everything.
    kernel : bool, optional
        Whether to keep an updating status display; detected by default.
    status_delay_s : float
        Seconds the job must run before the status line appears. A job that
        ends sooner shows only its output, like a local command. Outside a
        kernel the final summary line is printed only after such a delay, too.
    """

    def __init__(
        self,
        job: Job,
        *,
        budget: int = DEFAULT_STREAM_BUDGET,
        kernel=None,
        status_delay_s: float = 0.0,
    ):
        self.budget = budget
        self.kernel = in_kernel() if kernel is None else kernel
        self.status_delay_s = status_delay_s
        self._started = time.monotonic()
        self._written = {"stdout": 0, "stderr": 0}
        self._held = {"stdout": False, "stderr": False}
        self._head_bytes = 0
        self._omitted = False
        self._status = None
        if self.kernel and status_delay_s <= 0:
            self._status = _display({"text/plain": summary_line(job)}, display_id=True)

    def _delay_passed(self) -> bool:
        return time.monotonic() - self._started >= self.status_delay_s

    def update(self, job: Job) -> None:
        """Write the output that is new since the last call; refresh the status."""
        self._write_new(job, "stdout", sys.stdout)
        self._write_new(job, "stderr", sys.stderr)
        if self._status is not None:
            self._status.update({"text/plain": summary_line(job)}, raw=True)
        elif self.kernel and job.running and self._delay_passed():
            self._status = _display({"text/plain": summary_line(job)}, display_id=True)

    def finish(self, job: Job) -> None:
        """Write the last output (the tail of held-back output) and the summary."""
        self.update(job)
        held = [name for name, is_held in self._held.items() if is_held]
        for name in held:
            stream = sys.stdout if name == "stdout" else sys.stderr
            self._write_tail(job, name, stream, (self.budget // 2) // len(held))
        if self._status is None and not self.kernel and self._delay_passed():
            print(summary_line(job), flush=True)

    @property
    def shown_everything(self) -> bool:
        """False when part of the output was left out to stay within the budget."""
        return not self._omitted

    def _write_new(self, job: Job, name: str, stream: Any) -> None:
        text = getattr(job, name)
        start = self._written[name]
        if len(text) <= start or self._held[name]:
            return
        new = text[start:]
        data = new.encode("utf-8", "surrogatepass")
        room = self.budget // 2 - self._head_bytes
        if len(data) > room:
            # Cut at the last line end that fits, so the head ends on a line.
            head = data[: max(room, 0)]
            if b"\n" in head:
                head = head[: head.rindex(b"\n") + 1]
            new = head.decode("utf-8", "ignore")
            self._held[name] = True
        self._written[name] = start + len(new)
        self._head_bytes += len(new.encode("utf-8", "surrogatepass"))
        stream.write(new)
        if self._held[name]:
            if new and not new.endswith("\n"):
                stream.write("\n")
            stream.write(
                f"… more {name} is held back to stay within {self.budget} bytes; "
                f"its end is shown when job {job.short_id} ends …\n"
            )
        stream.flush()

    def _write_tail(self, job: Job, name: str, stream: Any, room: int) -> None:
        rest = getattr(job, name)[self._written[name] :]
        data = rest.encode("utf-8", "surrogatepass")
        tail = data
        if len(data) > room:
            tail = data[len(data) - room :]
            if b"\n" in tail[:-1]:
                tail = tail[tail.index(b"\n") + 1 :]
            omitted = data[: len(data) - len(tail)]
            lines = omitted.count(b"\n")
            self._omitted = True
            stream.write(
                f"… {lines} lines ({len(omitted)} bytes) omitted; "
                f"the job object holds all of it (job {job.job_id}) …\n"
            )
        stream.write(tail.decode("utf-8", "ignore"))
        self._written[name] = len(getattr(job, name))
        stream.flush()


class BackgroundView:
    """One display of a background job, updated from its watcher thread."""

    def __init__(self, job: Job, *, kernel: bool | None = None) -> None:
        self.kernel = in_kernel() if kernel is None else kernel
        self._lock = threading.Lock()
        self._handle = None
        self.updates = 0
        if self.kernel:
            self._handle = _display(
                _bundle(job, BACKGROUND_TAIL_CHARS), display_id=True
            )
        else:
            print(
                f"{summary_line(job)} (in the background; %cocalc job {job.short_id} "
                "shows it, job.wait() waits for it)",
                flush=True,
            )

    @property
    def display_id(self) -> str | None:
        """The display id of the job's output, in a kernel."""
        return self._handle.display_id if self._handle is not None else None

    def update(self, job: Job) -> None:
        """Show the job's current state in its display."""
        if self._handle is None:
            return
        limit = BACKGROUND_TAIL_CHARS if job.running else OUTPUT_DISPLAY_LIMIT
        with self._lock:
            self._handle.update(_bundle(job, limit), raw=True)
            self.updates += 1

    def finish(self, job: Job) -> None:
        """Show the final state; outside a kernel, print the summary line."""
        if self._handle is not None:
            self.update(job)
        else:
            print(summary_line(job), flush=True)


def foreground_view(job: Job, **kwargs: Any) -> ForegroundView:
    """Return the foreground view for the current environment."""
    return ForegroundView(job, **kwargs)


def background_view(job: Job, **kwargs: Any) -> BackgroundView:
    """Return the background view for the current environment."""
    return BackgroundView(job, **kwargs)

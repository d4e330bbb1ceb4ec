"""A job on the fake CoCalc server whose record follows a timeline.

:class:`ScriptedJob` replies to ``system.exec`` like CoCalc's async mode: the start
reply at once, ``async_get`` with the state at the time of the request, and
``async_await`` held until the job ends or the bridge timeout of the request
passes, which then gets CoCalc's 408 envelope.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from tests.support.fake_server import FakeCoCalc, RecordedRequest, Reply

BRIDGE_TIMEOUT = (
    "timeout - callHub: subject='project.{project}.0.api.-', name='system.exec', "
    "code='408' "
)


class ScriptedJob:
    """A fake job.

    Parameters
    ----------
    timeline : list of (seconds, dict)
        Record fields from that many seconds after the start on; the last entry
        should have a final ``status``.
    honour_await : bool
        False makes ``async_await`` return at once, like a server that ignores it.
    """

    def __init__(
        self,
        timeline: list[tuple[float, dict[str, Any]]],
        *,
        job_id: str = "job-1",
        pid: int = 4242,
        honour_await: bool = True,
    ) -> None:
        self.timeline = timeline
        self.job_id = job_id
        self.pid = pid
        self.honour_await = honour_await
        self.started: float | None = None
        self.start_ms = 1_700_000_000_000
        self.forgotten = False
        self.ended_at: float | None = None
        self._lock = threading.Lock()

    def install(self, fake: FakeCoCalc) -> ScriptedJob:
        fake.on("system.exec", self.answer)
        return self

    def state(self) -> dict[str, Any]:
        elapsed = time.monotonic() - (self.started or time.monotonic())
        fields: dict[str, Any] = {"status": "running", "stdout": "", "stderr": ""}
        for moment, update in self.timeline:
            if elapsed >= moment:
                fields.update(update)
        if fields["status"] != "running" and self.ended_at is None:
            with self._lock:
                self.ended_at = self.ended_at or time.monotonic()
        return fields

    def record(self) -> dict[str, Any]:
        fields = self.state()
        record = {
            "type": "async",
            "job_id": self.job_id,
            "start": self.start_ms,
            "pid": self.pid,
            "exit_code": 0,
            **fields,
        }
        if fields["status"] != "running":
            record.setdefault("elapsed_s", self.timeline[-1][0])
        return record

    def answer(self, request: RecordedRequest) -> Any:
        options = request.args[0]
        if options.get("async_call"):
            self.started = time.monotonic()
            return self.record()
        if options.get("async_get") != self.job_id or self.forgotten:
            return Reply.error(
                f"Error: Async operation '{options.get('async_get')}' does not exist."
            )
        if options.get("async_await") and self.honour_await:
            return self._await(request)
        return self.record()

    def _await(self, request: RecordedRequest) -> Any:
        deadline = time.monotonic() + (request.timeout or 15000) / 1000
        while time.monotonic() < deadline:
            if self.state()["status"] != "running":
                return self.record()
            time.sleep(0.01)
        return Reply.error(BRIDGE_TIMEOUT.format(project=request.json["project_id"]))


def polls(fake: FakeCoCalc) -> list[RecordedRequest]:
    """Return the ``async_get`` requests the fake server received, in order."""
    return [
        request
        for request in fake.requests_for("system.exec")
        if "async_get" in request.args[0]
    ]

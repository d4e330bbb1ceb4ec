"""The pacer on its own: token bucket, shared pause, and which failures repeat.

A fake clock makes the timing exact; the functions passed to ``Pacer.call`` raise
the client's real exception classes, as the connection would.
"""

from __future__ import annotations

import threading

import pytest

from cocalc_magics.api import (
    BridgeTimeoutError,
    ConnectionFailedError,
    HTTPStatusError,
    NotListeningError,
    RemoteError,
)
from cocalc_magics.fanout.pacing import Cancelled, Pacer, is_busy_error

HUB_503 = (
    "request -- no subscribers matching 'hub.account.A.api' - callHub: "
    "subject='hub.account.A.api', name='projects.state', code='503' "
)
PROJECT_503 = (
    "request -- no subscribers matching 'project.P.0.api.-' - callHub: "
    "subject='project.P.0.api.-', name='system.exec', code='503' "
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def failing(errors: list[Exception], value: str = "ok"):
    """A call that raises each of *errors* once, then returns *value*."""
    calls = []

    def call():
        calls.append(True)
        if errors:
            raise errors.pop(0)
        return value

    call.calls = calls
    return call


def test_bucket_allows_burst_then_rate():
    clock = FakeClock()
    pacer = Pacer(10.0, burst=5, clock=clock, sleep=clock.sleep)

    for _ in range(25):
        pacer.acquire()

    # 5 free tokens, then 20 more at 10 per second.
    assert clock.now - 100.0 == pytest.approx(2.0, abs=0.05)


def test_no_rate_limit_never_waits():
    clock = FakeClock()
    pacer = Pacer(None, clock=clock, sleep=clock.sleep)

    for _ in range(1000):
        pacer.acquire()

    assert clock.sleeps == []


def test_busy_answer_pauses_every_worker():
    clock = FakeClock()
    pacer = Pacer(None, backoff_base=2.0, clock=clock, sleep=clock.sleep)
    call = failing(
        [HTTPStatusError("system.exec", "busy", status=503, retry_safe=True)]
    )

    assert pacer.call(call, idempotent=False) == "ok"

    # Equal jitter: the first pause is between 1 and 2 s.
    assert 1.0 <= clock.now - 100.0 <= 2.2
    assert len(call.calls) == 2
    assert pacer.busy_responses == 1


def test_pauses_double_then_reset_after_success():
    clock = FakeClock()
    pacer = Pacer(
        None, backoff_base=1.0, backoff_max=30.0, clock=clock, sleep=clock.sleep
    )
    errors = [
        ConnectionFailedError("projects.state", "refused", retry_safe=True)
        for _ in range(4)
    ]

    pacer.call(failing(errors), idempotent=True)
    after_four = clock.now - 100.0
    first = pacer.record_busy()

    # Pauses of at least 0.5, 1, 2 and 4 s; after the success the next is <= 1 s.
    assert after_four >= 7.5
    assert first <= 1.0


def test_pause_never_exceeds_max():
    pacer = Pacer(None, backoff_base=1.0, backoff_max=4.0)

    delays = [pacer.record_busy() for _ in range(10)]

    assert max(delays) <= 4.0
    assert delays[-1] >= 2.0


@pytest.mark.parametrize(
    "error",
    [
        NotListeningError("projects.state", HUB_503, raw=HUB_503, retry_safe=True),
        HTTPStatusError("system.exec", "bad gateway", status=502, retry_safe=True),
        ConnectionFailedError("system.exec", "refused", retry_safe=True),
    ],
)
def test_busy_errors_are_recognised(error):
    assert is_busy_error(error)


@pytest.mark.parametrize(
    "error",
    [
        RemoteError("system.exec", "boom"),
        BridgeTimeoutError("system.exec", "timeout - callHub: code='408' "),
        HTTPStatusError("system.exec", "not found", status=404),
    ],
)
def test_other_errors_raise_at_once(error):
    pacer = Pacer(None, backoff_base=0.01)
    call = failing([error])

    with pytest.raises(type(error)):
        pacer.call(call, idempotent=True)
    assert len(call.calls) == 1


def test_maybe_sent_request_is_not_repeated():
    # The connection dropped after the exec was sent: it may have run.
    pacer = Pacer(None, backoff_base=0.01)
    call = failing([ConnectionFailedError("system.exec", "reset", retry_safe=False)])

    with pytest.raises(ConnectionFailedError):
        pacer.call(call, idempotent=False)
    assert len(call.calls) == 1


def test_gives_up_after_max_attempts():
    clock = FakeClock()
    pacer = Pacer(
        None, backoff_base=0.1, max_attempts=3, clock=clock, sleep=clock.sleep
    )
    errors = [
        HTTPStatusError("x", "busy", status=503, retry_safe=True) for _ in range(5)
    ]
    call = failing(errors)

    with pytest.raises(HTTPStatusError):
        pacer.call(call, idempotent=True)
    assert len(call.calls) == 3


def test_project_not_listening_waits_alone():
    clock = FakeClock()
    pacer = Pacer(None, backoff_base=1.0, clock=clock, sleep=clock.sleep)
    error = NotListeningError(
        "system.exec", PROJECT_503, raw=PROJECT_503, retry_safe=True
    )

    assert pacer.call(failing([error]), idempotent=False) == "ok"

    # The worker slept, but no shared pause was set for the others.
    assert clock.now > 100.0
    before = clock.now
    pacer.acquire()
    assert clock.now == before


def test_cancel_stops_waiting_for_pause():
    pacer = Pacer(None, backoff_base=60.0, backoff_max=60.0)
    pacer.record_busy()
    cancelled = threading.Event()
    threading.Timer(0.2, cancelled.set).start()

    with pytest.raises(Cancelled):
        pacer.call(failing([]), idempotent=True, cancelled=cancelled)


def test_invalid_settings_rejected():
    with pytest.raises(ValueError, match="max_rate"):
        Pacer(0)
    with pytest.raises(ValueError, match="max_attempts"):
        Pacer(1.0, max_attempts=0)

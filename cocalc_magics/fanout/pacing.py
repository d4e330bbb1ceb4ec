"""Request pacing shared by the workers of one fan-out: a rate limit and back-off.

Every request a worker sends first takes a token from a token bucket, so the whole
fan-out sends at most ``max_rate`` requests per second on average, with bursts of
at most ``burst``. When any worker gets a response that means the site is busy or
unreachable (an HTTP 502, 503 or 504, a failed connection, or a hub ``code='503'``
envelope), every worker pauses: the pause doubles with each consecutive failure,
up to ``backoff_max`` seconds, with random jitter so that the workers do not come
back in step. A success resets the doubling. A project's own ``code='503'`` ("not
listening yet", normal for a few seconds after its start) makes only the worker of
that project wait, with the same doubling.

Only calls that cannot have run twice are repeated: idempotent reads, and requests
that provably never reached the server (``CoCalcError.retry_safe``).
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from cocalc_magics.api import (
    CoCalcError,
    ConnectionFailedError,
    HTTPStatusError,
    NotListeningError,
)

__all__ = ["Pacer", "is_busy_error"]

logger = logging.getLogger(__name__)

Result = TypeVar("Result")


def is_busy_error(error: CoCalcError) -> bool:
    """Return whether *error* means "busy or unreachable, try again later"."""
    if isinstance(error, (NotListeningError, ConnectionFailedError)):
        return True
    return isinstance(error, HTTPStatusError) and error.status in (502, 503, 504)


class Pacer:
    """Token bucket plus shared exponential back-off, safe to use from many threads.

    Parameters
    ----------
    max_rate : float or None
        Average requests per second across all workers; None for no limit.
    burst : int, optional
        Tokens available at once; defaults to ``max_rate`` rounded up.
    backoff_base : float
        Seconds of the first pause after a busy response.
    backoff_max : float
        Maximum pause in seconds.
    max_attempts : int
        Attempts of one call, the first included, before its error is raised.
    clock, sleep
        Replaceable for deterministic use; default :func:`time.monotonic` and
        :func:`time.sleep`.
    """

    def __init__(
        self,
        max_rate: float | None = 50.0,
        *,
        burst: int | None = None,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        max_attempts: int = 6,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_rate is not None and not max_rate > 0:
            raise ValueError(
                f"max_rate must be above 0 requests per second, not {max_rate!r}"
            )
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be 1 or more, not {max_attempts!r}")
        self.max_rate = max_rate
        self.burst = burst if burst is not None else max(1, math.ceil(max_rate or 1))
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_attempts = max_attempts
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(self.burst)
        self._refilled_at = clock()
        self._resume_at = 0.0
        self._failures = 0
        #: Busy responses seen so far, for reports and tests.
        self.busy_responses = 0

    def acquire(self, cancelled: threading.Event | None = None) -> bool:
        """Wait for the shared pause to end and for a token; False if *cancelled*."""
        while True:
            with self._lock:
                now = self._clock()
                wait = self._resume_at - now
                if wait <= 0:
                    wait = self._take_token(now)
                    if wait <= 0:
                        return True
            if cancelled is not None and cancelled.is_set():
                return False
            # Short naps, so that a cancelled fan-out stops waiting promptly.
            self._sleep(min(wait, 0.2))

    def _take_token(self, now: float) -> float:
        if self.max_rate is None:
            return 0.0
        self._tokens = min(
            float(self.burst), self._tokens + (now - self._refilled_at) * self.max_rate
        )
        self._refilled_at = now
        # The tolerance absorbs rounding, which could otherwise ask for a wait
        # too short to move the clock.
        if self._tokens >= 1.0 - 1e-9:
            self._tokens = max(0.0, self._tokens - 1.0)
            return 0.0
        return max((1.0 - self._tokens) / self.max_rate, 1e-3)

    def record_success(self) -> None:
        """Reset the doubling of the pause after a response that was not busy."""
        with self._lock:
            self._failures = 0

    def record_busy(self) -> float:
        """Start or lengthen the shared pause after a busy response.

        Returns the length of the pause in seconds.
        """
        with self._lock:
            self.busy_responses += 1
            ceiling = min(self.backoff_max, self.backoff_base * 2**self._failures)
            self._failures += 1
            # "Equal jitter": at least half the ceiling, so the pause always grows.
            delay = ceiling / 2 + random.uniform(0, ceiling / 2)
            self._resume_at = max(self._resume_at, self._clock() + delay)
            return delay

    def call(
        self,
        function: Callable[[], Result],
        *,
        idempotent: bool,
        cancelled: threading.Event | None = None,
        exempt: bool = False,
    ) -> Result:
        """Run *function* (one request) under the rate limit, repeating busy failures.

        Parameters
        ----------
        function
            Sends one request; raises :class:`~cocalc_magics.api.CoCalcError`.
        idempotent : bool
            Whether a busy failure may be repeated even if the request was sent.
        cancelled : threading.Event, optional
            When set, no further attempt starts and :class:`Cancelled` is raised.
        exempt : bool
            Skip the token bucket (but not the shared pause): used for long-polls,
            whose number is bounded by the concurrency anyway.
        """
        attempt = 1
        while True:
            if exempt:
                self._wait_for_pause(cancelled)
            elif not self.acquire(cancelled):
                raise Cancelled()
            try:
                result = function()
            except CoCalcError as error:
                if not is_busy_error(error) or not (idempotent or error.retry_safe):
                    raise
                if attempt >= self.max_attempts:
                    with self._lock:
                        self.busy_responses += 1
                    raise
                self._back_off(error, attempt, cancelled)
                attempt += 1
                continue
            self.record_success()
            return result

    def _back_off(
        self, error: CoCalcError, attempt: int, cancelled: threading.Event | None
    ) -> None:
        if _is_project_not_listening(error):
            # One project's API is not up yet, usually just after its start: only
            # this worker waits, because the site itself is fine.
            with self._lock:
                self.busy_responses += 1
            ceiling = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
            delay = ceiling / 2 + random.uniform(0, ceiling / 2)
            logger.info("%s; retrying in %.1f s", error, delay)
            if cancelled is not None:
                if cancelled.wait(delay):
                    raise Cancelled()
            else:
                self._sleep(delay)
            return

        delay = self.record_busy()
        logger.warning(
            "%s (attempt %d of %d); every worker pauses for %.1f s",
            error,
            attempt,
            self.max_attempts,
            delay,
        )

    def _wait_for_pause(self, cancelled: threading.Event | None) -> None:
        while True:
            with self._lock:
                wait = self._resume_at - self._clock()
            if wait <= 0:
                return
            if cancelled is not None and cancelled.is_set():
                raise Cancelled()
            self._sleep(min(wait, 0.2))


def _is_project_not_listening(error: CoCalcError) -> bool:
    return isinstance(error, NotListeningError) and "subject='project." in (
        error.raw or ""
    )


class Cancelled(Exception):
    """The fan-out was cancelled while a worker waited to send a request."""

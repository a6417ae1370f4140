"""A circuit breaker: after a dependency failed to answer, a process stops asking it for a
while, then lets one caller try it again.

Used for Redis (services.redis_clients: pages uncached, limits in memory, jobs inline while it
is open) and for the read replica (services.routing: catalogue reads go to the primary while it
is open). Per process, and only an optimisation: nothing is kept in it. It opens and closes with
one log line each."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Breaker:
    """Whether this process asks the dependency now. Thread-safe: a threaded worker's requests
    share it, and only one of them makes the trial.

    `opened` is logged (warning) with the error's type and text and the interval when it
    opens; `closed` (info) when an answer closes it."""

    def __init__(self, retry_after: float, clock: Callable[[], float] = time.monotonic, *,
                 log: logging.Logger, opened: str, closed: str) -> None:
        self.retry_after = retry_after
        self.is_open = False
        self._clock = clock
        self._next_try = 0.0
        self._lock = threading.Lock()
        self._forced = threading.local()
        self._log = log
        self._opened = opened
        self._closed = closed

    @contextmanager
    def forced(self) -> Iterator[None]:
        """Calls in this block (this thread's) ask the dependency even while the breaker is
        open: a write that must not be skipped (the catalogue's invalidation after a staff
        save: a skipped one leaves old prices cached) is worth a timeout. An answer closes it."""
        self._forced.on = True
        try:
            yield
        finally:
            self._forced.on = False

    def allow(self) -> bool:
        """True to ask the dependency: closed, forced, or open with its interval over (the
        caller is then the interval's one trial, and the next trial waits for the next
        interval)."""
        if not self.is_open or getattr(self._forced, "on", False):
            return True
        with self._lock:
            now = self._clock()
            if self.is_open and now < self._next_try:
                return False
            self._next_try = now + self.retry_after
            return True

    def failed(self, error: BaseException) -> None:
        """The dependency did not answer: skip it for the next interval."""
        with self._lock:
            self._next_try = self._clock() + self.retry_after
            if self.is_open:
                return
            self.is_open = True
        self._log.warning(self._opened, type(error).__name__, error, self.retry_after)

    def succeeded(self) -> None:
        """The dependency answered: ask it again from now on."""
        if not self.is_open:
            return
        with self._lock:
            if not self.is_open:
                return
            self.is_open = False
        self._log.info(self._closed)

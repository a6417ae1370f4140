"""Jobs started at the same moment, each in its own thread with its own app context and
Session: what the concurrency tests race (on MySQL with real row locks; SQLite has one writer
at a time)."""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from shop.extensions import db


def run_concurrently(app, jobs: list[Callable[[], Any]]) -> list[Any]:
    """Start every job at the same moment; each one's result, or the exception it raised."""
    db.session.rollback()
    barrier = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)

    def worker(index: int, job: Callable[[], Any]) -> None:
        with app.app_context():
            barrier.wait()
            try:
                results[index] = job()
            except Exception as exc:  # the caller's assertions surface it
                results[index] = exc
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    db.session.rollback()  # end this thread's read snapshot and see what the threads did
    return results


def raised(results: list[Any]) -> list[Exception]:
    """The exceptions among run_concurrently's results."""
    return [result for result in results if isinstance(result, Exception)]

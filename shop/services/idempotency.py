"""Idempotency keys for API writes (SPEC sections 4 and 7).

The first request with a key claims it (a row in state "running"); its successful answer is
stored and replayed, status and body, to every repeat with the same body. The same key with
another body is refused (422); a repeat while the first is still running gets 409. A request
that a rule refused (a 4xx) releases its key, so the client can fix the cause and retry; so
does one that failed unexpectedly (the order carries the key, so its retry answers with an
order already committed). A claim left "running" by a process that died is taken over after
STALE_AFTER.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import IdempotencyRecord, utcnow
from .database import retrying, write_transaction
from .errors import IdempotencyConflict, IdempotencyMismatch

# Just past the longest a request lives (gunicorn's 30 s timeout, GUNICORN_TIMEOUT): a claim
# older than that belongs to a request that is gone, killed, or whose release met a database
# outage. At 2 minutes, a client retrying after that outage's 503 was told 409 "in progress"
# for 2 minutes. A request still running past it (a raised timeout) cannot place its order
# twice: the order carries its key, which is unique.
STALE_AFTER = timedelta(seconds=40)


@dataclass(frozen=True)
class StoredResponse:
    """The first answer, to be sent again."""

    status: int
    body: str


def request_hash(payload: Any) -> str:
    """A fingerprint of a request body: the same JSON in any key order gives the same hash."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


CLAIM_ATTEMPTS = 3


def begin(scope: str, key: str, fingerprint: str) -> StoredResponse | None:
    """Claim `key` in `scope` for this request; None means go ahead and serve it.

    Returns the stored answer when the key was already served with the same body; raises
    IdempotencyMismatch for another body and IdempotencyConflict while it is still running.
    A claim released (its request refused) while this one looked at it is claimed again;
    when repeats of the key keep taking it first, this one is told the key is busy.
    """
    for _ in range(CLAIM_ATTEMPTS):
        if _claim(scope, key, fingerprint):
            return None
        with write_transaction():
            record = db.session.execute(select(IdempotencyRecord).where(
                IdempotencyRecord.scope == scope, IdempotencyRecord.key == key)
            ).scalar_one_or_none()
            if record is None:  # released between our insert and this read: claim it again
                continue
            if record.request_hash != fingerprint:
                raise IdempotencyMismatch(
                    "This Idempotency-Key was already used with a different request body. "
                    "Use a new key for a new request.", details={"idempotency_key": key})
            if record.state == "done" and record.response_status is not None:
                return StoredResponse(record.response_status, record.response_body or "")
            if record.created_at > utcnow() - STALE_AFTER:
                raise _busy(key)
            # The first attempt died mid-way: take it over (one taker wins the conditional
            # update).
            taken = db.session.execute(
                update(IdempotencyRecord).where(IdempotencyRecord.id == record.id,
                                                IdempotencyRecord.state == "running",
                                                IdempotencyRecord.created_at == record.created_at)
                .values(created_at=utcnow()).execution_options(synchronize_session=False))
            if taken.rowcount != 1:
                raise _busy(key)
        return None
    raise _busy(key)


def _claim(scope: str, key: str, fingerprint: str) -> bool:
    """Insert the key's "running" row; False when the key already has one. On MySQL, inserts
    of a key that was just released (its row deleted) can deadlock each other: the one
    rolled back tries again and finds the row the other wrote."""
    def insert() -> None:
        with write_transaction():
            db.session.add(IdempotencyRecord(scope=scope, key=key, request_hash=fingerprint,
                                             state="running", created_at=utcnow()))

    try:
        retrying(insert)
        return True
    except IntegrityError:
        return False


def _busy(key: str) -> IdempotencyConflict:
    return IdempotencyConflict(
        "A request with this Idempotency-Key is still being processed. "
        "Retry in a moment to get its result.", details={"idempotency_key": key})


def finish(scope: str, key: str, status: int, body: str) -> None:
    """Store the answer to replay."""
    with write_transaction():
        db.session.execute(
            update(IdempotencyRecord).where(IdempotencyRecord.scope == scope,
                                            IdempotencyRecord.key == key)
            .values(state="done", response_status=status, response_body=body)
            .execution_options(synchronize_session=False))


def release(scope: str, key: str) -> None:
    """Forget a claim whose request was refused, so the key can be used again."""
    with write_transaction():
        db.session.execute(delete(IdempotencyRecord).where(
            IdempotencyRecord.scope == scope, IdempotencyRecord.key == key,
            IdempotencyRecord.state == "running"))

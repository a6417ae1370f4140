"""The audit log: every staff write, with who, when, which record, before and after, and the
request it came from. The HTTP layer supplies the request id; this module knows no request."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, inspect

from ..extensions import db
from ..models import AuditLog
from .database import write_transaction

# Never copied into the log, whatever the model.
SECRET_FIELDS = frozenset({"password_hash", "token_hash", "checkout_url"})
# The shop's own bookkeeping, following from what staff changed (a product's sort key from
# its name, an account's session counter raised by a deactivation): not copied into the log,
# and left out when an entry written before is shown.
INTERNAL_FIELDS = frozenset({"name_key", "session_epoch"})
ACTIONS = ("create", "update", "delete", "transition", "import", "approve", "reject",
           "deactivate", "activate", "stock", "note")


@dataclass(frozen=True)
class Who:
    """The staff member who made a change."""

    user_id: int | None
    email: str


def json_value(value: Any) -> Any:
    """A value as JSON can hold it: money as strings ("12.50"), times as ISO 8601."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [json_value(v) for v in value]
    if isinstance(value, bytes):
        return None
    return value


def snapshot(obj: Any, *, include: tuple[str, ...] = ()) -> dict[str, Any]:
    """The record's columns (secrets left out) and, for `include`, its related records."""
    mapper = inspect(obj).mapper
    data: dict[str, Any] = {}
    for attr in mapper.column_attrs:
        if attr.key in SECRET_FIELDS or attr.key in INTERNAL_FIELDS:
            continue
        data[attr.key] = json_value(getattr(obj, attr.key))
    for name in include:
        related = getattr(obj, name)
        if related is None:
            data[name] = None
        elif isinstance(related, (list, tuple)):
            data[name] = [snapshot(item) for item in related]
        else:
            data[name] = snapshot(related)
    return data


def changed_fields(before: dict | None, after: dict | None) -> list[str]:
    """The keys whose values differ between two snapshots (the shop's own left out)."""
    before, after = before or {}, after or {}
    return sorted(k for k in set(before) | set(after)
                  if before.get(k) != after.get(k) and k not in INTERNAL_FIELDS)


def _fields(who: Who, action: str, model: str, record_id: object, before: dict | None,
            after: dict | None, request_id: str) -> dict[str, Any]:
    return {"actor_id": who.user_id, "actor_email": (who.email or "")[:255],
            "action": action[:40], "model": model[:60], "record_id": str(record_id or "")[:60],
            "before": json_value(before) if before is not None else None,
            "after": json_value(after) if after is not None else None,
            "request_id": (request_id or "")[:64]}


def record(who: Who, action: str, model: str, record_id: object, *,
           before: dict | None = None, after: dict | None = None,
           request_id: str = "") -> AuditLog | None:
    """Add an entry to the caller's transaction (only flushes). An update that changed nothing
    is not a write and leaves no entry (returns None)."""
    if action == "update" and before is not None and before == after:
        return None
    entry = AuditLog(**_fields(who, action, model, record_id, before, after, request_id))
    db.session.add(entry)
    db.session.flush()
    return entry


def record_many(who: Who, entries: list[tuple[str, str, object, dict | None, dict | None]],
                request_id: str = "") -> None:
    """`record` for many changes at once (action, model, record id, before, after), written
    in batches of 1,000 rows: a large import's entries without one statement each."""
    rows = [_fields(who, action, model, record_id, before, after, request_id)
            for action, model, record_id, before, after in entries
            if not (action == "update" and before is not None and before == after)]
    for start in range(0, len(rows), 1000):
        db.session.execute(insert(AuditLog), rows[start:start + 1000])


def log(who: Who, action: str, model: str, record_id: object, *,
        before: dict | None = None, after: dict | None = None,
        request_id: str = "") -> None:
    """Record an entry in its own transaction, for actions whose service already committed
    (an order transition owns its transaction; its own event row records the change too)."""
    with write_transaction():
        record(who, action, model, record_id, before=before, after=after,
               request_id=request_id)


def log_transition(who: Who, order_id: int, to_status: str, *, note: str = "",
                   carrier: str | None = None, tracking_number: str | None = None,
                   request_id: str = "") -> bool:
    """The audit entry of a staff status change (back office and API), read from the order's
    history: from the status the order really left, and only when this staff member's
    change is the one that happened. Read before the change, a ship and a refund racing
    logged paid -> refunded for an order that went shipped -> refunded; and a card payment
    that beat "Mark paid" was logged as the staff's pending -> paid. False when there is
    nothing of theirs to record."""
    from sqlalchemy import select

    from ..models import OrderEvent

    # This staff member's move to that status (an order reaches each status once): not the
    # newest event, which another change made at once after it would have hidden.
    event = db.session.execute(
        select(OrderEvent).where(OrderEvent.order_id == order_id,
                                 OrderEvent.to_status == to_status,
                                 OrderEvent.actor_id == who.user_id)
        .order_by(OrderEvent.id.desc()).limit(1)).scalar_one_or_none()
    if event is None or event.from_status == event.to_status:
        return False
    after: dict[str, Any] = {"status": to_status}
    if note:
        after["note"] = note
    if to_status == "shipped":
        after.update(carrier=(carrier or "").strip(),
                     tracking_number=(tracking_number or "").strip())
    log(who, "transition", "Order", order_id, before={"status": event.from_status},
        after=after, request_id=request_id)
    return True

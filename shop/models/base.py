"""Column helpers shared by every model: money, UTC times."""
from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import DateTime, Numeric
from sqlalchemy.orm import Mapped, mapped_column

Money = Numeric(12, 2, asdecimal=True)
# Database ids are 32-bit on every supported database; larger numbers name nothing (and SQLite
# cannot even bind one beyond 64 bits: the query fails instead of finding nothing).
MAX_ID = 2_147_483_647
# A TEXT column holds this many bytes on MySQL (UTF-8: an accented letter takes two).
MAX_TEXT_BYTES = 65_535


def is_id(value: object) -> bool:
    """True for a whole number that can be a row's id (1 to MAX_ID)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID


def utcnow() -> datetime:
    """Now in UTC, naive: DATETIME columns on SQLite and MySQL store no zone, and all are UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


def money_column(nullable: bool = False, default: Decimal | None = None) -> Mapped[Decimal]:
    """A Numeric(12, 2) column holding Decimal."""
    return mapped_column(Money, nullable=nullable, default=default)


def created_column() -> Mapped[datetime]:
    """A created-at column, UTC."""
    return mapped_column(DateTime, nullable=False, default=utcnow)

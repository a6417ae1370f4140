"""idempotency keys compared byte for byte on MySQL (utf8mb4_bin)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 08:50:00

MySQL's usual collations are case-insensitive: keys that differ in case were one key, so an
order placed with "order-a" after one with "Order-A" was the first order replayed. SQLite
compares text byte for byte already: nothing to do there.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

COLUMNS = (("idempotency_records", "key", False), ("orders", "idempotency_key", True))


def _alter(collation: str | None) -> None:
    if op.get_bind().dialect.name not in ("mysql", "mariadb"):
        return
    for table, column, nullable in COLUMNS:
        op.alter_column(table, column, existing_type=sa.String(length=200),
                        type_=mysql.VARCHAR(200, collation=collation) if collation
                        else sa.String(length=200),
                        existing_nullable=nullable, nullable=nullable)


def upgrade():
    _alter("utf8mb4_bin")


def downgrade():
    _alter(None)

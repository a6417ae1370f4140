"""coupon codes and guests' coupon uses compared exactly on MySQL (utf8mb4_bin)

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 12:15:00

MySQL's usual collation compares without accents: "WÉLCOME10" found the coupon WELCOME10 on
MySQL (SQLite refused it), two codes that differ by an accent could not both exist, and a
guest's uses of a coupon under "josé@" were counted as those of "jose@". Codes are stored
normalised (trimmed, upper case) and guests' emails too (trimmed, lower case), so comparing
them byte for byte keeps the case-insensitivity, as on SQLite.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None

COLUMNS = (("coupons", "code", 40), ("coupon_uses", "customer_key", 255),
           ("coupon_uses", "email", 255))


def _collation(collation: str | None) -> None:
    if op.get_bind().dialect.name not in ("mysql", "mariadb"):
        return
    for table, column, length in COLUMNS:
        op.alter_column(table, column, existing_type=sa.String(length=length),
                        type_=mysql.VARCHAR(length, collation=collation) if collation
                        else sa.String(length=length), existing_nullable=False, nullable=False)


def upgrade():
    _collation("utf8mb4_bin")


def downgrade():
    _collation(None)

"""account emails in one Unicode form (NFC), and compared exactly on MySQL (utf8mb4_bin)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 10:50:00

The shop stores an account's email trimmed, lower case and, from now on, composed (NFC), so
"é" typed as one character or as e plus a combining accent is one address. Emails already
stored decomposed are composed here, unless that would make them another account's address
(two accounts made for one mailbox before: both are left as they are, for staff to merge).

MySQL's usual collation compares without accents and widths: "jose@" could not register while
"josé@" existed (the unique index took them for one). Stored normalised, the column compares
byte for byte, as SQLite always did.
"""
import unicodedata

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def _collation(collation: str | None) -> None:
    if op.get_bind().dialect.name not in ("mysql", "mariadb"):
        return
    op.alter_column("users", "email", existing_type=sa.String(length=255),
                    type_=mysql.VARCHAR(255, collation=collation) if collation
                    else sa.String(length=255), existing_nullable=False, nullable=False)


def _compose_emails() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, email FROM users")).all()
    taken = {email for _, email in rows}
    for user_id, email in rows:
        composed = unicodedata.normalize("NFC", email)
        if composed != email and composed not in taken:
            bind.execute(sa.text("UPDATE users SET email = :email WHERE id = :id"),
                         {"email": composed, "id": user_id})
            taken.add(composed)


def upgrade():
    _collation("utf8mb4_bin")
    _compose_emails()


def downgrade():
    _collation(None)

"""idempotency_records.response_body: MEDIUMTEXT on MySQL

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 05:40:00

A stored answer of more than 64 KB (an order of many lines whose names are not ASCII, each
such letter written as \\uXXXX) did not fit MySQL's TEXT: the order was placed, the client got
a 500, and its retries with the same key never got the answer. SQLite's TEXT has no such limit.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name in ("mysql", "mariadb"):
        op.alter_column("idempotency_records", "response_body", existing_type=sa.Text(),
                        type_=mysql.MEDIUMTEXT(), existing_nullable=True)


def downgrade():
    if op.get_bind().dialect.name in ("mysql", "mariadb"):
        op.alter_column("idempotency_records", "response_body", existing_type=mysql.MEDIUMTEXT(),
                        type_=sa.Text(), existing_nullable=True)

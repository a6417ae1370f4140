"""users.session_epoch: a deactivation ends the account's sessions for good

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 19:00:00

Sessions and remember-me cookies carried a fingerprint of the password only, so an account
deactivated in the back office and later reactivated got its old sessions back. Deactivation
now raises session_epoch, which is part of the fingerprint (accounts.password_fingerprint);
0, every existing account's value, leaves today's sessions as they are.
"""
import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("session_epoch", sa.Integer(), server_default="0",
                                   nullable=False))


def downgrade():
    with op.batch_alter_table("users") as batch:
        batch.drop_column("session_epoch")

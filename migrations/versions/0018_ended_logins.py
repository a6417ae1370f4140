"""ended_logins: "Log out" ends the login wherever a copy of its cookies turns up

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 21:15:00

Sessions and remember-me cookies are signed cookies with no state on the server: "Log out"
deleted them in that browser only, and a copy (a shared computer, a stolen cookie) went on
working. Each login now carries an id; logging out records it here until the longest such
cookie would have expired, and a request carrying it is logged out.
"""
import sqlalchemy as sa
from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "ended_logins",
        sa.Column("login_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_ended_logins_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("login_id", name=op.f("pk_ended_logins")),
    )
    op.create_index(op.f("ix_ended_logins_user_id"), "ended_logins", ["user_id"])
    op.create_index(op.f("ix_ended_logins_expires_at"), "ended_logins", ["expires_at"])


def downgrade():
    op.drop_table("ended_logins")  # with its indexes (MySQL keeps user_id's for the key)

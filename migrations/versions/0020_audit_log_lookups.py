"""audit_log indexes: entries by record id alone, and by request id

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 02:30:00

The back office's audit list filters by record id (without the model) and finds a request's
entries by its id; with half a million entries each read the whole log (0.8-1.5 s).
"""
from alembic import op

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_audit_log_record_id", "audit_log", ["record_id"])
    op.create_index("ix_audit_log_request_id", "audit_log", ["request_id"])


def downgrade():
    op.drop_index("ix_audit_log_request_id", table_name="audit_log")
    op.drop_index("ix_audit_log_record_id", table_name="audit_log")

"""The audit log, read-only: who changed what, when, before and after, from which request."""
from __future__ import annotations

import re

from markupsafe import Markup

from ..models import AuditLog
from ..services.audit import INTERNAL_FIELDS, changed_fields
from .base import ReadOnlyModelView

GENERATED_REQUEST_ID = re.compile(r"(?i)[0-9a-f]{32}")


def _changes(view, context, model, name) -> str:
    if model.before is None or model.after is None:
        return ""
    return ", ".join(changed_fields(model.before, model.after))


def _record(view, context, model, name) -> Markup:
    return Markup("{} <code>{}</code>").format(model.model, model.record_id or "-")


class AuditLogView(ReadOnlyModelView):
    details_template = "admin/audit_detail.html"
    column_list = ("created_at", "actor_email", "action", "record", "changes", "request_id")
    column_labels = {"created_at": "When (UTC)", "actor_email": "Who", "record": "Record",
                     "changes": "Changed", "request_id": "Request id"}
    column_formatters = {"changes": _changes, "record": _record}
    column_sortable_list = ("created_at", "actor_email", "action", "model")
    column_searchable_list = ("actor_email", "model", "record_id", "request_id")
    column_filters = ("model", "action", "record_id", "actor_email", "request_id", "created_at")
    column_default_sort = [("created_at", True), ("id", True)]
    named_filter_urls = True

    def exact_search(self, search: str) -> list | None:
        """A request id as the shop makes them (32 hex digits) finds its entries by index."""
        if GENERATED_REQUEST_ID.fullmatch(search):
            return [AuditLog.request_id == search.lower()]
        return None

    def changed(self, entry) -> list[str]:
        return changed_fields(entry.before, entry.after)

    def rows(self, entry) -> list[tuple[str, object, object, bool]]:
        """(field, before, after, changed) for the detail page."""
        before, after = entry.before or {}, entry.after or {}
        keys = [k for k in list(before) + [k for k in after if k not in before]
                if k not in INTERNAL_FIELDS]
        return [(k, before.get(k), after.get(k), before.get(k) != after.get(k)) for k in keys]

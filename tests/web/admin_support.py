"""Helpers for the back office tests: log in as staff, read a form as a browser would."""
from __future__ import annotations

from html.parser import HTMLParser


class _FormReader(HTMLParser):
    """The successful controls of the first form with class "admin-form" (what a browser
    would submit). Inline-list templates are escaped text, so they are not read."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.fields: list[tuple[str, str]] = []
        self._in_form = False
        self._done = False
        self._textarea: str | None = None
        self._text: list[str] = []
        self._select: str | None = None
        self._select_first: str | None = None
        self._select_chosen = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and "admin-form" in (a.get("class") or "") and not self._done:
            self._in_form = True
            return
        if not self._in_form:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = (a.get("type") or "text").lower()
            if kind in ("submit", "button", "file", "image", "reset"):
                return
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            self.fields.append((name, a.get("value") or ("y" if kind == "checkbox" else "")))
        elif tag == "textarea" and name:
            self._textarea, self._text = name, []
        elif tag == "select" and name:
            self._select, self._select_first, self._select_chosen = name, None, False
        elif tag == "option" and self._select:
            value = a.get("value", "")
            if self._select_first is None:
                self._select_first = value
            if "selected" in a:
                self.fields.append((self._select, value))
                self._select_chosen = True

    def handle_data(self, data):
        if self._textarea is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "form" and self._in_form:
            self._in_form, self._done = False, True
        elif tag == "textarea" and self._textarea is not None:
            # As a browser reads the page: CR LF as LF, and the first line break dropped.
            text = "".join(self._text).replace("\r\n", "\n").replace("\r", "\n")
            self.fields.append((self._textarea, text[1:] if text.startswith("\n") else text))
            self._textarea = None
        elif tag == "select" and self._select:
            if not self._select_chosen and self._select_first is not None:
                self.fields.append((self._select, self._select_first))
            self._select = None


def read_form(html: str) -> dict[str, str]:
    """The admin form's fields as a dict (the last value wins for repeated names)."""
    reader = _FormReader()
    reader.feed(html)
    return dict(reader.fields)


def variant_prefix(form: dict[str, str], sku: str) -> str:
    """The field-name prefix ("variants-0-") of the product form's variant with this SKU."""
    key = next(k for k, v in form.items() if k.startswith("variants-") and k.endswith("-sku")
               and v == sku)
    return key.removesuffix("sku")


def login_staff(auth, role: str = "staff", email: str | None = None):
    from tests import factories as f

    email = email or f"{role}@example.com"
    user = f.user(email, role=role, name=f"{role.title()} Person")
    auth.login(email)
    return user

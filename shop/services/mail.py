"""Outgoing mail: SMTP when MAIL_SERVER is configured, files in instance/outbox/ otherwise."""
from __future__ import annotations

import io
import re
import secrets
import smtplib
import uuid
from datetime import UTC, datetime
from email.charset import QP, Charset
from email.generator import BytesGenerator
from email.message import EmailMessage, Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate, make_msgid
from pathlib import Path

from flask import current_app, has_request_context

# Bodies that are not plain ASCII (or have a line too long to send as it is) go out as
# quoted-printable UTF-8: readable, and safe on any mail server (no 8BITMIME needed).
_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP


# A line of mail is at most 998 characters (RFC 5322), and 7bit sends lines as they are.
MAX_LINE = 998


def _as_is(body: str) -> bool:
    """Whether a body can go as it is (7bit): plain ASCII, no line longer than mail allows (an
    address typed with '&'s, each &amp; in the HTML, made one line of 2,000 characters)."""
    return body.isascii() and max(map(len, body.splitlines()), default=0) <= MAX_LINE


def _text_part(body: str, subtype: str) -> MIMEText:
    return MIMEText(body, subtype, "us-ascii" if _as_is(body) else _UTF8_QP)


def _cte(body: str) -> str:
    return "7bit" if _as_is(body) else "quoted-printable"


def build(sender: str, to: str, subject: str, text: str, html: str | None = None) -> Message:
    """The message: text, or text and HTML as alternatives.

    Headers in plain ASCII (the usual case: addresses, "Your order SO-...") are written by the
    email package's classic MIME classes, three times cheaper than EmailMessage's header
    objects, which matters for an order confirmation sent inline while the shopper waits.
    Anything else (a shop or customer name with accents) goes through EmailMessage, which
    encodes such headers properly."""
    headers = {"From": sender, "To": to, "Subject": subject, "Date": formatdate(usegmt=True),
               "Message-ID": make_msgid(domain="shop.local")}
    if all(value.isascii() for value in headers.values()):
        msg: Message = _text_part(text, "plain")
        if html:
            # A boundary of our own (random, checked against the bodies): the email package
            # would otherwise make one and compile a new regular expression to check it.
            msg = MIMEMultipart("alternative", _subparts=[msg, _text_part(html, "html")],
                                boundary=_boundary(text, html))
    else:
        msg = EmailMessage()
        msg.set_content(text, cte=_cte(text))
        if html:
            msg.add_alternative(html, subtype="html", cte=_cte(html))
    for name, value in headers.items():
        msg[name] = value
    return msg


def _boundary(*bodies: str) -> str:
    while True:
        boundary = "=_shop_" + secrets.token_hex(16)
        if not any(boundary in body for body in bodies):
            return boundary


# A header line the email package's compat32 folding leaves as it is: printable ASCII, one
# line, no run of spaces or tabs, at most 78 characters in all.
_PLAIN_HEADER = re.compile(r"[!-~]+(?: [!-~]+)*\Z")


class _Generator(BytesGenerator):
    """The email package's generator (compat32), writing a plain header (see _PLAIN_HEADER)
    as it is instead of folding it through a Header object: the same bytes, a fifth of the
    cost of serialising an order confirmation. Any other header is folded as before."""

    def _write_headers(self, msg: Message) -> None:
        fold, write, linesep = self.policy.fold_binary, self._fp.write, self.policy.linesep
        for name, value in msg.raw_items():
            if type(value) is str and len(name) + len(value) <= 76 and \
                    _PLAIN_HEADER.match(value) and name.isascii():
                write(f"{name}: {value}{linesep}".encode("ascii"))
            else:
                write(fold(name, value))
        self.write(self._NL)


def as_bytes(msg: Message) -> bytes:
    """The message as it is written to the outbox or sent: what bytes(msg) gives."""
    out = io.BytesIO()
    _Generator(out, mangle_from_=False, policy=msg.policy).flatten(msg, unixfrom=False)
    return out.getvalue()


SMTP_TIMEOUT, SMTP_TIMEOUT_IN_REQUEST = 20, 5  # seconds


def send(to: str, subject: str, text: str, html: str | None = None) -> str:
    """Send one message (text, and HTML when given); returns its Message-ID."""
    cfg = current_app.config
    msg = build(cfg["MAIL_DEFAULT_SENDER"], to, subject, text, html)
    if cfg.get("MAIL_SERVER"):
        # Sent inline in a request (no Redis worker, or Redis away), a mail server that does
        # not answer must not hold the shopper past gunicorn's timeout: an order with its
        # confirmation and a low-stock alert waited twice 20 s, and gunicorn killed the
        # worker (a 502 for an order that was placed). A worker's job may wait longer.
        timeout = SMTP_TIMEOUT_IN_REQUEST if has_request_context() else SMTP_TIMEOUT
        with smtplib.SMTP(cfg["MAIL_SERVER"], cfg["MAIL_PORT"], timeout=timeout) as smtp:
            if cfg.get("MAIL_USE_TLS"):
                smtp.starttls()
            if cfg.get("MAIL_USERNAME"):
                smtp.login(cfg["MAIL_USERNAME"], cfg["MAIL_PASSWORD"] or "")
            smtp.send_message(msg)
    else:
        outbox = Path(cfg["OUTBOX_DIR"])
        outbox.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        name = f"{stamp}-{uuid.uuid4().hex[:8]}.eml"
        (outbox / name).write_bytes(as_bytes(msg))
    current_app.logger.info("mail sent to %s: %s", to, subject)
    return msg["Message-ID"]

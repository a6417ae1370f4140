"""Session cookies and CSRF tokens are signed by the shop's kept serializers (shop/sessions.py):
whatever they write, Flask's and Flask-WTF's own code reads, and the other way round, with the
current key and with fallback keys; the Set-Cookie header is the one Flask writes."""
from __future__ import annotations

import time

import pytest
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_wtf.csrf import ValidationError, generate_csrf, validate_csrf
from itsdangerous import BadSignature
from werkzeug.wrappers import Response

from shop.sessions import csrf_serializer, csrf_token, new_csrf_secret

NOW = 1_800_000_000.0


def stock(app):
    """Flask's own session interface, as Flask would use it for this app."""
    return SecureCookieSessionInterface().get_signing_serializer(app)


@pytest.mark.parametrize("data", [
    {"csrf_token": "a" * 40},
    {"csrf_token": new_csrf_secret(), "_fresh": False},
    # Large enough to be compressed, as itsdangerous does.
    {"csrf_token": new_csrf_secret(), "_flashes": [("info", "Added to your cart. " * 20)]},
])
def test_session_cookies_are_read_by_flask_and_read_flasks(app, data):
    ours = app.session_interface.get_signing_serializer(app)
    signed = ours.dumps(data)
    assert stock(app).loads(signed) == ours.loads(signed) == data
    assert ours.loads(stock(app).dumps(data)) == data
    if len(str(data)) > 200:
        assert signed.startswith(".")  # compressed


def test_cookies_signed_before_a_key_rotation_are_still_read(make_app):
    old = make_app(SECRET_KEY="old-key-" + "x" * 24)
    new = make_app(SECRET_KEY="new-key-" + "y" * 24, SECRET_KEY_FALLBACKS=[old.secret_key])
    data = {"csrf_token": new_csrf_secret()}
    before = old.session_interface.get_signing_serializer(old).dumps(data)
    assert new.session_interface.get_signing_serializer(new).loads(before) == data
    after = new.session_interface.get_signing_serializer(new).dumps(data)
    assert stock(new).loads(after) == data
    with pytest.raises(BadSignature):
        old.session_interface.get_signing_serializer(old).loads(after)


def test_the_set_cookie_header_is_the_one_flask_writes(app, monkeypatch):
    monkeypatch.setattr(time, "time", lambda: NOW)
    data = {"csrf_token": new_csrf_secret()}
    for secure, samesite in ((False, "Lax"), (True, "Strict")):
        app.config.update(SESSION_COOKIE_SECURE=secure, SESSION_COOKIE_SAMESITE=samesite)
        with app.test_request_context("/"):
            ours, theirs = Response(), Response()
            for interface, response in ((app.session_interface, ours),
                                        (SecureCookieSessionInterface(), theirs)):
                session = SecureCookieSession(data)
                session.modified = True
                interface.save_session(app, session, response)
        assert ours.headers.getlist("Set-Cookie") == theirs.headers.getlist("Set-Cookie")
        assert ours.headers["Vary"] == theirs.headers["Vary"] == "Cookie"
        assert app.session_interface.cookie(app, data) == theirs.headers["Set-Cookie"]


def test_csrf_tokens_are_the_ones_flask_wtf_signs_and_checks(app, monkeypatch):
    monkeypatch.setattr(time, "time", lambda: NOW)
    with app.test_request_context("/"):
        from flask import g, session

        token = csrf_token()
        assert csrf_token() == token  # one per request
        secret = session["csrf_token"]
        g.pop("csrf_token")
        assert generate_csrf() == token  # Flask-WTF signs the same secret the same way
        validate_csrf(token)
        assert csrf_serializer(app).loads(token) == secret
        with pytest.raises(ValidationError):
            validate_csrf(token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))


def test_a_new_visitors_cookie_and_token_signed_from_their_json_are_flasks(app, monkeypatch):
    """The page cache signs a new visitor's session cookie and CSRF token from their compact
    JSON (dumps_json): byte for byte what Flask's session interface and Flask-WTF write."""
    import json

    monkeypatch.setattr(time, "time", lambda: NOW)
    secret = new_csrf_secret()
    data = {"csrf_token": secret}
    raw = b'{"csrf_token":%s}' % json.dumps(secret).encode()
    with app.test_request_context("/"):
        theirs = Response()
        session = SecureCookieSession(data)
        session.modified = True
        SecureCookieSessionInterface().save_session(app, session, theirs)
        assert app.session_interface.cookie(app, raw) == theirs.headers["Set-Cookie"]
        assert stock(app).dumps(data) == \
            app.session_interface.get_signing_serializer(app).dumps_json(raw)
        from flask import session as flask_session

        flask_session["csrf_token"] = secret
        token = generate_csrf()
    assert csrf_serializer(app).dumps_json(json.dumps(secret).encode()) == token

"""Signed-cookie sessions and CSRF tokens, with their serializers built once per key.

Flask's SecureCookieSessionInterface and Flask-WTF's generate_csrf build a new
URLSafeTimedSerializer on every request (and every token); on a catalogue page that is a
good part of the request's cost. These do the same work with the same formats, so cookies and
tokens stay what Flask and Flask-WTF write and read (Flask-WTF's CSRFProtect still checks
every form), but each serializer is made once per secret key.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os

from flask import Flask, current_app, g, session
from flask.sessions import SecureCookieSessionInterface, SessionMixin
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode, int_to_bytes
from itsdangerous.signer import HMACAlgorithm, _lazy_sha1
from werkzeug.http import dump_cookie

CSRF_SALT = "wtf-csrf-token"  # Flask-WTF's


# Payloads shorter than this are not offered to zlib: a session holding a CSRF secret or a
# token (random hex) never gets shorter compressed, and trying costs more than the signature.
# Readers accept both forms, so this changes nothing but the cost.
_COMPRESS_FROM = 128


class _KeptKeySigner(TimestampSigner):
    """itsdangerous' signer, deriving its signing key once instead of at every signature,
    and computing HMACs in one call (same signatures)."""

    def derive_key(self, secret_key=None):
        # Signing derives from the newest key; checking a signature derives from each key in
        # turn (key rotation): both kept per key.
        derived = self.__dict__.get("_derived")
        if derived is None:
            derived = self._derived = {}
        key = derived.get(secret_key)
        if key is None:
            key = derived[secret_key] = super().derive_key(secret_key)
        return key

    def get_signature(self, value):
        algorithm = self.algorithm
        if type(algorithm) is not HMACAlgorithm:
            return super().get_signature(value)
        digest = algorithm.digest_method
        if isinstance(value, str):
            value = value.encode("utf-8")
        return base64_encode(hmac.digest(self.derive_key(), value,
                                         "sha1" if digest is _lazy_sha1 else digest))

    def sign(self, value):
        if isinstance(value, str):
            value = value.encode("utf-8")
        sep = self.sep if isinstance(self.sep, bytes) else self.sep.encode("utf-8")
        value = value + sep + base64_encode(int_to_bytes(self.get_timestamp()))
        return value + sep + self.get_signature(value)


class KeptSerializer(URLSafeTimedSerializer):
    """URLSafeTimedSerializer that makes its signer once per salt and signs small payloads
    without trying to compress them (tokens and cookies that itsdangerous reads as its own)."""

    default_signer = _KeptKeySigner

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._signers: dict = {}

    def make_signer(self, salt=None):
        signer = self._signers.get(salt)
        if signer is None:
            signer = self._signers[salt] = super().make_signer(salt)
        return signer

    def dumps_json(self, data: bytes) -> str:
        """What dumps(obj) returns for an obj whose compact JSON is `data` (too short to be
        compressed): a new visitor's session cookie and CSRF token on a cached page, signed
        without going through the JSON serializer and its tags each time."""
        return self.make_signer(None).sign(base64_encode(data)).decode("utf-8")

    def dump_payload(self, obj):
        data = self.serializer.dumps(obj, **self.serializer_kwargs)
        if isinstance(data, str):
            data = data.encode("utf-8")
        if len(data) >= _COMPRESS_FROM:
            return super().dump_payload(obj)
        return base64_encode(data)


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session; the signing serializer is kept while the keys stay, and
    the cookie of a session that is not permanent is written from its attributes worked out
    once (the same Set-Cookie header Flask writes)."""

    def __init__(self) -> None:
        self._serializer: tuple[tuple, URLSafeTimedSerializer | None] | None = None
        self._attributes: tuple[tuple, str] | None = None

    def cookie(self, app: Flask, data: dict | bytes) -> str:
        """The Set-Cookie value of a session holding `data` that is not permanent (no
        expiry): what save_session writes for it. `data` may also be the session's compact
        JSON, as Flask's serializer writes it."""
        options = (self.get_cookie_name(app), self.get_cookie_domain(app),
                   self.get_cookie_path(app), self.get_cookie_secure(app),
                   self.get_cookie_partitioned(app), self.get_cookie_samesite(app),
                   self.get_cookie_httponly(app))
        kept = self._attributes
        if kept is None or kept[0] != options:
            name, domain, path, secure, partitioned, samesite, httponly = options
            sample = dump_cookie(name, "v", domain=domain, path=path, secure=secure,
                                 partitioned=partitioned, samesite=samesite, httponly=httponly)
            kept = self._attributes = (options, sample[len(name) + 2:])
        serializer = self.get_signing_serializer(app)
        value = (serializer.dumps_json(data) if isinstance(data, bytes)  # type: ignore[union-attr]
                 else serializer.dumps(data))  # type: ignore[union-attr]
        return f"{options[0]}={value}{kept[1]}"

    def save_session(self, app: Flask, session: SessionMixin, response) -> None:  # type: ignore[override]
        if session and session.modified and not session.permanent:
            response.vary.add("Cookie")
            data = dict(session)
            secret = data.get("csrf_token")
            if len(data) == 1 and type(secret) is str:
                # A new visitor's session, holding its CSRF secret alone: signed from its
                # compact JSON, as Flask's serializer writes it.
                data = b'{"csrf_token":%s}' % json.dumps(secret).encode()
            response.headers.add("Set-Cookie", self.cookie(app, data))
            return
        super().save_session(app, session, response)

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:  # type: ignore[override]
        keys = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        cached = self._serializer
        if cached is None or cached[0] != keys:
            serializer = None
            if app.secret_key:
                serializer = KeptSerializer(
                    [*keys[1], keys[0]], salt=self.salt, serializer=self.serializer,
                    signer_kwargs={"key_derivation": self.key_derivation,
                                   "digest_method": self.digest_method})
            cached = self._serializer = (keys, serializer)
        return cached[1]


_CSRF: dict[object, URLSafeTimedSerializer] = {}


def csrf_serializer(app: Flask) -> URLSafeTimedSerializer:
    """The serializer Flask-WTF signs its tokens with, for this app's key."""
    key = app.config.get("WTF_CSRF_SECRET_KEY") or app.secret_key
    serializer = _CSRF.get(key)
    if serializer is None:
        if len(_CSRF) > 8:
            _CSRF.clear()
        serializer = _CSRF[key] = KeptSerializer(key, salt=CSRF_SALT)
    return serializer


def new_csrf_secret() -> str:
    """A session's CSRF secret, made as Flask-WTF makes it."""
    return hashlib.sha1(os.urandom(64)).hexdigest()


def csrf_token() -> str:
    """This request's CSRF token: flask_wtf.csrf.generate_csrf, with a kept serializer. The
    secret lives in the session under WTF_CSRF_FIELD_NAME; the token is remembered in `g`."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    field = app.config.get("WTF_CSRF_FIELD_NAME") or "csrf_token"
    token = g.get(field)
    if token is None:
        secret = session.get(field)
        if not isinstance(secret, str):
            secret = session[field] = new_csrf_secret()
        token = csrf_serializer(app).dumps_json(json.dumps(secret).encode())
        setattr(g, field, token)
    return token


def init_app(app: Flask) -> None:
    app.session_interface = SessionInterface()
    # Flask-WTF offers generate_csrf to templates both as a global and through a context
    # processor (which would win): templates get csrf_token() instead, the same token.
    app.jinja_env.globals["csrf_token"] = csrf_token
    processors = app.template_context_processors[None]
    processors[:] = [p for p in processors if getattr(p, "__module__", "") != "flask_wtf.csrf"]

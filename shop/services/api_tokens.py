"""Bearer tokens for the JSON API: random, stored only as SHA-256, expiring, revocable."""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from flask import current_app
from sqlalchemy import select, update

from ..extensions import db
from ..models import ApiToken, User, utcnow
from .addresses import unprintable
from .database import write_transaction
from .errors import AuthError, NotFound, ValidationError

PREFIX = "shp_"
# A user may hold this many live tokens; a new one beyond it retires the oldest.
MAX_ACTIVE_PER_USER = 25
# last_used_at is a hint for the account page, written at most this often per token.
TOUCH_EVERY = timedelta(minutes=5)


def hash_token(raw: str) -> str:
    """The stored form of a token: a lookup key that cannot be turned back into the token."""
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def create(user_id: int, name: str = "") -> tuple[ApiToken, str]:
    """A new token for the user; returns the record and the token itself (shown only once)."""
    label = " ".join((name or "").split())[:120]
    if unprintable(label):
        # Shown on the account page: a NUL made the page invalid HTML, a right-to-left
        # override made it say something else.
        raise ValidationError({"name": "The name has a character that cannot be shown; "
                                       "please type it again."})
    raw = PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    expires = now + timedelta(days=int(current_app.config["API_TOKEN_DAYS"]))
    with write_transaction():
        token = ApiToken(user_id=user_id, token_hash=hash_token(raw),
                         name=label, created_at=now,
                         expires_at=expires)
        db.session.add(token)
        db.session.flush()
        live = list(db.session.execute(
            select(ApiToken.id).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None),
                                      ApiToken.expires_at > now)
            .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())).scalars())
        retired = live[MAX_ACTIVE_PER_USER:]
        if retired:
            db.session.execute(update(ApiToken).where(ApiToken.id.in_(retired))
                               .values(revoked_at=now)
                               .execution_options(synchronize_session=False))
        token_id = token.id
    return db.session.get(ApiToken, token_id), raw


def verify(raw: str | None) -> ApiToken:
    """The live token for a bearer string, with an active user; AuthError otherwise."""
    if not raw or not raw.startswith(PREFIX) or len(raw) > 200:
        raise AuthError("The API token is not valid.", code="invalid_token")
    token = db.session.execute(select(ApiToken).where(ApiToken.token_hash == hash_token(raw))
                               ).scalar_one_or_none()
    if token is None:
        raise AuthError("The API token is not valid.", code="invalid_token")
    if token.revoked_at is not None:
        raise AuthError("The API token was revoked.", code="token_revoked")
    if token.expires_at <= utcnow():
        raise AuthError("The API token has expired. Ask for a new one.", code="token_expired")
    user = db.session.get(User, token.user_id)
    if user is None or not user.active:
        raise AuthError("The API token is not valid.", code="invalid_token")
    return token


def touch(token: ApiToken) -> None:
    """Note that a token was used (written at most every few minutes, so reads stay cheap)."""
    if token.last_used_at is not None and token.last_used_at >= utcnow() - TOUCH_EVERY:
        return
    token_id = token.id
    with write_transaction():
        now = utcnow()
        db.session.execute(update(ApiToken).where(
            ApiToken.id == token_id,
            ApiToken.last_used_at.is_(None) | (ApiToken.last_used_at < now - TOUCH_EVERY))
            .values(last_used_at=now).execution_options(synchronize_session=False))


def revoke(user_id: int, token_id: int) -> None:
    """Revoke one of the user's tokens; another user's token is reported as not found."""
    with write_transaction():
        token = db.session.execute(select(ApiToken).where(
            ApiToken.id == token_id, ApiToken.user_id == user_id)).scalar_one_or_none()
        if token is None:
            raise NotFound("That token does not exist.")
        if token.revoked_at is None:
            token.revoked_at = utcnow()


def revoke_all(user_id: int) -> None:
    """Revoke every live token of the user (their password changed). Only flushes."""
    db.session.execute(update(ApiToken).where(ApiToken.user_id == user_id,
                                              ApiToken.revoked_at.is_(None))
                       .values(revoked_at=utcnow()).execution_options(synchronize_session=False))


def revoke_raw(raw: str) -> None:
    """Revoke the token presented as a bearer string (its holder logs it out)."""
    token = verify(raw)
    revoke(token.user_id, token.id)


def for_user(user_id: int) -> list[ApiToken]:
    """The user's tokens that still work, newest first."""
    return list(db.session.execute(
        select(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None),
                               ApiToken.expires_at > utcnow())
        .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())).scalars())

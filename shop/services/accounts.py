"""Accounts: registration, authentication, password rules and reset links, profile changes."""
from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from collections.abc import Callable
from datetime import timedelta

from email_validator import EmailNotValidError, validate_email
from flask import current_app, render_template
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.util import identity_key
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db
from ..models import ROLES, EndedLogin, User, utcnow
from ..models.base import is_id
from . import addresses, api_tokens, audit, coupons, jobs, links, mail, reads, reviews
from .database import write_transaction
from .errors import AuthError, NotFound, ShopError, ValidationError

MIN_PASSWORD = 10
MAX_PASSWORD = 200
COMMON_PASSWORDS = {"password", "password1", "password123", "1234567890", "qwertyuiop",
                    "123456789", "12345678910", "iloveyou", "letmein123", "welcome123",
                    "abcdefghij", "qwerty1234", "passw0rd123", "administrator"}
# Checked against when an email is unknown, so a login takes as long either way: one per
# hash method (config PASSWORD_HASH_METHOD), made with the accounts' own costs.
_DUMMY_HASHES: dict[str, str] = {}


def _dummy_hash() -> str:
    method = _hash_method()
    if method not in _DUMMY_HASHES:
        _DUMMY_HASHES[method] = generate_password_hash("not-a-real-password-0", method=method)
    return _DUMMY_HASHES[method]


def _hash_method() -> str:
    return current_app.config.get("PASSWORD_HASH_METHOD") or "scrypt"


def normalise_email(email: str | None) -> str:
    """Trimmed, lower case and in Unicode's composed form (NFC): "é" typed as one character or
    as e plus a combining accent is one address, with one account."""
    return unicodedata.normalize("NFC", (email or "").strip().lower())


def limit_key(scope: str, email: str | None) -> str:
    """The rate-limit key of an email address as it was typed (normalised): a digest, so a
    key is short whatever was sent. The address itself made the key: one 4 MB "email" on the
    login or reset form was a 4 MB key in the shared Redis, kept for an hour."""
    digest = hashlib.sha256(normalise_email(email).encode("utf-8", "surrogatepass")).hexdigest()
    return f"{scope}:{digest[:32]}"


def valid_email(email: str) -> bool:
    """A syntactically valid address (no DNS look-up: the shop may run offline)."""
    if not email or len(email) > 254:
        return False
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def password_problem(password: str, email: str = "") -> str | None:
    """Why a password is too weak, or None."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        return f"Use at least {MIN_PASSWORD} characters."
    if len(password) > MAX_PASSWORD:
        return f"Use at most {MAX_PASSWORD} characters."
    if password.lower() in COMMON_PASSWORDS or len(set(password)) < 4:
        return "That password is too easy to guess; choose another."
    local = email.split("@")[0].lower() if email else ""
    if local and len(local) >= 4 and local in password.lower():
        return "Do not use your email address in your password."
    if not (re.search(r"[A-Za-z]", password) and re.search(r"[^A-Za-z]", password)):
        return "Mix letters with numbers or symbols."
    return None


def hash_password(password: str) -> str:
    """scrypt (Werkzeug's default): memory-hard, no extra dependency (its costs: config
    PASSWORD_HASH_METHOD)."""
    return generate_password_hash(password, method=_hash_method())


# The columns a request's user needs on every page (created_at and the addresses load from
# the Session when something reads them).
_SESSION_USER_SQL = ("SELECT id, email, password_hash, name, role, active, session_epoch "
                     "FROM users WHERE id = :id")


def session_user(user_id: int) -> User | None:
    """The logged-in user of a request (Flask-Login's user loader), None when the account is
    gone or inactive.

    Read with one plain SELECT (services.reads) and put in the request's Session as if the
    Session had loaded it, so views change and save it like any loaded object: loading it
    through the Session (statement, result and identity machinery, and the transaction it
    begins) cost a logged-in shopper about a fifth of a catalogue page."""
    session = db.session
    known = session.identity_map.get(identity_key(User, user_id))
    if known is not None:  # already loaded in this Session (a test's, or a CLI's)
        return known if known.active else None
    found = reads.rows(_SESSION_USER_SQL, {"id": user_id})
    if not found:
        return None
    uid, email, password_hash, name, role, active, session_epoch = found[0]
    if not active:
        return None
    user = User(id=uid, email=email, password_hash=password_hash, name=name, role=role,
                active=True, session_epoch=session_epoch)
    make_transient_to_detached(user)  # clean, as if just loaded; the rest loads when read
    session.add(user)
    return user


def find_by_email(email: str) -> User | None:
    """The account of this address (after normalise_email), None if there is none.

    Compared again here because MySQL's default collation ignores accents and widths:
    there "cüstomer@example.com" finds customer@example.com, and each such spelling would try
    passwords or ask for reset mail under a rate-limit key of its own."""
    email = normalise_email(email)
    user = db.session.execute(select(User).where(User.email == email)).scalar_one_or_none()
    return user if user is not None and normalise_email(user.email) == email else None


PASSWORDS_DIFFER = "The two passwords do not match."


def _password_errors(password: str, email: str, confirm: str | None) -> dict[str, str]:
    """What is wrong with a new password, and with its repeat when the form asks for one."""
    errors: dict[str, str] = {}
    if problem := password_problem(password, email):
        errors["password"] = problem
    if confirm is not None and confirm != password:
        errors["password_confirm"] = PASSWORDS_DIFFER
    return errors


def register(email: str, password: str, name: str = "", role: str = "customer", *,
             confirm: str | None = None) -> User:
    """Create an account; ValidationError lists every problem (including a taken email, and a
    repeat of the password that differs when the form asks for one: `confirm`)."""
    email = normalise_email(email if isinstance(email, str) else "")
    name = " ".join((name if isinstance(name, str) else "").split())
    errors: dict[str, str] = {}
    if not valid_email(email):
        errors["email"] = "Enter a valid email address."
    errors.update(_password_errors(password, email, confirm))
    if problem := name_problem(name):
        errors["name"] = problem
    if role not in ROLES:
        errors["role"] = "Unknown role."
    if "email" not in errors and find_by_email(email) is not None:
        errors["email"] = "An account with this email already exists. Log in instead?"
    if errors:
        raise ValidationError(errors)
    try:
        with write_transaction():
            user = User(email=email, password_hash=hash_password(password), name=name, role=role)
            db.session.add(user)
            db.session.flush()
            user_id = user.id
            coupons.link_account(user_id, email)
    except IntegrityError as exc:
        raise ValidationError({"email": "An account with this email already exists."}) from exc
    return db.session.get(User, user_id)


def authenticate(email: str, password: str) -> User:
    """The active user with this email and password; AuthError otherwise (one message for all).
    An empty email or password is asked for (ValidationError), not called wrong: nothing was
    tried, so it tells nothing of the account and is no failed attempt for the limits."""
    errors: dict[str, str] = {}
    if email == "" or (isinstance(email, str) and not normalise_email(email)):
        errors["email"] = "Enter your email address."
    if password == "":
        errors["password"] = "Enter your password."
    if errors:
        raise ValidationError(errors)
    user = find_by_email(email) if isinstance(email, str) else None
    if user is None or not isinstance(password, str):
        check_password_hash(_dummy_hash(), password if isinstance(password, str) else "")
        raise AuthError("Wrong email or password.")
    if not check_password_hash(user.password_hash, password) or not user.active:
        raise AuthError("Wrong email or password.")
    return user


def _reset_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="password-reset")


def password_fingerprint(user: User) -> str:
    """Changes whenever the password changes or the account is deactivated (its
    session_epoch): a used reset link stops working (single use), and sessions started
    before a password change or a deactivation end, also once the account is reactivated."""
    epoch = user.session_epoch or 0
    key = user.password_hash if not epoch else f"{user.password_hash}:{epoch}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def new_login_id() -> str:
    """The id of one login, carried by its session and remember-me cookies (end_login)."""
    return secrets.token_hex(16)


def end_login(login_id: str, user_id: int) -> None:
    """"Log out": this login's cookies are refused from now on wherever a copy of them turns
    up (they are signed cookies, kept in browsers only), until the longest of them would
    have expired anyway (then `maintenance.purge_stale` forgets it)."""
    config = current_app.config
    lifetime = max(config["PERMANENT_SESSION_LIFETIME"], config["REMEMBER_COOKIE_DURATION"])
    with write_transaction():
        if db.session.get(EndedLogin, login_id) is None:
            db.session.add(EndedLogin(login_id=login_id, user_id=user_id,
                                      expires_at=utcnow() + lifetime + timedelta(days=1)))


def login_ended(login_id: str) -> bool:
    """Whether this login was ended by "Log out" (a plain read: a logged-in customer's
    catalogue page begins no transaction for it)."""
    return bool(reads.rows("SELECT 1 FROM ended_logins WHERE login_id = :id", {"id": login_id}))


def end_all_sessions(user: User) -> None:
    """End every session, remember-me cookie and API token of the account, as a password
    change does, without changing the password. Only flushes (the caller's transaction)."""
    user.session_epoch = (user.session_epoch or 0) + 1
    api_tokens.revoke_all(user.id)


def set_active(user_id: int, active: bool, *, may_change: Callable[[User], bool],
               refusal: str, who: audit.Who, request_id: str = "") -> bool:
    """Deactivate or reactivate an account, audited; False when it already was so.
    `may_change(user)` says whether the caller may (ShopError(refusal) when not).

    A deactivated account cannot log in, and in the same transaction every session,
    remember-me cookie and API token it had ends (end_all_sessions): reactivating it later
    does not bring them back."""
    with write_transaction():
        user = db.session.get(User, user_id) if is_id(user_id) else None
        if user is None:
            raise NotFound("That account does not exist.")
        if not may_change(user):
            raise ShopError(refusal)
        if user.active == active:
            return False
        before = audit.snapshot(user)
        user.active = active
        if not active:
            end_all_sessions(user)
        db.session.flush()
        audit.record(who, "activate" if active else "deactivate", "User", user.id,
                     before=before, after=audit.snapshot(user), request_id=request_id)
    return True


def _reset_fingerprint(user: User) -> str:
    """The password's fingerprint and the email the link was sent to: a reset link stops
    working once used, after any password change, and once the account's email changes (the
    old mailbox must not keep a way in)."""
    return hashlib.sha256(f"{password_fingerprint(user)}:{user.email}".encode()).hexdigest()[:16]


RESET_LINK_USED = "This reset link was already used or is not valid. Ask for a new one."


def reset_token(user: User) -> str:
    return _reset_serializer().dumps({"uid": user.id, "fp": _reset_fingerprint(user)})


def user_for_reset_token(token: str) -> User:
    """The user a reset link belongs to; NotFound when it is invalid, used, expired or sent
    to an email the account no longer has."""
    max_age = int(current_app.config["PASSWORD_RESET_HOURS"]) * 3600
    try:
        data = _reset_serializer().loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise NotFound("This reset link has expired. Ask for a new one.") from exc
    except BadSignature as exc:
        raise NotFound("This reset link is not valid. Ask for a new one.") from exc
    user = db.session.get(User, data.get("uid")) if isinstance(data, dict) else None
    if user is None or not user.active or data.get("fp") != _reset_fingerprint(user):
        raise NotFound(RESET_LINK_USED)
    return user


def request_password_reset(email: str, url_root: str) -> None:
    """Queue the reset mail. The request does the same work whether or not an account has
    this email (the job finds out), so neither the answer nor its timing tells: without a
    worker the job runs after the answer is sent (after_response)."""
    # SHOP_BASE_URL, when set, keeps the link independent of the request's Host header.
    base = current_app.config.get("BASE_URL") or url_root
    jobs.enqueue(send_password_reset, normalise_email(email if isinstance(email, str) else ""),
                 base, after_response=True)


def send_password_reset(email: str, base_url: str) -> None:
    """The job: mail an expiring, single-use reset link to the active account with this
    email; nothing for an unknown or disabled one. The link is on SHOP_BASE_URL when it is
    set, else on `base_url` (the address the reset was asked on)."""
    user = find_by_email(email)
    if user is None or not user.active:
        return
    link = links.public_url("account.reset_password", base_url, token=reset_token(user))
    context = {"user": user, "link": link, "hours": current_app.config["PASSWORD_RESET_HOURS"],
               "shop": current_app.config["SHOP_NAME"]}
    mail.send(user.email, f"Reset your {context['shop']} password",
              render_template("mail/password_reset.txt", **context),
              render_template("mail/password_reset.html", **context))


def set_password(user_id: int, password: str, *, confirm: str | None = None,
                 errors: dict[str, str] | None = None, reset_from: str | None = None) -> None:
    """A new password (reset or change). Like the sessions started with the old one (ended by
    the web layer's fingerprint), the account's API tokens stop working: whoever had the old
    password may have made some. ValidationError names every problem at once: the password,
    its repeat (`confirm`), and the caller's own (`errors`).

    `reset_from`: the reset fingerprint the link was made for, checked again in the write with
    the account's row locked (reset_password)."""
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("That account does not exist.")
    errors = {**(errors or {}), **_password_errors(password, user.email, confirm)}
    if errors:
        raise ValidationError(errors)
    password_hash = hash_password(password)  # slow (scrypt): before the row is locked
    with write_transaction():
        user = db.session.execute(select(User).where(User.id == user_id).with_for_update()
                                  .execution_options(populate_existing=True)).scalar_one()
        if reset_from is not None and (not user.active
                                       or _reset_fingerprint(user) != reset_from):
            raise NotFound(RESET_LINK_USED)
        user.password_hash = password_hash
        api_tokens.revoke_all(user_id)


def reset_password(token: str, password: str, *, confirm: str | None = None) -> None:
    """A new password from a reset link, which works once. The link is checked when it is
    opened and again in the write, under the account's row lock: the same link sent twice at
    the same moment (two tabs, a double click, requests on two hosts) found it unused both
    times, and both changed the password. Now one does; the other gets NotFound (used)."""
    user = user_for_reset_token(token)
    set_password(user.id, password, confirm=confirm, reset_from=_reset_fingerprint(user))


WRONG_CURRENT_PASSWORD = "Your current password is not right."


def change_password(user_id: int, current: str, new: str, *,
                    confirm: str | None = None) -> None:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("That account does not exist.")
    if not current:
        problem: str | None = "Enter your current password."
    elif not check_password_hash(user.password_hash, current):
        problem = WRONG_CURRENT_PASSWORD
    else:
        problem = None
    set_password(user_id, new, confirm=confirm,
                 errors={"current_password": problem} if problem else None)


EMAIL_TAKEN = "Another account uses that email."


def clean_profile(name: str | None, email: str | None) -> tuple[str, str, dict[str, str]]:
    """A profile's name and email as they are stored (spaces collapsed, the email normalised)
    and what is wrong with them, by field (a taken email aside: see `email_taken`)."""
    email = normalise_email(email if isinstance(email, str) else "")
    name = " ".join((name if isinstance(name, str) else "").split())
    errors: dict[str, str] = {}
    if problem := name_problem(name):
        errors["name"] = problem
    if not valid_email(email):
        errors["email"] = "Enter a valid email address."
    return name, email, errors


def name_problem(name: str) -> str | None:
    """What is wrong with an account's name (spaces already collapsed), if anything: it is
    printed on pages, mails and the back office."""
    if len(name) > 120:
        return "Use at most 120 characters."
    if addresses.unprintable(name):
        return "Your name has a character that cannot be shown; please type it again."
    return None


def email_taken(email: str, *, except_user_id: int | None = None) -> bool:
    """Another account has this (normalised) email."""
    stmt = select(func.count(User.id)).where(User.email == normalise_email(email))
    if except_user_id is not None:
        stmt = stmt.where(User.id != except_user_id)
    return bool(db.session.execute(stmt).scalar_one())


def update_profile(user_id: int, name: str, email: str, current_password: str) -> User:
    """Change name and email; changing the email needs the current password."""
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("That account does not exist.")
    name, email, errors = clean_profile(name, email)
    if "email" not in errors and email != user.email:
        if not current_password:
            errors["current_password"] = "Enter your current password to change your email."
        elif not check_password_hash(user.password_hash, current_password):
            errors["current_password"] = WRONG_CURRENT_PASSWORD
        elif email_taken(email, except_user_id=user_id):
            errors["email"] = EMAIL_TAKEN
    if errors:
        raise ValidationError(errors)
    try:
        with write_transaction():
            user = db.session.get(User, user_id)
            old_name, user.name = user.name, name
            if user.email != email:
                user.email = email
                coupons.link_account(user_id, email)
    except IntegrityError as exc:
        raise ValidationError({"email": EMAIL_TAKEN}) from exc
    reviews.author_renamed(user_id, old_name, name)
    return db.session.get(User, user_id)


def create_admin(email: str, password: str, role: str = "admin") -> User:
    """The CLI's create-admin: make (or promote) a staff account."""
    existing = find_by_email(email)
    if existing is None:
        return register(email, password, name="Administrator", role=role)
    problem = password_problem(password, existing.email)
    if problem:
        raise ValidationError({"password": problem})
    with write_transaction():
        user = db.session.get(User, existing.id)
        user.role = role
        user.active = True
        user.password_hash = hash_password(password)
        api_tokens.revoke_all(existing.id)
    return db.session.get(User, existing.id)

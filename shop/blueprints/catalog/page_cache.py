"""Whole-page cache of catalogue pages for anonymous shoppers (Redis, via Flask-Caching).

Why a WSGI middleware: a cached page must cost little more than a hello-world answer, and the
full Flask request cycle (session, login, limits, hooks) already costs more than that. So the
hit path runs in front of Flask; everything else, misses included, goes through the app.

What may be served from the cache: a GET or HEAD of `/`, `/products`, `/c/<slug>` or
`/p/<slug>` (full page or htmx fragment, keyed apart; only the catalogue's own query
arguments) from a shopper with no session, or a
session holding nothing but its CSRF token: no account, no cart, no message waiting, no
checkout. Such a page differs between shoppers only by the CSRF token (forms, hx-headers), so
it is stored with a placeholder where the token was and each hit gets its own:
- a shopper with a session gets a token signed for the secret of that session (as
  Flask-WTF's generate_csrf does);
- a shopper without one gets a new session holding a new secret, set as Flask sets it.

Freshness: the key holds the URL and htmx-ness; the entry holds the catalogue version
(services.cache) it was rendered at and is served only while that version is current, so a
staff change is seen by the next request on every worker. Entries expire after
CATALOG_CACHE_SECONDS, which bounds how old the stock shown after an order can be. Each hit
checks the version Redis holds (services.cache.current_version: a tracked copy, a socket poll
when nothing changed, a GET otherwise); the page itself comes from the worker's memory
when it holds that page for that version, from Redis otherwise (shared by all workers and
hosts), and is rendered by the app when neither has it. With a read replica, a page rendered
within READ_YOUR_WRITES_SECONDS of a change reads the primary: the replica may not have the
change yet, and what is rendered now is served as the new version's until the next change.

A hit is logged and counted like any request (shop.access, shop_http_requests_total) and
carries the stored security headers, an X-Request-ID and `X-Cache: hit`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable

from flask import Flask, g, request, session
from flask_login import current_user
from itsdangerous import BadSignature
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_cookie
from werkzeug.wrappers import Response

from ...extensions import db
from ...http import REQUEST_ID, log_access, security_headers
from ...services import cache, metrics, redis_clients, routing
from ...sessions import csrf_serializer, new_csrf_secret

# The views the lean path renders (see PageCache._render).
LEAN_ENDPOINTS = frozenset({"catalog.home", "catalog.products", "catalog.category",
                            "catalog.product"})
CACHEABLE_PATH = re.compile(r"^/(?:products|c/[^/]+|p/[^/]+)?$")
# Keys an anonymous shopper's session may hold and still see cached pages.
ANONYMOUS_KEYS = frozenset({"csrf_token", "_fresh", "_permanent"})
PLACEHOLDER = b"__shop_csrf_token_7c1e__"
ENVIRON_KEY = "shop.page_cache"
LOCAL_PAGES = 256  # pages a worker keeps in memory (about 30 KB each)
LOCAL_SESSIONS = 4096  # checked session cookies a worker keeps (about 300 bytes each)
QUERY_ARGUMENTS = frozenset({"q", "category", "min_price", "max_price", "in_stock", "sort",
                             "page", "per_page", "variant"})
STORE_KEY = "shop.page_cache.store"
# Set per request by the app or this cache; never stored.
PER_REQUEST_HEADERS = {"set-cookie", "x-request-id", "content-length", "x-cache"}
log = logging.getLogger("shop.cache")


def install(app: Flask) -> None:
    """Put the cache in front of the app (inside ProxyFix when there is one, so the client
    address it logs is the real one)."""
    inner = app.wsgi_app
    if hasattr(inner, "x_for") and hasattr(inner, "app"):  # werkzeug's ProxyFix
        inner.app = PageCache(app, inner.app)
    else:
        app.wsgi_app = PageCache(app, inner)  # type: ignore[method-assign]


def not_for_the_cache() -> None:
    """This request's page is served but never stored (a view's call)."""
    g.not_for_the_cache = True


def offer(response: Response) -> Response:
    """After a catalogue view: mark the response for storing when it is the same for every
    anonymous shopper (the middleware stores it once it has left Flask)."""
    if (ENVIRON_KEY in request.environ and request.method == "GET"
            and response.status_code == 200 and not current_user.is_authenticated
            and set(session.keys()) <= ANONYMOUS_KEYS and session.get("_fresh") is not True
            and not g.get("cart_count") and not g.get("not_for_the_cache")):
        request.environ[STORE_KEY] = (request.endpoint or "", g.get("csrf_token"))
    elif ((current_user.is_authenticated or g.get("cart_count"))
          and "Cache-Control" not in response.headers):
        # A page with a shopper's own header (name, cart count) and form token: never in a
        # shared cache, asked again rather than shown from the browser's after logging out.
        response.headers["Cache-Control"] = "private, no-cache"
    return response


class PageCache:
    """The WSGI middleware; see the module docstring."""

    def __init__(self, app: Flask, wsgi_app: Callable) -> None:
        self.flask_app = app
        self.wsgi_app = wsgi_app
        # Pages this worker served lately, by key; each is used only while its version is
        # the current one and younger than CATALOG_CACHE_SECONDS, like the Redis copy.
        self._local: dict[str, tuple] = {}
        # Answers of _anonymous_secret by session cookie (see there).
        self._sessions: dict[str, tuple] = {}

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD") or not CACHEABLE_PATH.match(environ.get("PATH_INFO", "")) \
                or not _known_arguments(environ.get("QUERY_STRING", "")):
            return self.wsgi_app(environ, start_response)
        config = self.flask_app.config
        store = cache.backend(self.flask_app)
        lean = method == "GET" and config["CATALOG_LEAN_PATH"] \
            and self.flask_app.extensions.get(routing.REPLICA_KEY) is None
        if store is None and not lean:
            return self.wsgi_app(environ, start_response)
        started = time.perf_counter()
        cookies = parse_cookie(environ.get("HTTP_COOKIE", ""))
        if config.get("REMEMBER_COOKIE_NAME", "remember_token") in cookies:
            return self.wsgi_app(environ, start_response)
        secret_token = self._anonymous_secret(cookies.get(config["SESSION_COOKIE_NAME"]))
        if secret_token is False:
            return self.wsgi_app(environ, start_response)
        if store is None:
            try:
                entry, _ = self._render(environ, 0)
            except _Answered as answered:
                return answered.response(environ, start_response)
            if entry is None:
                return self.wsgi_app(environ, start_response)
            return self._hit(environ, start_response, entry, secret_token, started, None)
        key = _page_key(environ)
        seconds = config["CATALOG_CACHE_SECONDS"]
        try:
            # The version is checked against Redis on every request (tracked: see
            # services.cache): a staff change is seen at once by every worker. A page this
            # worker already holds for that version is served from its memory (no 30 KB
            # transfer); otherwise from Redis; otherwise rendered.
            version = cache.current_version(self.flask_app, store)
            entry = self._local.get(key)
            if not _fresh(entry, version, seconds):
                entry = store.get(key)
                if _fresh(entry, version, seconds):
                    self._remember(key, entry)
        except Exception as error:
            if not redis_clients.skipped(error):  # the breaker's: logged once when it opened
                log.warning("redis unavailable: page cache bypassed", exc_info=True,
                            extra={"request_id": _request_id(environ)})
            return self.wsgi_app(environ, start_response)
        if _fresh(entry, version, seconds):
            return self._hit(environ, start_response, entry, secret_token, started, "hit")
        if lean:
            try:
                entry, storable = self._render(environ, version)
            except _Answered as answered:
                return answered.response(environ, start_response)
            if entry is not None:
                if storable:
                    self._store(store, key, entry, _request_id(environ))
                return self._hit(environ, start_response, entry, secret_token, started, None)
        environ[ENVIRON_KEY] = (key, version)
        if self.flask_app.extensions.get(routing.REPLICA_KEY) is not None:
            # Rendered now, the page is kept as this version's for every shopper: just after
            # a change the replica may not have it yet, so the page is read from the primary.
            try:
                recent = cache.changed_recently(store)
            except Exception:
                recent = True
            if recent:
                environ[routing.PRIMARY_ENVIRON] = True
        return self._miss(environ, start_response, store, key, version)

    def _remember(self, key: str, entry: tuple) -> None:
        """Keep a page in this worker's memory, its body cut at the token's places: a page
        carries a token in each of its forms (two dozen on a listing), and joining the parts
        around a hit's token is a third of the cost of replacing the placeholder in it."""
        if len(self._local) >= LOCAL_PAGES:
            self._local.clear()
        body = entry[5]
        if entry[6] and isinstance(body, bytes):
            entry = (*entry[:5], tuple(body.split(PLACEHOLDER)), entry[6])
        self._local[key] = entry

    def _anonymous_secret(self, cookie: str | None) -> str | None | bool:
        """The session's CSRF secret (None: no usable session), or False when the session
        holds anything personal.

        A cookie's answer is the same every time until the cookie expires (its bytes are
        signed), so an answer is kept per cookie, with the cookie's expiry, for a shopper's
        next pages: checking a signature and decoding the session cost a fifth of a hit."""
        if not cookie:
            return None
        app = self.flask_app
        serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
        if serializer is None:
            return False
        kept = self._sessions.get(cookie)
        if kept is not None and kept[0] is serializer and time.time() < kept[1]:
            return kept[2]
        max_age = int(app.permanent_session_lifetime.total_seconds())
        try:
            data, signed_at = serializer.loads(cookie, max_age=max_age, return_timestamp=True)
        except BadSignature:
            return None  # Flask would start a new session too
        if not isinstance(data, dict) or not set(data) <= ANONYMOUS_KEYS \
                or data.get("_fresh") is True:
            answer: str | bool = False
        else:
            secret = data.get("csrf_token")
            answer = secret if isinstance(secret, str) else False
        if len(self._sessions) >= LOCAL_SESSIONS:
            self._sessions.clear()
        self._sessions[cookie] = (serializer, signed_at.timestamp() + max_age, answer)
        return answer

    def _render(self, environ: dict, version: int) -> tuple[tuple | None, bool]:
        """The lean path: the page of an anonymous shopper's catalogue GET, rendered by its
        view in a request context of its own without Flask's request hooks, as an entry of
        this cache (for `version`) that _hit then serves as it serves a stored page (the
        per-shopper token, session cookie, request id, access line and metrics), and whether
        it may be stored (not a page the view keeps out of the cache: `not_for_the_cache`);
        None when the full request cycle must answer instead.

        Why: the hooks and Flask's dispatch cost a catalogue page about a fifth of its time,
        and for such a request they do nothing a stored page does not already get from _hit
        (no login to load, no form to check, no limit on these pages, no session to save but
        a new visitor's, which _hit writes). The view runs as it does in the full cycle, with
        `csrf_token()` giving the placeholder _hit replaces. Anything else goes to the full
        cycle, which renders it again: a status other than 200 (a 404, a refused filter, a
        redirect), a session the view changed or found personal, a cart in the header.
        Another exception (the database out of reach) gets the full cycle's error answer at
        once (_Answered), not a second wait. tests/web/test_lean_path.py holds both paths to the
        same bytes and headers."""
        if environ.get("CONTENT_LENGTH") or environ.get("HTTP_TRANSFER_ENCODING"):
            return None, False  # a GET with a body: the full cycle's size check answers it
        app = self.flask_app
        # An app context of its own, even inside another's (the tests' client): what the
        # view leaves in `g` (the placeholder token) must not reach the full cycle's page.
        app_context = app.app_context()
        app_context.push()
        context = app.request_context(environ)
        context.push()
        try:
            req = context.request
            endpoint = req.endpoint
            if req.routing_exception is not None or endpoint not in LEAN_ENDPOINTS:
                return None, False
            g.request_id = _request_id(environ)
            routing.begin_request(False)
            setattr(g, app.config.get("WTF_CSRF_FIELD_NAME") or "csrf_token",
                    PLACEHOLDER.decode())
            g.started = time.perf_counter()
            try:
                response = app.make_response(
                    app.ensure_sync(app.view_functions[endpoint])(**req.view_args))
            except HTTPException:  # a 404 page: the full cycle renders it
                db.session.rollback()
                return None, False
            except Exception as error:
                # The database out of reach, say: answered here as the full cycle answers it
                # (its error handler and after-request hooks; no hook before the view does
                # anything for this request), not asked again (another wait for a timeout).
                db.session.rollback()
                g.pop(app.config.get("WTF_CSRF_FIELD_NAME") or "csrf_token", None)
                raise _Answered(app.finalize_request(app.handle_user_exception(error))) \
                    from None
            if (response.status_code != 200 or current_user.is_authenticated
                    or session.modified or not set(session.keys()) <= ANONYMOUS_KEYS
                    or session.get("_fresh") is True or g.get("cart_count")
                    or routing.wrote()):
                return None, False
            response.vary.add("Cookie")  # what the full cycle's session adds: it was read
            security_headers(response, g.get("csp"))
            body = response.get_data()
            headers = [(k, v) for k, v in response.headers.items()
                       if k.lower() not in PER_REQUEST_HEADERS]
            return ((version, time.time(), endpoint, response.status, headers, body,
                     PLACEHOLDER in body), not g.get("not_for_the_cache"))
        finally:
            try:
                context.pop()
            finally:
                app_context.pop()

    def _store(self, store, key: str, entry: tuple, request_id: str) -> None:
        """Keep a rendered page in Redis and in this worker's memory."""
        try:
            store.set(key, entry, timeout=self.flask_app.config["CATALOG_CACHE_SECONDS"])
        except Exception as error:
            if not redis_clients.skipped(error):  # the breaker's: logged once when it opened
                log.warning("redis unavailable: page not cached", exc_info=True,
                            extra={"request_id": request_id})
        else:
            self._remember(key, entry)

    def _hit(self, environ: dict, start_response: Callable, entry: tuple, secret: str | None,
             started: float, label: str | None) -> Iterable[bytes]:
        _, _, endpoint, status, headers, body, has_token = entry
        out = list(headers)
        if has_token:
            if secret is None:
                secret = new_csrf_secret()
                out.extend(self._new_session_cookie(secret))
            token = self._signed(secret).encode()
            body = token.join(body) if isinstance(body, tuple) else body.replace(PLACEHOLDER, token)
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if REQUEST_ID.match(incoming) else os.urandom(16).hex()
        out += [("Content-Length", str(len(body))), ("X-Request-ID", request_id)]
        if label:
            out.append(("X-Cache", label))
        start_response(status, out)
        seconds = time.perf_counter() - started
        method = environ.get("REQUEST_METHOD", "GET")
        code = int(status.split(" ", 1)[0])
        metrics.observe_request(method, endpoint, code, seconds)
        log_access(method, environ.get("PATH_INFO", ""), code, seconds,
                   environ.get("REMOTE_ADDR"), request_id)
        return [b"" if method == "HEAD" else body]

    def _miss(self, environ: dict, start_response: Callable, store, key: str,
              version: int) -> Iterable[bytes]:
        captured: list = []

        def capture(status: str, headers: list, exc_info=None):
            captured[:] = [status, headers]
            return start_response(status, headers, exc_info) if exc_info else \
                start_response(status, headers)

        result = self.wsgi_app(environ, capture)
        marked = environ.get(STORE_KEY)
        if not marked or not captured:
            return result
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        endpoint, token = marked
        has_token = bool(token) and token.encode() in body
        stored = body.replace(token.encode(), PLACEHOLDER) if has_token else body
        headers = [(k, v) for k, v in captured[1] if k.lower() not in PER_REQUEST_HEADERS]
        entry = (version, time.time(), endpoint, captured[0], headers, stored, has_token)
        self._store(store, key, entry,
                    next((v for k, v in captured[1] if k.lower() == "x-request-id"), ""))
        return [body]

    def _signed(self, secret: str) -> str:
        """A CSRF token for the session secret, as Flask-WTF signs it."""
        return csrf_serializer(self.flask_app).dumps_json(json.dumps(secret).encode())

    def _new_session_cookie(self, secret: str) -> list[tuple[str, str]]:
        """The Set-Cookie of a new session holding the CSRF secret, as Flask's session
        interface writes it."""
        app = self.flask_app
        data = b'{"csrf_token":%s}' % json.dumps(secret).encode()
        return [("Set-Cookie", app.session_interface.cookie(app, data))]  # type: ignore[attr-defined]


class _Answered(Exception):
    """The lean path's view failed and the full cycle's error answer was made for it."""

    def __init__(self, response: Response) -> None:
        super().__init__()
        self.response = response


def _request_id(environ: dict) -> str:
    """The request's id for a line logged here, before Flask has seen the request (no `g`):
    the one sent, or a new one put in its place, which Flask then takes and echoes, so the
    line and the response carry the same."""
    incoming = environ.get("HTTP_X_REQUEST_ID", "")
    if REQUEST_ID.match(incoming):
        return incoming
    environ["HTTP_X_REQUEST_ID"] = generated = os.urandom(16).hex()
    return generated


def _known_arguments(query: str) -> bool:
    """Only the catalogue's own query arguments: a URL with made-up ones (tracking tags,
    cache-busting noise) is rendered by the app, not stored, so it cannot fill the cache (nor
    can values of these that the page ignores or spells otherwise: the views keep out of the
    cache any query that is not their page's own address, not_for_the_cache). Each distinct
    search or price range is a page of its own, kept for CATALOG_CACHE_SECONDS."""
    return not query or all(part.split("=", 1)[0] in QUERY_ARGUMENTS
                            for part in query.split("&") if part)


def _fresh(entry: tuple | None, version: int, seconds: int) -> bool:
    """An entry of the current catalogue version, rendered less than `seconds` ago."""
    return (isinstance(entry, tuple) and len(entry) == 7 and entry[0] == version
            and time.time() - entry[1] < seconds)


def _page_key(environ: dict) -> str:
    """The cache key of a request: its path and query, page or htmx fragment."""
    fragment = (environ.get("HTTP_HX_REQUEST") == "true"
                and environ.get("HTTP_HX_BOOSTED") != "true"
                and environ.get("HTTP_HX_HISTORY_RESTORE_REQUEST") != "true")
    raw = f"{environ.get('PATH_INFO', '')}?{environ.get('QUERY_STRING', '')}|{int(fragment)}"
    return "page:" + hashlib.sha1(raw.encode("utf-8", "surrogateescape")).hexdigest()

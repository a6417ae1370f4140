"""Cross-cutting HTTP concerns: request ids, logging, metrics, security headers, replica
routing per request, body limits and error pages (HTML for pages, the JSON envelope for the
API)."""
from __future__ import annotations

import codecs
import hashlib
import io
import json
import logging
import math
import os
import re
import time
from typing import Any

import pydantic_core
from flask import (
    Flask,
    Response,
    abort,
    current_app,
    g,
    has_request_context,
    jsonify,
    make_response,
    render_template,
    request,
)
from flask_wtf.csrf import CSRFError
from markupsafe import escape
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import BadRequest, HTTPException, NotFound
from werkzeug.middleware.proxy_fix import ProxyFix

from .extensions import db
from .services import database, metrics, routing
from .services.redis_clients import skipped

# \Z, not $: $ also matches before a final newline, and "abc\n" echoed in a header is an
# error (and a line break in a plain-text log line).
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}\Z")
RW_COOKIE = "shop_rw"
# Endpoints whose GETs only read the catalogue: these may use the read replica.
REPLICA_ENDPOINTS = {"catalog.home", "catalog.products", "catalog.category", "catalog.product",
                     "api.list_products", "api.get_product", "api.list_categories"}
ERROR_TITLES = {400: "Bad request", 401: "Please log in", 403: "Not allowed", 404: "Page not found",
                405: "Method not allowed", 409: "Conflict", 413: "Too large",
                422: "Invalid input", 429: "Too many requests", 500: "Something went wrong",
                503: "Temporarily unavailable"}
# A 404 with no word of the shop's: an address no route has, such as one whose id is not a
# whole number (/api/v1/cart/items/abc), or abort(404) without a reason. Werkzeug's own
# ("The requested URL was not found on the server. If you entered the URL manually...").
NO_PAGE = ("There is no page at this address. It may have moved, or the address may be "
           "mistyped.")
NO_API_PATH = ("Nothing in the API has this path. Check it against /api/v1/openapi.json; an "
               "id in a path is a whole number.")
ERROR_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
               415: "unsupported_media_type", 422: "validation_error", 429: "rate_limited",
               500: "internal_error", 503: "unavailable"}


RW_KEY_PREFIX = "shop:rw:"
# Retry-After of a 503 answered while the database or Redis cannot be reached, or is busy.
UNAVAILABLE_RETRY_SECONDS = 5
BUSY = "The shop is busy right now and nothing was changed. Please try again in a moment."
# Fields a back office form may send as multipart form data: a product of 1,000 variants (ten
# fields each) with its images. The body itself stays bounded (MAX_UPLOAD_BYTES plus
# MAX_CONTENT_LENGTH).
ADMIN_MAX_FORM_PARTS = 20_000


def current_request_id() -> str:
    """The id of the request being served, or of the request that queued the job being run
    by the worker ("" otherwise)."""
    if has_request_context():
        return g.get("request_id", "")
    return job_request_id()


# The request id of the job this worker process has taken from the queue, from the moment it
# is taken until it is done (shop.worker): RQ's own lines about the job, before it starts and
# after it ends, carry it too. Log metadata only; one job at a time in a worker process.
_taken_job = {"request_id": ""}


def worker_took(job: Any | None) -> None:
    """The worker has taken `job` from the queue (None: it is done with it)."""
    _taken_job["request_id"] = str(((job.meta or {}) if job is not None else {})
                                   .get("request_id") or "")


def job_request_id() -> str:
    """The request id stored in the meta of the RQ job this process is running, or has taken
    from the queue ("" if none)."""
    from rq import get_current_job

    job = get_current_job()
    if job is None:
        return _taken_job["request_id"]
    return str((job.meta or {}).get("request_id") or "")


class RequestIdFilter(logging.Filter):
    """Put the request id on every log record: the request's, or in the worker the id of the
    request that queued the job. A record may also carry its own `request_id` (extra=...)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = current_request_id()
        return True


def _utc_iso(created: float) -> str:
    """`datetime.fromtimestamp(created, UTC).isoformat()`, with the part up to the second
    worked out once a second (a log line a request)."""
    global _SECOND
    second = int(created)
    micro = int(round((created - second) * 1_000_000))
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    kept = _SECOND  # one tuple, swapped whole: safe between threads
    if kept[0] != second:
        kept = _SECOND = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{kept[1]}.{micro:06d}+00:00" if micro else f"{kept[1]}+00:00"


_SECOND: tuple[int, str] = (-1, "")


# json.dumps(data, default=str) builds a new encoder for every line: one kept instead.
_JSON = json.JSONEncoder(default=str)


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for production log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        data = {"ts": _utc_iso(record.created),
                "level": record.levelname, "logger": record.name,
                "message": record.getMessage(), "request_id": getattr(record, "request_id", "")}
        fields = record.__dict__
        for key in ("method", "path", "status", "duration_ms", "remote_addr"):
            if key in fields:
                data[key] = fields[key]
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return _JSON.encode(data)


def log_access(method: str, path: str, status: int, seconds: float,
               remote_addr: str | None, request_id: str) -> None:
    """The shop.access line of a request. When the line would go to the shop's JSON handler
    and nowhere else (production, nothing added), it is written there at once: the same line
    JsonFormatter makes, without the LogRecord, the filter and the handler dispatch around it
    (a sixth of a catalogue page's cost outside the view). Anything else goes through
    logging."""
    if not _ACCESS.isEnabledFor(logging.INFO):
        return
    duration_ms = round(seconds * 1000, 2)
    fields = {"method": method, "path": path, "status": status, "duration_ms": duration_ms,
              "remote_addr": remote_addr, "request_id": request_id}
    handler = _direct_access_handler()
    if handler is None:
        _ACCESS.info("%s %s %s", method, path, status, extra=fields)
        return
    line = _JSON.encode({
        "ts": _utc_iso(time.time()), "level": "INFO", "logger": "shop.access",
        "message": f"{method} {path} {status}", "request_id": request_id, "method": method,
        "path": path, "status": status, "duration_ms": duration_ms, "remote_addr": remote_addr})
    handler.acquire()
    try:
        stream = handler.stream
        stream.write(line + handler.terminator)
        stream.flush()
    except Exception:
        handler.release()
        # A failed write: logging's own path, which reports it as StreamHandler.emit does.
        _ACCESS.info("%s %s %s", method, path, status, extra=fields)
        return
    handler.release()


_ACCESS = logging.getLogger("shop.access")
# Paths whose rest is a secret (the token of a password reset link, or of the link that adds
# earlier guest orders to an account), logged without it.
SECRET_PATHS = ("/account/password/reset/", "/account/orders/link/")


def _direct_access_handler() -> logging.StreamHandler | None:
    """The shop's JSON stream handler when it is the only place an access line goes."""
    shop = _ACCESS.parent
    if _ACCESS.handlers or _ACCESS.filters or not _ACCESS.propagate or shop is None \
            or shop.name != "shop" or shop.filters or shop.propagate or len(shop.handlers) != 1:
        return None
    handler = shop.handlers[0]
    if type(handler) is not logging.StreamHandler or type(handler.formatter) is not JsonFormatter \
            or not getattr(handler, "shop_handler", False) or handler.level > logging.INFO \
            or any(type(f) is not RequestIdFilter for f in handler.filters):
        return None
    return handler


def configure_logging(app: Flask) -> None:
    """The shop's loggers write one line per record with the request id; JSON in production,
    where libraries' warnings (root logger) are written as JSON too."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    if app.config.get("JSON_LOGS"):
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"))
    handler.shop_handler = True  # type: ignore[attr-defined]
    logger = logging.getLogger("shop")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    app.logger.handlers[:] = [handler]
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "shop_handler", False)]:
        root.removeHandler(old)
    if app.config.get("JSON_LOGS"):
        # What a JSON line never shows, a record need not collect (logging's own switches).
        logging.logThreads = False
        logging.logMultiprocessing = False
        # Nor where the call was made (file, line, function): finding it walks the stack on
        # every record (the logging HOWTO's "Optimization" switch).
        logging._srcfile = None  # type: ignore[attr-defined]
        root.addHandler(handler)
        if root.level == logging.NOTSET or root.level > logging.WARNING:
            root.setLevel(logging.WARNING)


def personal(response: Response) -> Response:
    """An answer about one person (cart, checkout, account, orders, the back office): no shared
    cache stores it, and the browser does not keep it, so Back after logging out on a shared
    computer shows nothing. A page that set its own Cache-Control keeps it."""
    if "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "private, no-store"
    return response


class InvalidJson(BadRequest):
    """A request body that is not JSON the shop can read: 400 `invalid_json`."""

    error_code = "invalid_json"
    description = "The body is not valid JSON."

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


JSON_BODY = "shop.json_body"


def json_body() -> Any:
    """The request's body parsed as JSON, once per request (the rate limiter's key and the
    view both read it). Raise InvalidJson when it cannot be parsed: malformed, not UTF-8,
    NaN or Infinity, or nested too deeply. Use this, never `request.get_json()`: Flask lets
    the RecursionError of a deeply nested body (~2 KB of brackets) through as a 500."""
    environ = request.environ
    if JSON_BODY not in environ:
        raw = request.get_data(cache=True)
        # A byte order mark at the start (a file saved by Windows Notepad, sent with curl -d
        # @file) is no part of the JSON: RFC 8259 8.1 lets a reader ignore it, as Flask's
        # get_json does, where pydantic_core refuses it ("expected value at line 1 column 1").
        raw = raw.removeprefix(codecs.BOM_UTF8)
        try:
            environ[JSON_BODY] = (pydantic_core.from_json(raw, allow_inf_nan=False), None)
        except (ValueError, RecursionError) as exc:
            # RecursionError: a defence in depth (pydantic_core stops deep nesting itself).
            environ[JSON_BODY] = (None, str(exc) or type(exc).__name__)
    data, problem = environ[JSON_BODY]
    if problem is not None:
        raise InvalidJson(problem)
    return data


def wants_json() -> bool:
    return request.path.startswith("/api/") and not request.path.startswith("/api/docs")


def error_response(status: int, message: str, code: str | None = None,
                   details: dict | None = None) -> Response:
    """The JSON error envelope of SPEC section 7."""
    body = {"error": {"code": code or ERROR_CODES.get(status, "error"), "message": message,
                      "details": details or {}}}
    response = jsonify(body)
    response.status_code = status
    return response


def _bearer_key() -> str | None:
    """The read-your-writes key of an API client that sends a token instead of cookies."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return RW_KEY_PREFIX + hashlib.sha256(token.strip().encode()).hexdigest()[:32]


def _redis():
    from .services.jobs import redis_connection

    return redis_connection()


def _may_read_replica(req) -> bool:
    """A catalogue GET from a client that has not written in the last few seconds."""
    if req.method not in ("GET", "HEAD") or req.endpoint not in REPLICA_ENDPOINTS:
        return False
    if routing.replica_engine() is None or routing.PRIMARY_ENVIRON in req.environ:
        return False
    written_until = req.cookies.get(RW_COOKIE, "")
    if written_until.isdigit() and int(written_until) > time.time():
        return False
    key = _bearer_key()
    if key is None:
        return True
    # Token clients keep no cookies: their writes are remembered in Redis (without Redis,
    # their reads simply stay on the primary).
    try:
        conn = _redis()
        return conn is not None and not conn.exists(key)
    except Exception:
        return False


def _remember_write(response: Response) -> None:
    """Read-your-writes: this client reads from the primary for a few seconds."""
    seconds = current_app.config["READ_YOUR_WRITES_SECONDS"]
    # Rounded up: the client reads the primary for at least `seconds`.
    until = math.ceil(time.time() + seconds)
    response.set_cookie(RW_COOKIE, str(until), max_age=max(60, seconds),
                        httponly=True, samesite="Lax",
                        secure=current_app.config.get("SESSION_COOKIE_SECURE", False))
    key = _bearer_key()
    if key is not None and routing.replica_engine() is not None:
        try:
            conn = _redis()
            if conn is not None:
                conn.set(key, 1, ex=max(1, seconds))
        except Exception as error:
            if not skipped(error):  # the breaker's: logged once when it opened
                logging.getLogger("shop.http").warning(
                    "could not record a write for read-your-writes", exc_info=True)


def init_app(app: Flask) -> None:
    configure_logging(app)
    hops = int(app.config.get("PROXY_HOPS") or 0)
    if hops:
        # Behind N trusted proxies: the client address, scheme and host they forwarded.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops,  # type: ignore[method-assign]
                                x_port=hops)

    def start_request() -> None:
        req = request._get_current_object()  # type: ignore[attr-defined]
        incoming = req.environ.get("HTTP_X_REQUEST_ID", "")
        g.request_id = incoming if incoming and REQUEST_ID.match(incoming) \
            else os.urandom(16).hex()
        g.started = time.perf_counter()
        if _in_admin(req.path):
            # Room for one image of MAX_UPLOAD_BYTES plus the form around it: the admin checks
            # each file against MAX_UPLOAD_BYTES and answers beside the field.
            req.max_content_length = (current_app.config["MAX_UPLOAD_BYTES"]
                                      + current_app.config["MAX_CONTENT_LENGTH"])
            # A product's form is multipart (its image uploads), ten fields a variant: Flask's
            # 1,000 parts refused any save of a product with about 100 variants (413).
            req.max_form_parts = ADMIN_MAX_FORM_PARTS
        if req.environ.get("CONTENT_LENGTH"):
            limit = req.max_content_length
            if limit is not None and (req.content_length or 0) > limit:
                abort(413)
        elif "chunked" in req.environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            _read_chunked_body(req)
        routing.begin_request(_may_read_replica(req))

    # First of all before_request hooks: CSRF and rate limits (registered earlier) read the
    # body and may refuse the request, and those answers need the request id and the limit too.
    app.before_request_funcs.setdefault(None, []).insert(0, start_request)

    @app.after_request
    def finish_request(response: Response) -> Response:
        req = request._get_current_object()  # type: ignore[attr-defined]
        context = g._get_current_object()  # type: ignore[attr-defined]
        request_id = getattr(context, "request_id", "")
        response.headers["X-Request-ID"] = request_id
        if response.status_code == 204:
            # No content has no type (RFC 9110 8.3): Werkzeug gives every Response one
            # (text/html), which the API's 204s (a token revoked, a CORS preflight) and htmx's
            # (HX-Redirect) said of a body they do not have.
            response.headers.pop("Content-Type", None)
        security_headers(response, getattr(context, "csp", None))
        method = req.method
        if routing.wrote() or method not in ("GET", "HEAD", "OPTIONS"):
            _remember_write(response)
        seconds = time.perf_counter() - getattr(context, "started", time.perf_counter())
        endpoint = req.endpoint
        status = response.status_code
        metrics.observe_request(method, endpoint or "unmatched", status, seconds)
        if endpoint != "static":
            path = req.path
            secret = next((p for p in SECRET_PATHS if path.startswith(p)), None)
            if secret is not None:
                # A reset link's token is a key to the account until it is used: never logged.
                path = secret + "<token>"
            log_access(method, path, status, seconds, req.remote_addr, request_id)
        return response

    @app.teardown_request
    def end_request(_error: BaseException | None) -> None:
        routing.end_request()

    dispatch = app.dispatch_request

    def dispatch_request():
        """The view; answered again from the primary when the read replica failed it (down,
        hung, refusing connections: services.routing), rather than a 503 for a catalogue the
        primary can serve. Only a request that wrote nothing reads the replica."""
        try:
            response = dispatch()
        except OperationalError:
            if not routing.fell_back():
                raise
            db.session.rollback()  # ends the failed read on the replica
            response = dispatch()
        routing.answered()
        return response

    app.dispatch_request = dispatch_request  # type: ignore[method-assign]

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        message = ("Your form expired or was sent from elsewhere. "
                   "Please reload the page and try again.")
        return _error(400, message, code="csrf_failed")

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        status = error.code or 500
        if status == 413:
            answer = current_app.extensions.get(TOO_LARGE_ANSWERS, {}).get(request.endpoint)
            page = answer() if answer is not None and not wants_json() else None
            if page is not None:
                return make_response(page, 413)
            if _in_admin(request.path):
                # Staff meet it uploading: the limit they can use is the image's (the body's
                # is that plus room for the form around it).
                image = current_app.config["MAX_UPLOAD_BYTES"] / (1024 * 1024)
                message = (f"The upload is too large. An image may be at most {image:g} MB; "
                           f"please send a smaller file.")
            else:
                limit = (request.max_content_length or 0) / (1024 * 1024)
                message = (f"The request is too large. The limit is {limit:g} MB; "
                           f"please send a smaller file or less data.")
        elif status == 429:
            # A limit with its own message (log in, reset, register) says what to do.
            limit = getattr(error, "limit", None)
            message = (error.description if limit is not None and limit.error_message
                       else "Too many requests. Please wait a moment and try again.")
            answer = current_app.extensions.get(TOO_MANY_ANSWERS, {}).get(request.endpoint)
            page = answer(message) if answer is not None and not wants_json() else None
            if page is not None:
                return make_response(page, 429)
        elif isinstance(error, NotFound) and error.description == NotFound.description:
            message = NO_API_PATH if wants_json() else NO_PAGE
        else:
            message = error.description or ERROR_TITLES.get(status, "Error")
        response = _error(status, message, code=getattr(error, "error_code", None))
        if status == 405 and hasattr(error, "valid_methods") and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    # The database or Redis cannot be reached (refused, lost, timed out, no connection left in
    # the pool): not a fault of the request or of the code, so 503 and a word on what to do,
    # like /readyz says meanwhile, rather than the 500 of a bug.
    @app.errorhandler(OperationalError)
    @app.errorhandler(PoolTimeoutError)
    @app.errorhandler(RedisConnectionError)
    @app.errorhandler(RedisTimeoutError)
    def dependency_unavailable(error: Exception):
        if database.is_lock_timeout(error):
            # The database answers, but a write waited too long behind others (SQLite's write
            # lock, MySQL's row locks): busy, not out of reach, and nothing was written.
            current_app.logger.warning("the database is busy: a write waited too long for a "
                                       "lock (%s)", error.orig)
            response = _error(503, BUSY, code="busy")
        else:
            current_app.logger.error("a dependency is unavailable: %s", type(error).__name__,
                                     exc_info=error)
            # The page says so without asking the database again (its header's account, cart
            # count and categories): another wait of the read timeout would be all it got.
            response = _error(503, "The shop cannot reach its database or cache right now. "
                                   "Please try again in a moment.", offline=True)
        response.headers["Retry-After"] = str(UNAVAILABLE_RETRY_SECONDS)
        g.unavailable = True
        return response

    def keep_unavailable_retry_after(response: Response) -> Response:
        """The 503's own Retry-After: Flask-Limiter's hook sets its window's reset (up to a
        minute) over it on every rate-limited route. Run after every other hook."""
        if response.status_code == 503 and g.get("unavailable"):
            response.headers["Retry-After"] = str(UNAVAILABLE_RETRY_SECONDS)
        return response

    # Flask runs a list's hooks last to first: the first one runs after the limiter's.
    app.after_request_funcs.setdefault(None, []).insert(0, keep_unavailable_retry_after)

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        current_app.logger.exception("unhandled error")
        return _error(500, "Something went wrong on our side. "
                           "It has been logged; please try again.")


# Endpoints that answer a body over the limit with a page of their own (the CSV import: its
# page, naming the file's limit), by endpoint name: app.extensions[TOO_LARGE_ANSWERS].
TOO_LARGE_ANSWERS = "shop.too_large_answers"


def answer_too_large(app: Flask, endpoint: str, answer: Any) -> None:
    """Let `endpoint` answer a 413 itself: `answer()` returns the page (sent with 413), or
    None for the plain error page."""
    app.extensions.setdefault(TOO_LARGE_ANSWERS, {})[endpoint] = answer


# Endpoints whose form answers its own rate limit (log in, register, reset): the form again,
# what was typed kept, the limit's message at its top; by endpoint name.
TOO_MANY_ANSWERS = "shop.too_many_answers"


def answer_too_many(app: Flask, endpoint: str, answer: Any) -> None:
    """Let `endpoint` answer a 429 itself: `answer(message)` returns the page (sent with 429
    and the limit's Retry-After), or None for the plain error page."""
    app.extensions.setdefault(TOO_MANY_ANSWERS, {})[endpoint] = answer


def _in_admin(path: str) -> bool:
    return path == "/admin" or path.startswith("/admin/")


def _read_chunked_body(req) -> None:
    """A chunked body (no Content-Length) read now, up to the limit: one larger is 413, like a
    body whose Content-Length says so. Left to Werkzeug, reading stops at the limit without a
    word, and the view parses the part that fits (a JSON body padded with spaces was accepted).
    What fits is then served as a body of known length. Only when the server ends the stream
    itself (wsgi.input_terminated, as gunicorn does): otherwise Werkzeug reads no such body."""
    environ = req.environ
    limit = req.max_content_length
    if limit is None or not environ.get("wsgi.input_terminated"):
        return
    data = environ["wsgi.input"].read(limit + 1)
    if len(data) > limit:
        abort(413)
    environ["wsgi.input"] = io.BytesIO(data)
    environ["CONTENT_LENGTH"] = str(len(data))
    del environ["HTTP_TRANSFER_ENCODING"]


def _error(status: int, message: str, code: str | None = None,
           offline: bool = False) -> Response:
    if wants_json():
        response = error_response(status, message, code=code)
        if request.blueprint is None:
            # No API route matched (an unknown URL, a method it does not take): the API's own
            # hooks do not run, so its CORS headers are added here, or a browser on an
            # allowed origin could not read the envelope.
            from .blueprints.api import cors

            cors.add_headers(response)
        return response
    if offline and "_login_user" not in g:
        # Flask-Login's context processor would load the logged-in user from the database for
        # the page; the offline page shows no one's name, so the request goes on as anonymous.
        from .extensions import login_manager

        login_manager._update_request_context_with_user()
    try:
        body = render_template("errors/error.html", status=status,
                               title=ERROR_TITLES.get(status, "Error"), message=message,
                               offline=offline)
    except Exception:  # the error page itself must never fail (it may need the database)
        current_app.logger.exception("error page failed")
        title = ERROR_TITLES.get(status, "Error")
        body = (f"<!doctype html><html lang=\"en\"><title>{title}</title><h1>{title}</h1>"
                f"<p>{escape(message)}</p></html>")
    return make_response(body, status)


DEFAULT_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "
               "frame-ancestors 'none'; form-action 'self' https://checkout.stripe.com")
SECURITY_HEADERS = (("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
                    ("Referrer-Policy", "strict-origin-when-cross-origin"),
                    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"))
HSTS = ("Strict-Transport-Security", "max-age=63072000; includeSubDomains")


def security_headers(response: Response, csp: str | None = None) -> None:
    """The security headers every answer carries, unless the view set its own."""
    headers = response.headers
    present = {key.lower() for key, _ in headers.items()}
    wanted = [("Content-Security-Policy", csp or DEFAULT_CSP), *SECURITY_HEADERS]
    if current_app.config["SHOP_ENV"] == "production":
        wanted.append(HSTS)
    headers.extend([(key, value) for key, value in wanted if key.lower() not in present])

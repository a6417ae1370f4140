"""Cross-cutting HTTP concerns: request ids, logging, security headers, replica routing per
request, body limits and error pages (HTML for pages, the JSON envelope for the API)."""
from __future__ import annotations

import json
import logging
import re
import time
import uuid
from datetime import datetime, timezone

from flask import Flask, Response, current_app, g, has_request_context, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from .services import routing

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
RW_COOKIE = "shop_rw"
# Endpoints whose GETs only read the catalogue: these may use the read replica.
REPLICA_ENDPOINTS = {"catalog.home", "catalog.products", "catalog.category", "catalog.product",
                     "api.list_products", "api.get_product", "api.list_categories"}
ERROR_TITLES = {400: "Bad request", 401: "Please log in", 403: "Not allowed", 404: "Page not found",
                405: "Method not allowed", 409: "Conflict", 413: "Too large",
                422: "Invalid input", 429: "Too many requests", 500: "Something went wrong",
                503: "Temporarily unavailable"}
ERROR_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
               415: "unsupported_media_type", 422: "validation_error", 429: "rate_limited",
               500: "internal_error", 503: "unavailable"}


def current_request_id() -> str:
    """The id of the request being served ("" outside a request)."""
    if has_request_context():
        return g.get("request_id", "")
    return ""


class RequestIdFilter(logging.Filter):
    """Put the request id on every log record (jobs set their own through `request_id`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = current_request_id()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for production log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        data = {"ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
                "level": record.levelname, "logger": record.name,
                "message": record.getMessage(), "request_id": getattr(record, "request_id", "")}
        for key in ("method", "path", "status", "duration_ms", "remote_addr"):
            if hasattr(record, key):
                data[key] = getattr(record, key)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure_logging(app: Flask) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    if app.config.get("JSON_LOGS"):
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"))
    logger = logging.getLogger("shop")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    app.logger.handlers[:] = [handler]


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


def init_app(app: Flask) -> None:
    configure_logging(app)
    access_log = logging.getLogger("shop.access")

    @app.before_request
    def start_request() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex
        g.started = time.perf_counter()
        if request.method in ("GET", "HEAD") and request.endpoint in REPLICA_ENDPOINTS:
            written_until = request.cookies.get(RW_COOKIE, "")
            if not (written_until.isdigit() and int(written_until) > time.time()):
                routing.allow_replica()

    @app.after_request
    def finish_request(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        _security_headers(response)
        if g.get("wrote") or request.method not in ("GET", "HEAD", "OPTIONS"):
            # Read-your-writes: this client reads from the primary for a few seconds.
            until = int(time.time()) + current_app.config["READ_YOUR_WRITES_SECONDS"]
            response.set_cookie(RW_COOKIE, str(until), max_age=60, httponly=True,
                                samesite="Lax", secure=current_app.config.get(
                                    "SESSION_COOKIE_SECURE", False))
        if request.endpoint != "static":
            access_log.info("%s %s %s", request.method, request.path, response.status_code,
                            extra={"method": request.method, "path": request.path,
                                   "status": response.status_code,
                                   "duration_ms": round((time.perf_counter()
                                                         - g.get("started", 0)) * 1000, 2),
                                   "remote_addr": request.remote_addr})
        return response

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        message = "Your form expired or was sent from elsewhere. Please reload the page and try again."
        return _error(400, message, code="csrf_failed")

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        status = error.code or 500
        if status == 413:
            limit = current_app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024)
            message = f"The request is too large. The limit is {limit} MB."
        elif status == 429:
            message = "Too many requests. Please wait a moment and try again."
        else:
            message = error.description or ERROR_TITLES.get(status, "Error")
        response = _error(status, message)
        if status == 405 and hasattr(error, "valid_methods") and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        current_app.logger.exception("unhandled error")
        return _error(500, "Something went wrong on our side. It has been logged; please try again.")


def _error(status: int, message: str, code: str | None = None):
    if wants_json():
        return error_response(status, message, code=code)
    try:
        body = render_template("errors/error.html", status=status,
                               title=ERROR_TITLES.get(status, "Error"), message=message)
    except Exception:  # the error page itself must never fail
        current_app.logger.exception("error page failed")
        body = f"<!doctype html><title>{status}</title><h1>{ERROR_TITLES.get(status, 'Error')}</h1>"
    return body, status


def _security_headers(response: Response) -> None:
    headers = response.headers
    csp = g.get("csp") or ("default-src 'self'; script-src 'self'; style-src 'self'; "
                           "img-src 'self' data:; font-src 'self'; connect-src 'self'; "
                           "object-src 'none'; base-uri 'self'; frame-ancestors 'none'; "
                           "form-action 'self' https://checkout.stripe.com")
    headers.setdefault("Content-Security-Policy", csp)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    if current_app.config["SHOP_ENV"] == "production":
        headers.setdefault("Strict-Transport-Security", "max-age=63072000; includeSubDomains")

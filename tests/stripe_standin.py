"""A STAND-IN FOR STRIPE'S SERVERS, for tests only. This is not Stripe.

This machine cannot reach Stripe, so the tests run the real `stripe` library (pointed here by
STRIPE_API_BASE) against this small HTTP server on 127.0.0.1 (a free port, picked by the OS).
It answers the few endpoints the shop calls, the way Stripe's API reference describes them:

    POST /v1/checkout/sessions               create a Checkout Session
    GET  /v1/checkout/sessions/<id>          retrieve it
    GET  /v1/checkout/sessions?payment_intent=...   the session a PaymentIntent paid (a list)
    POST /v1/checkout/sessions/<id>/expire   expire an open one
    POST /v1/refunds                         refund a PaymentIntent

with Stripe's form encoding, bearer-key auth, idempotency keys (same key and body: the first
answer again; same key, other body: an error) and error shape. It also plays Stripe's hosted
payment page (GET/POST /pay/<id>: the shopper pays and is sent to `success_url`), refunds made
in Stripe's Dashboard (`dashboard_refund`, with the Charge that `charge.refunded` carries),
refunds that fail after they were made (`fail_refund`: the card was closed), and builds
webhook events signed with Stripe's documented scheme (header `t=<ts>,v1=<hex HMAC-SHA256 of
"<ts>.<payload>" keyed with the endpoint secret>`).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """A Stripe-Signature header for `payload`, computed from the endpoint secret."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def _nested(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding (`line_items[0][price_data][currency]=usd`) back into objects."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = key.replace("]", "").split("[")
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def lists(node: Any) -> Any:
        if isinstance(node, dict):
            if node and all(k.isdigit() for k in node):
                return [lists(node[k]) for k in sorted(node, key=int)]
            return {k: lists(v) for k, v in node.items()}
        return node

    return lists(root)


class StripeError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.body = status, {"error": {"type": type_, "message": message,
                                                    "code": code}}


class StripeStandIn:
    """The stand-in's state (sessions, refunds, requests seen) and its server thread."""

    def __init__(self, api_key: str = "sk_test_standin", webhook_secret: str = "whsec_standin"):
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.sessions: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self.fail_next: list[tuple[int, str]] = []  # (status, message) answers to hand out
        # Called with each refund the API creates, before answering (a webhook racing it).
        self.on_refund: Callable[[dict[str, Any]], None] | None = None
        self._idempotency: dict[str, tuple[str, int, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.base_url = ""

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> StripeStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                standin._serve(self, "GET")

            def do_POST(self) -> None:
                standin._serve(self, "POST")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, name="stripe-standin",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- what Stripe's side does in a test ---------------------------------------------------
    def complete(self, session_id: str, *, delayed: bool = False) -> dict[str, Any]:
        """The shopper pays on the hosted page: the session completes with a PaymentIntent.
        `delayed`: with a delayed payment method (a bank debit), which completes the session
        unpaid until the money arrives (`settle`)."""
        with self._lock:
            session = self.sessions[session_id]
            if session["status"] != "open":
                raise ValueError(f"session {session_id} is {session['status']}")
            session.update(status="complete", payment_status="unpaid" if delayed else "paid",
                           payment_intent="pi_" + secrets.token_hex(12))
            return dict(session)

    def settle(self, session_id: str) -> dict[str, Any]:
        """A delayed payment succeeds: the completed session becomes paid."""
        with self._lock:
            session = self.sessions[session_id]
            session.update(payment_status="paid")
            return dict(session)

    def expire(self, session_id: str) -> dict[str, Any]:
        """The session's time runs out."""
        with self._lock:
            session = self.sessions[session_id]
            session.update(status="expired")
            return dict(session)

    def charge(self, intent: str) -> dict[str, Any]:
        """The Charge of a paid PaymentIntent as it stands, refunds included: what Stripe's
        `charge.refunded` event carries (`amount_refunded` is the running total, `refunded`
        true once it is all refunded)."""
        with self._lock:
            session = next(s for s in self.sessions.values() if s["payment_intent"] == intent)
            refunded = self._refunded(intent)
            amount = session["amount_total"]
            return {"id": "ch_" + intent.removeprefix("pi_"), "object": "charge",
                    "amount": amount, "amount_captured": amount, "amount_refunded": refunded,
                    "refunded": refunded >= amount, "captured": True, "paid": True,
                    "status": "succeeded", "currency": session["currency"],
                    "payment_intent": intent, "metadata": {}, "livemode": False,
                    "created": session["created"]}

    def dashboard_refund(self, intent: str, amount: int | None = None) -> dict[str, Any]:
        """Someone refunds the payment in Stripe's Dashboard (not through the shop), in full or
        `amount` minor units; returns the Charge for the `charge.refunded` event."""
        self._refund({"payment_intent": intent, **({"amount": str(amount)} if amount else {})})
        return self.charge(intent)

    def fail_refund(self, refund_id: str,
                    reason: str = "expired_or_canceled_card") -> dict[str, Any]:
        """A refund fails after it was made (the customer's card was closed): Stripe marks it
        `failed` with a `failure_reason` and puts the money back in the balance, so it no
        longer counts in the Charge's `amount_refunded`. Returns the Refund that
        `refund.failed`, `refund.updated` and `charge.refund.updated` carry."""
        with self._lock:
            refund = self.refunds[refund_id]
            refund.update(status="failed", failure_reason=reason,
                          failure_balance_transaction="txn_" + secrets.token_hex(12))
            return dict(refund)

    def event(self, event_type: str, obj: dict[str, Any],
              event_id: str | None = None) -> tuple[bytes, str]:
        """A webhook delivery: the JSON body and its Stripe-Signature header."""
        payload = json.dumps({
            "id": event_id or "evt_" + secrets.token_hex(12), "object": "event",
            "api_version": "2025-01-27.acacia", "created": int(time.time()),
            "type": event_type, "livemode": False, "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "data": {"object": obj}})
        return payload.encode(), sign(payload, self.webhook_secret)

    def created_sessions(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "POST"
                and r["path"] == "/v1/checkout/sessions"]

    # -- HTTP --------------------------------------------------------------------------------
    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length).decode() if length else ""
        raw = url.query if method == "GET" else body
        params = _nested(parse_qsl(raw, keep_blank_values=True))
        if url.path.startswith("/pay/"):
            return self._hosted_page(handler, method, url.path.removeprefix("/pay/"))
        with self._lock:
            self.requests.append({"method": method, "path": url.path, "params": params,
                                  "idempotency_key": handler.headers.get("Idempotency-Key")})
        try:
            if handler.headers.get("Authorization") != f"Bearer {self.api_key}":
                raise StripeError(401, "Invalid API Key provided.", "invalid_request_error")
            if self.fail_next:
                status, message = self.fail_next.pop(0)
                raise StripeError(status, message, "api_error")
            status, answer = self._idempotent(handler, method, url.path, body, params)
        except StripeError as exc:
            status, answer = exc.status, exc.body
        data = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("Request-Id", "req_" + secrets.token_hex(8))
        handler.end_headers()
        handler.wfile.write(data)

    def _idempotent(self, handler, method: str, path: str, body: str,
                    params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        key = handler.headers.get("Idempotency-Key") if method == "POST" else None
        if key:
            with self._lock:
                seen = self._idempotency.get(key)
            if seen is not None:
                if seen[0] != f"{path}?{body}":
                    raise StripeError(400, "Keys for idempotent requests can only be used with "
                                           "the same parameters they were first used with.",
                                      "idempotency_error")
                return seen[1], seen[2]
        try:
            status, answer = 200, self._route(method, path, params)
        except StripeError as exc:
            status, answer = exc.status, exc.body
        if key:
            with self._lock:
                self._idempotency.setdefault(key, (f"{path}?{body}", status, answer))
                status, answer = self._idempotency[key][1], self._idempotency[key][2]
        return status, answer

    def _route(self, method: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
        parts = path.strip("/").split("/")
        if method == "POST" and parts == ["v1", "checkout", "sessions"]:
            return self._create_session(params)
        if parts == ["v1", "checkout", "sessions"] and method == "GET":
            return self._list_sessions(params)
        if parts[:3] == ["v1", "checkout", "sessions"] and len(parts) == 4 and method == "GET":
            return dict(self._session(parts[3]))
        if parts[:3] == ["v1", "checkout", "sessions"] and parts[4:] == ["expire"] \
                and method == "POST":
            with self._lock:
                session = self._session(parts[3])
                if session["status"] != "open":
                    raise StripeError(400, "Only Checkout Sessions with a status in [\"open\"] "
                                           "can be expired.", code="checkout_session_not_open")
                session["status"] = "expired"
                return dict(session)
        if method == "POST" and parts == ["v1", "refunds"]:
            refund = self._refund(params)
            if self.on_refund is not None:
                self.on_refund(refund)
            return refund
        raise StripeError(404, f"Unrecognized request URL ({method}: {path}).")

    def _session(self, session_id: str) -> dict[str, Any]:
        if session_id not in self.sessions:
            raise StripeError(404, f"No such checkout.session: '{session_id}'",
                              code="resource_missing")
        return self.sessions[session_id]

    def _list_sessions(self, p: dict[str, Any]) -> dict[str, Any]:
        """Stripe's list of sessions, filtered by `payment_intent` (the only filter the shop
        uses; at most one session completes with a given PaymentIntent)."""
        intent = p.get("payment_intent")
        with self._lock:
            found = [dict(s) for s in self.sessions.values()
                     if intent is None or s["payment_intent"] == intent]
        limit = int(p.get("limit") or 10)
        return {"object": "list", "url": "/v1/checkout/sessions", "has_more": len(found) > limit,
                "data": found[:limit]}

    def _refunded(self, intent: str) -> int:
        """What has reached the customer (or is on its way): failed refunds do not count."""
        return sum(r["amount"] for r in self.refunds.values()
                   if r["payment_intent"] == intent and r["status"] != "failed")

    def _create_session(self, p: dict[str, Any]) -> dict[str, Any]:
        for name in ("mode", "success_url", "line_items"):
            if not p.get(name):
                raise StripeError(400, f"Missing required param: {name}.", code="parameter_missing")
        now = int(time.time())
        expires_at = int(p.get("expires_at") or now + 24 * 3600)
        if not now + 30 * 60 <= expires_at <= now + 24 * 3600:
            raise StripeError(400, "The `expires_at` timestamp must be between 30 minutes and "
                                   "24 hours from Checkout Session creation.",
                              code="parameter_invalid_integer")
        if len(p["line_items"]) > 100:  # Stripe's limit in payment mode
            raise StripeError(400, "You may only specify up to 100 line items.",
                              code="parameter_invalid_integer")
        currencies = {item["price_data"]["currency"] for item in p["line_items"]}
        if len(currencies) != 1:
            raise StripeError(400, "All line items must use the same currency.")
        amount = sum(int(item["price_data"]["unit_amount"]) * int(item["quantity"])
                     for item in p["line_items"])
        if "isk" in currencies and amount % 100:
            # Stripe counts ISK in hundredths but takes whole krónur only (its "special cases").
            raise StripeError(400, "Invalid amount. Currency ISK has become effectively "
                                   "zero-decimal and charged amounts must be evenly divisible "
                                   "by 100.", code="invalid_charge_amount_no_decimal_compatible")
        session_id = "cs_test_" + secrets.token_hex(16)
        session = {
            "id": session_id, "object": "checkout.session", "mode": p["mode"],
            "status": "open", "payment_status": "unpaid", "amount_total": amount,
            "amount_subtotal": amount, "currency": currencies.pop(),
            "metadata": p.get("metadata") or {}, "payment_intent": None,
            "client_reference_id": p.get("client_reference_id"),
            "customer_email": p.get("customer_email"), "success_url": p["success_url"],
            "cancel_url": p.get("cancel_url"), "expires_at": expires_at, "created": now,
            "livemode": False, "url": f"{self.base_url}/pay/{session_id}"}
        with self._lock:
            self.sessions[session_id] = session
        return dict(session)

    def _refund(self, p: dict[str, Any]) -> dict[str, Any]:
        intent = p.get("payment_intent")
        with self._lock:
            session = next((s for s in self.sessions.values()
                            if intent and s["payment_intent"] == intent), None)
            if session is None:
                raise StripeError(404, f"No such payment_intent: '{intent}'",
                                  code="resource_missing")
            refunded = self._refunded(intent)
            amount = int(p.get("amount") or session["amount_total"] - refunded)
            if amount <= 0 or refunded + amount > session["amount_total"]:
                raise StripeError(400, f"Charge for {intent} has already been refunded.",
                                  code="charge_already_refunded")
            refund = {"id": "re_" + secrets.token_hex(12), "object": "refund",
                      "amount": amount, "currency": session["currency"],
                      "payment_intent": intent, "status": "succeeded",
                      "reason": p.get("reason"), "metadata": p.get("metadata") or {},
                      "charge": "ch_" + intent.removeprefix("pi_"), "failure_reason": None,
                      "created": int(time.time())}
            self.refunds[refund["id"]] = refund
            return dict(refund)

    def _hosted_page(self, handler: BaseHTTPRequestHandler, method: str,
                     session_id: str) -> None:
        """Stripe's payment page, reduced to one button: POST pays and redirects back."""
        session = self.sessions.get(session_id)
        if session is None:
            handler.send_response(404)
            handler.end_headers()
            return
        if method == "POST":
            self.complete(session_id)
            handler.send_response(303)
            handler.send_header("Location", session["success_url"].replace(
                "{CHECKOUT_SESSION_ID}", session_id))
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        page = (f"<!doctype html><title>Stripe stand-in</title><p>Pay "
                f"{session['amount_total']} {session['currency']}</p><form method=post>"
                f"<button>Pay</button></form>").encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html")
        handler.send_header("Content-Length", str(len(page)))
        handler.end_headers()
        handler.wfile.write(page)

"""Who may use the dashboard: loopback-only without a token, a token for anything else, CSRF.

Threats and answers:
- another user of a shared network: binding beyond loopback needs --auth-token; the browser
  logs in once with it and gets an HttpOnly, SameSite=Strict session cookie derived from it;
  API clients send `Authorization: Bearer TOKEN`;
- a web page in the operator's browser posting to the dashboard (CSRF): every POST must carry
  the X-CSRF-Token of the page (same-origin JS can read it, other origins cannot) and a
  matching Origin when the browser sends one; a bearer request needs no CSRF token (browsers
  never add that header on their own);
- DNS rebinding (an attacker's host name resolving to 127.0.0.1): without a token the Host
  header must name a loopback address, so a rebound page is refused;
- payloads, errors and tracebacks: the page only ever inserts them as text (static/dashboard.js),
  and a Content-Security-Policy without inline scripts stops anything that slipped through.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from urllib.parse import urlsplit

from flask import Request, Response

SESSION_COOKIE = "tq_session"
MIN_TOKEN_LENGTH = 16
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def is_loopback(host: str) -> bool:
    """True for localhost and 127.0.0.0/8 or ::1 (brackets allowed)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_of(netloc: str) -> str:
    """The host part of a Host header or an Origin's netloc (no port)."""
    try:
        return urlsplit(f"//{netloc}").hostname or ""
    except ValueError:
        return ""


class Guard:
    """Authentication and CSRF checks for one dashboard process."""

    def __init__(self, token: str | None) -> None:
        self.token = token or None
        # With a token the secrets derive from it, so every instance sharing it agrees and a
        # new token logs everyone out; without one they are random per process.
        key = self.token.encode() if self.token else secrets.token_bytes(32)
        self.session = hmac.new(key, b"tq-dashboard-session", hashlib.sha256).hexdigest()
        self.csrf = hmac.new(key, b"tq-dashboard-csrf", hashlib.sha256).hexdigest()

    def host_allowed(self, request: Request) -> bool:
        """Without a token only loopback Host headers are served (DNS rebinding)."""
        return bool(self.token) or is_loopback(_host_of(request.host))

    def bearer(self, request: Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        return bool(self.token) and scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), self.token.encode())

    def authenticated(self, request: Request) -> bool:
        if not self.token:
            return True
        cookie = request.cookies.get(SESSION_COOKIE, "")
        return self.bearer(request) or hmac.compare_digest(cookie.encode(),
                                                           self.session.encode())

    def same_origin(self, request: Request) -> bool:
        """False when the browser says the request comes from another origin."""
        origin = request.headers.get("Origin")
        if origin is None:   # not a browser, or one that omits it: the CSRF token still decides
            return True
        return urlsplit(origin).netloc == request.host

    def csrf_ok(self, request: Request) -> bool:
        if self.bearer(request):
            return True
        sent = request.headers.get("X-CSRF-Token", "")
        return self.same_origin(request) and hmac.compare_digest(sent.encode(),
                                                                 self.csrf.encode())

    def login(self, token: str) -> bool:
        return bool(self.token) and hmac.compare_digest(token.encode(), self.token.encode())

    def set_session(self, response: Response, secure: bool) -> None:
        response.set_cookie(SESSION_COOKIE, self.session, httponly=True, samesite="Strict",
                            secure=secure, path="/")


def harden(response: Response) -> Response:
    """Headers on every reply: no framing, no sniffing, no inline script, no caching of data."""
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    # same-origin, not no-referrer: with no-referrer Chromium sends `Origin: null` on the
    # login form's POST, which the origin check must refuse. Other origins still get nothing.
    response.headers["Referrer-Policy"] = "same-origin"
    if response.mimetype == "application/json":
        response.headers["Cache-Control"] = "no-store"
    return response

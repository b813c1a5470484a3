"""Who may use the dashboard: loopback-only without a token, a token for anything else, CSRF.

Threats and answers:
- another user of a shared network: binding beyond loopback needs --auth-token; the browser
  logs in once with it and gets an HttpOnly, SameSite=Strict session cookie, signed with a key
  derived from the token, that expires (--session-ttl, 12 h) and ends at logout; API clients
  send `Authorization: Bearer TOKEN`;
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
import threading
import time
from urllib.parse import urlsplit

from flask import Request
from werkzeug.wrappers import Response

SESSION_COOKIE = "tq_session"
MIN_TOKEN_LENGTH = 16
SESSION_TTL = 12 * 3600.0   # seconds a login lasts
LOGIN_FAILURES = 5          # wrong tokens (form or bearer) a client address may send ...
LOGIN_WINDOW = 60.0         # ... per this many seconds; then 429 until the oldest ages out
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

    def __init__(self, token: str | None, session_ttl: float = SESSION_TTL) -> None:
        self.token = token or None
        self.session_ttl = session_ttl
        # With a token the secrets derive from it, so every instance sharing it agrees and a
        # new token logs everyone out; without one they are random per process.
        key = self.token.encode() if self.token else secrets.token_bytes(32)
        self._session_key = hmac.new(key, b"tq-dashboard-session", hashlib.sha256).digest()
        self.csrf = hmac.new(key, b"tq-dashboard-csrf", hashlib.sha256).hexdigest()
        self._ended: dict[str, float] = {}   # sessions logged out here: nonce -> expiry
        self._lock = threading.Lock()
        self._failures: dict[str, list[float]] = {}   # client address -> failed attempts

    # -- failed logins: at most LOGIN_FAILURES per LOGIN_WINDOW per client address ---------
    def locked_out(self, address: str, now: float | None = None) -> float:
        """Seconds until `address` may try a token again (0: it may now)."""
        now = time.time() if now is None else now
        with self._lock:
            recent = [t for t in self._failures.get(address, ()) if t > now - LOGIN_WINDOW]
            if recent:
                self._failures[address] = recent
            else:
                self._failures.pop(address, None)
            if len(recent) < LOGIN_FAILURES:
                return 0.0
            return max(recent[0] + LOGIN_WINDOW - now, 0.0)

    def failed(self, address: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            if len(self._failures) > 10_000:   # many addresses: forget the stale ones
                self._failures = {a: ts for a, ts in self._failures.items()
                                  if ts and ts[-1] > now - LOGIN_WINDOW}
            self._failures.setdefault(address, []).append(now)

    # -- sessions: "expiry.nonce.mac", the mac over "expiry.nonce" ------------------------
    def _mac(self, body: str) -> str:
        return hmac.new(self._session_key, body.encode(), hashlib.sha256).hexdigest()

    def new_session(self, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + self.session_ttl)
        body = f"{expires}.{secrets.token_hex(12)}"
        return f"{body}.{self._mac(body)}"

    def session_valid(self, cookie: str, now: float | None = None) -> bool:
        expires, _, rest = cookie.partition(".")
        nonce, _, mac = rest.partition(".")
        if not (expires.isdigit() and nonce and mac):
            return False
        if not hmac.compare_digest(mac.encode(), self._mac(f"{expires}.{nonce}").encode()):
            return False
        with self._lock:
            return int(expires) > (time.time() if now is None else now) and \
                nonce not in self._ended

    def end_session(self, cookie: str) -> None:
        """Logout: this session is refused from now on (by this process; it also expires)."""
        if self.session_valid(cookie):
            expires, nonce, _ = cookie.split(".")
            now = time.time()
            with self._lock:
                self._ended = {n: e for n, e in self._ended.items() if e > now}
                self._ended[nonce] = float(expires)

    def host_allowed(self, request: Request) -> bool:
        """Without a token only loopback Host headers are served (DNS rebinding)."""
        return bool(self.token) or is_loopback(_host_of(request.host))

    def bearer(self, request: Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        return self.token is not None and scheme.lower() == "bearer" and \
            hmac.compare_digest(value.strip().encode(), self.token.encode())

    def authenticated(self, request: Request) -> bool:
        if not self.token:
            return True
        return self.bearer(request) or self.session_valid(request.cookies.get(SESSION_COOKIE, ""))

    def same_origin(self, request: Request) -> bool:
        """False when the browser says the request comes from another origin."""
        origin = request.headers.get("Origin")
        if origin is None:   # not a browser, or one that omits it: the CSRF token still decides
            return True
        return urlsplit(origin).netloc == request.host

    def csrf_ok(self, request: Request) -> bool:
        if self.bearer(request):
            return True
        # the page's fetch() sends a header; its one plain form (logout) a field
        sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf", "")
        return self.same_origin(request) and hmac.compare_digest(sent.encode(),
                                                                 self.csrf.encode())

    def login(self, token: str) -> bool:
        return self.token is not None and hmac.compare_digest(token.encode(),
                                                              self.token.encode())

    def set_session(self, response: Response, secure: bool) -> None:
        response.set_cookie(SESSION_COOKIE, self.new_session(), httponly=True,
                            samesite="Strict", secure=secure, path="/",
                            max_age=int(self.session_ttl))

    @staticmethod
    def clear_session(response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path="/", samesite="Strict", httponly=True)


def harden(response: Response) -> Response:
    """Headers on every reply: no framing, no sniffing, no inline script, no caching of data."""
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    # same-origin, not no-referrer: with no-referrer Chromium sends `Origin: null` on the
    # login form's POST, which the origin check must refuse. Other origins still get nothing.
    response.headers["Referrer-Policy"] = "same-origin"
    if response.mimetype in ("application/json", "text/plain"):   # (a task's full value)
        response.headers["Cache-Control"] = "no-store"
    return response

"""The dashboard's web app (Flask): one HTML page, a JSON API, and the actions on dead letters.

Reads are GET; retry, delete, purge, pause and resume are POST with the CSRF token
(security.py).
The article's /stats, /queues and /failed answer too, as aliases of /api/...
Every JSON reply carries an ETag: a page that sends it back (If-None-Match) gets 304 and no
body while nothing changed (the dead letters it refreshes every few seconds, mostly).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, Response, jsonify, redirect, render_template, request, url_for
from werkzeug.routing import BaseConverter

from tq.client import Client
from tq.errors import NoPermission, RedisUnavailable, TaskNotFound
from tq.store.link import REDIS_ERRORS
from tq.task import validate_name

from . import values
from .api import Board
from .security import SESSION_COOKIE, SESSION_TTL, Guard, harden
from .tasks import STATES, Filter

MAX_PAGE = 500             # rows a list answers at most (limit)
MAX_OFFSET = 10**9         # far beyond any dead-letter queue, far below Redis' int64 ranges
MAX_SPAN = 86400           # seconds of history or latency one read covers
MAX_SINCE = 10**12         # a Unix second (year 33658)
OPEN_PATHS = ("/login", "/logout", "/static/")   # served before logging in


def create_app(client: Client, token: str | None = None,
               session_ttl: float = SESSION_TTL) -> Flask:
    """The app for one tq.Client (its namespace); `token` turns authentication on."""
    app = Flask(__name__)
    app.url_map.converters["queue"] = QueueName
    app.config.update(MAX_CONTENT_LENGTH=1 << 20)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    board, guard = Board(client), Guard(token, session_ttl)
    lister = board.lister
    app.extensions["tq"] = board

    @app.before_request
    def gatekeeper() -> Any:
        if not guard.host_allowed(request):
            return _error(403, "this dashboard only answers to a loopback host name "
                          "(start it with --auth-token to serve others)")
        # a wrong token (a form login or a bearer header) counts against the address; past
        # LOGIN_FAILURES a minute it gets 429 until they age out (guessing a token is slow)
        address = request.remote_addr or "?"
        guessing = (request.path == "/login" and request.method == "POST") \
            or "Authorization" in request.headers
        wait = guard.locked_out(address) if guard.token and guessing else 0.0
        if wait:
            reply = _error(429, f"too many wrong tokens from this address: try again in "
                           f"{wait:.0f}s")
            reply.headers["Retry-After"] = str(int(wait) + 1)
            return reply
        if guard.token and "Authorization" in request.headers and not guard.bearer(request):
            guard.failed(address)
        if request.path.startswith(OPEN_PATHS) or guard.authenticated(request):
            if request.method == "POST" and request.path != "/login" and not guard.csrf_ok(
                    request):
                return _error(403, "missing or wrong CSRF token, or a cross-origin request")
            return None
        if request.path.startswith(("/api/", "/stats", "/queues", "/failed")):
            return _error(401, "authentication required (Authorization: Bearer TOKEN)")
        # a session cookie that no longer counts: it expired, or was logged out elsewhere
        expired = SESSION_COOKIE in request.cookies
        return redirect(url_for("login", expired=1) if expired else url_for("login"))

    app.after_request(harden)

    @app.after_request
    def conditional(response: Response) -> Response:
        if request.method == "GET" and response.status_code == 200 \
                and response.mimetype == "application/json":
            response.add_etag()
            response.make_conditional(request)
        return response

    def redis_down(exc: Exception) -> Response:
        return _error(503, f"Redis is unavailable: {exc}")

    for unreachable in (RedisUnavailable, *REDIS_ERRORS):   # (connection errors, timeouts)
        app.register_error_handler(unreachable, redis_down)

    @app.errorhandler(NoPermission)
    def not_permitted(exc: NoPermission) -> Response:   # a read-only Redis user (an ACL)
        return _error(403, f"Redis refused the change (this dashboard's Redis user may only "
                      f"read): {exc}")

    @app.errorhandler(ValueError)
    def bad_value(exc: ValueError) -> Response:
        return _error(400, str(exc))

    # -- pages --------------------------------------------------------------------------
    @app.get("/")
    def index() -> str:
        return render_template("index.html", csrf=guard.csrf, namespace=client.namespace,
                               redis=client.safe_url, auth=bool(guard.token))

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        if not guard.token:
            return redirect(url_for("index"))
        wrong = False
        if request.method == "POST":
            if guard.same_origin(request) and guard.login(request.form.get("token", "")):
                reply = redirect(url_for("index"))
                guard.set_session(reply, secure=request.is_secure)
                return reply
            guard.failed(request.remote_addr or "?")
            wrong = True
        return render_template("login.html", wrong=wrong,
                               expired=request.args.get("expired") == "1"), \
            403 if wrong else 200

    @app.post("/logout")
    def logout() -> Any:
        guard.end_session(request.cookies.get(SESSION_COOKIE, ""))
        reply = redirect(url_for("login"))
        guard.clear_session(reply)
        return reply

    # -- reads --------------------------------------------------------------------------
    def route(*paths: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(view: Callable[..., Any]) -> Callable[..., Any]:
            for path in paths:
                app.add_url_rule(path, view_func=view, methods=["GET"],
                                 endpoint=f"{view.__name__}:{path}")
            return view
        return register

    @route("/api/overview")
    def overview() -> Response:
        return jsonify(board.overview(since=_int_arg("since", None, 0, MAX_SINCE)))

    @route("/api/stats", "/stats")
    def stats() -> Response:
        return jsonify({**client.stats(), "rates": board.history.rates(60)})

    @route("/api/queues", "/queues")
    def queues() -> Response:
        return jsonify(client.queue_sizes())

    @route("/api/failed", "/failed")
    def failed() -> Response:
        items, later = board.dead(_int_arg("limit", 50, 1, MAX_PAGE),
                                  _int_arg("offset", 0, 0, MAX_OFFSET),
                                  request.args.get("queue") or None)
        reply = jsonify(items)
        if later is not None:   # cut short by its size: the next ones start there
            reply.headers["X-Next-Offset"] = str(later)
        return reply

    @route("/api/scheduled")
    def scheduled() -> Response:
        return jsonify(board.scheduled(_int_arg("limit", 50, 1, MAX_PAGE),
                                       request.args.get("queue") or None))

    @route("/api/masters")
    def masters() -> Response:
        return jsonify(board.masters())

    @route("/api/workers")
    def workers() -> Response:
        return jsonify(board.workers())

    @route("/api/tasks")
    def tasks() -> Response:
        f = _filter(client)
        return jsonify(lister.page(f, request.args.get("cursor") or None,
                                   _int_arg("limit", 50, 1, MAX_PAGE)))

    @route("/api/series")
    def series() -> Response:
        span = _int_arg("span", 3600, 60, MAX_SPAN)
        queue = request.args.get("queue") or None
        if queue is not None:
            validate_name("queue", queue)
        return jsonify(board.series(span, queue))

    @route("/api/tasks/<task_id>")
    def task(task_id: str) -> Response:
        try:
            return jsonify(values.task_page(client, task_id,
                                            _queue_arg()).to_dict())
        except TaskNotFound as exc:
            return _error(404, str(exc))

    @route("/api/tasks/<task_id>/value/<part>")
    def full_value(task_id: str, part: str) -> Response:
        """One value of a task as stored, in full (up to values.FULL_LIMIT), as text."""
        try:
            got = values.full_value(client, task_id, _queue_arg(), part)
        except TaskNotFound:
            return _error(404, f"task {task_id} has no {part} (unknown, or it is gone)")
        except values.TooLarge as exc:
            return _error(413, f"the {part} of task {task_id} has {exc}")
        reply = Response(got.text, mimetype="text/plain")
        reply.headers["X-TQ-Size"] = str(got.size)
        if got.note:
            reply.headers["X-TQ-Note"] = got.note
        return reply

    @route("/api/workflows/<workflow_id>")
    def workflow(workflow_id: str) -> Response:
        try:
            return jsonify(board.workflow(workflow_id))
        except TaskNotFound:
            return _error(404, f"no workflow {workflow_id} (unknown, or its record expired)")

    @route("/api/history")
    def history() -> Response:
        resolution = request.args.get("resolution", "s")
        if resolution not in ("s", "m"):
            return _error(400, 'resolution is "s" (per second) or "m" (per minute)')
        span = _int_arg("span", 3600 if resolution == "s" else 86400, 1, MAX_SPAN)
        return jsonify(board.history.series(span, resolution,
                                            since=_int_arg("since", None, 0, MAX_SINCE)))

    @route("/api/latency")
    def latency() -> Response:
        return jsonify(board.history.latency(_int_arg("window", 300, 1, MAX_SPAN)))

    # -- actions (POST + CSRF, checked in gatekeeper) ------------------------------------
    @app.post("/api/failed/retry")
    def retry() -> Response:
        ids, queue = _targets()
        return jsonify({"retried": client.retry_dead(ids, queue)})

    @app.post("/api/failed/delete")
    def delete() -> Response:
        ids, queue = _targets()
        return jsonify({"deleted": client.delete_dead(ids, queue)})

    @app.post("/api/scheduled/run")
    def run_now() -> Response:
        ids, queue = _targets()
        if not isinstance(ids, list) or queue is None:
            raise ValueError('give "ids" and their "queue"')
        return jsonify({"ran": client.run_now(ids, queue)})

    @app.post("/api/scheduled/delete")
    def delete_scheduled() -> Response:
        ids, queue = _targets()
        if not isinstance(ids, list) or queue is None:
            raise ValueError('give "ids" and their "queue"')
        return jsonify({"deleted": client.delete_scheduled(ids, queue)})

    @app.post("/api/tasks/bulk")
    def bulk() -> Response:
        """An action on every task a filter matches: retry or delete dead ones, run or
        delete scheduled ones. {"state", "action", "queue", "type", "text"}."""
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ValueError("send a JSON object")
        f = _filter(client, body)
        action = body.get("action")
        ops = {("dead", "retry"): client.retry_dead, ("dead", "delete"): client.delete_dead,
               ("scheduled", "run"): client.run_now,
               ("scheduled", "delete"): client.delete_scheduled}
        op = ops.get((f.state, str(action)))
        if op is None:
            raise ValueError("bulk actions: dead tasks retry or delete, scheduled tasks run "
                             "or delete")
        if f.state == "dead" and not f.narrows:   # the whole of some queues: one script each
            done = sum(op("all", q) for q in f.queues)   # type: ignore[operator]
        else:
            done = sum(op(ids, q) for q, ids in lister.all_matching(f))   # type: ignore[operator]
        return jsonify({"action": action, "state": f.state, "done": done})

    # merge_slashes off: "a//b" is a queue name, not a URL to tidy up (and redirect).
    @app.post("/api/queues/<queue:queue>/purge", merge_slashes=False)
    def purge(queue: str) -> Response:
        body = request.get_json(silent=True) or {}
        if body.get("confirm") != queue:
            return _error(400, 'purging needs {"confirm": "<the queue name>"}')
        return jsonify({"purged": client.purge(queue)})

    @app.post("/api/tasks/<task_id>/cancel")
    def cancel(task_id: str) -> Response:
        body = request.get_json(silent=True) or {}
        return jsonify({"id": task_id, "outcome": client.cancel(task_id, body.get("queue"))})

    @app.post("/api/workflows/<workflow_id>/cancel")
    def cancel_workflow(workflow_id: str) -> Response:
        try:
            return jsonify({"id": workflow_id, **client.cancel_workflow(workflow_id)})
        except TaskNotFound:
            return _error(404, f"no workflow {workflow_id} (unknown, or its record expired)")

    @app.post("/api/queues/<queue:queue>/pause", merge_slashes=False)
    def pause(queue: str) -> Response:
        client.pause(queue)
        return jsonify({"queue": queue, "paused": True})

    @app.post("/api/queues/<queue:queue>/resume", merge_slashes=False)
    def resume(queue: str) -> Response:
        client.resume(queue)
        return jsonify({"queue": queue, "paused": False})

    return app


def _queue_arg() -> str | None:
    queue = request.args.get("queue") or None
    if queue is not None:
        validate_name("queue", queue)
    return queue


def _targets() -> tuple[list[str] | str, str | None]:
    """(ids or "all", queue) from a JSON body: {"ids": [...]} or {"all": true}, "queue"."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValueError("send a JSON object")
    queue = body.get("queue") or None
    if queue is not None and not isinstance(queue, str):
        raise ValueError("queue must be a string")
    if body.get("all") is True:
        return "all", queue
    ids = body.get("ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise ValueError('give "ids": [task ids] or "all": true')
    return ids, queue


def _filter(client: Client, args: Any = None) -> Filter:
    """A task filter from query arguments (or a JSON body): state, queue, type, text."""
    args = request.args if args is None else args

    def text(name: str, limit: int = 200) -> str | None:
        value = args.get(name) or None
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            raise ValueError(f"{name} must be a string of at most {limit} characters")
        return value

    state = text("state") or "dead"
    if state not in STATES:
        raise ValueError(f"state is one of {', '.join(STATES)}")
    queue = text("queue")
    if queue is not None:
        validate_name("queue", queue)
    ttype = text("type")
    if ttype is not None:
        validate_name("type", ttype)
    return Filter(state, [queue] if queue else client.queues(), ttype, text("text"))


class QueueName(BaseConverter):
    """A queue name in a URL path: tq's name characters, "/" included (the page sends it
    percent-encoded, which the server decodes before routing)."""

    regex = r"[\w.\-/@+]+?"
    part_isolating = False
    weight = 200


def _int_arg(name: str, default: int | None, minimum: int, maximum: int) -> Any:
    """A query argument that must be an integer from minimum to maximum (else a 400)."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw) if len(raw) <= 20 else None   # no 4,300-digit parses
    except ValueError:
        value = None
    if value is None or not minimum <= value <= maximum:
        raise ValueError(f"{name} must be an integer from {minimum} to {maximum}")
    return value


def _error(status: int, message: str) -> Response:
    reply = jsonify({"error": message})
    reply.status_code = status
    return reply

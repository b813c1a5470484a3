"""`tq dashboard`: serve the web dashboard (waitress) for the Redis and namespace of the tq CLI."""

from __future__ import annotations

import logging

import click

from tq.cli.common import open_client
from tq.client import Client
from tq.config import split_bind
from tq.errors import TQError

from .security import MIN_TOKEN_LENGTH, SESSION_TTL, is_loopback

log = logging.getLogger(__name__)


def _bind(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, int]:
    try:
        return split_bind(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("dashboard")
@click.option("--bind", default="127.0.0.1:8080", show_default=True, callback=_bind,
              metavar="HOST:PORT", help="address to listen on; anything but loopback needs "
              "--auth-token")
@click.option("--auth-token", envvar="TQ_DASHBOARD_TOKEN", default=None, metavar="TOKEN",
              help=f"require this token (at least {MIN_TOKEN_LENGTH} characters) to log in; "
              "prefer the TQ_DASHBOARD_TOKEN variable, a flag shows in `ps`")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 64),
              help="requests served at once")
@click.option("--session-ttl", envvar="TQ_DASHBOARD_SESSION_TTL", default=SESSION_TTL,
              show_default=True, type=click.FloatRange(1, 30 * 86400), metavar="SECONDS",
              help="how long a browser login lasts")
@click.pass_context
def dashboard(ctx: click.Context, bind: tuple[str, int], auth_token: str | None,
              threads: int, session_ttl: float) -> None:
    """Serve the web dashboard: queues, throughput, workers, dead letters and their actions."""
    host, port = bind
    if auth_token is not None and len(auth_token) < MIN_TOKEN_LENGTH:
        raise click.BadParameter(f"use at least {MIN_TOKEN_LENGTH} characters (e.g. "
                                 "`openssl rand -hex 16`)", param_hint="--auth-token")
    if not is_loopback(host) and not auth_token:
        raise click.UsageError(f"refusing to serve the dashboard on {host}, beyond this "
                               "machine, without --auth-token (or TQ_DASHBOARD_TOKEN)")
    try:
        client = open_client(ctx)   # never starts an embedded Redis: it would be empty
        client.broker.ping()
    except TQError as exc:
        raise click.ClickException(str(exc)) from None
    serve(client, host, port, auth_token, threads, session_ttl)


def serve(client: Client, host: str, port: int, token: str | None, threads: int = 8,
          session_ttl: float = SESSION_TTL) -> None:
    """Run the dashboard in the foreground until interrupted."""
    import waitress

    from .app import create_app

    server = waitress.create_server(create_app(client, token, session_ttl), host=host, port=port,
                                    threads=threads, ident="tq-dashboard")
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"tq dashboard on http://{shown}:{port}/ (Redis {client.safe_url}, namespace "
               f"{client.namespace}{', token required' if token else ''}); Ctrl-C stops it",
               err=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        client.close()

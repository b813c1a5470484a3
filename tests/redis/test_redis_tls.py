"""TLS with client certificates, end to end: producer, master and children over rediss://."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from redis_server import RedisServer, free_port
from tls_certs import make_certs

import tq


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    certs = make_certs(folder / "certs")
    port = free_port()
    server = RedisServer(folder / "redis", extra=[
        "--tls-port", str(port), "--tls-cert-file", str(certs.server_cert),
        "--tls-key-file", str(certs.server_key), "--tls-ca-cert-file", str(certs.ca),
        "--tls-auth-clients", "yes", "--maxmemory-policy", "noeviction"])
    server.start()   # the plain port is the test's own admin access; tq only gets TLS
    yield server, certs, port
    server.stop()


def tls_url(port: int, certs, client_cert: bool = True) -> str:
    q = f"ssl_ca_certs={quote(str(certs.ca))}&ssl_cert_reqs=required"
    if client_cert:
        q += f"&ssl_certfile={quote(str(certs.client_cert))}" \
             f"&ssl_keyfile={quote(str(certs.client_key))}"
    return f"rediss://127.0.0.1:{port}/0?{q}"


def test_producer_master_and_children_over_tls_with_client_certificates(tls_server, masters):
    server, certs, port = tls_server
    server.client().flushall()
    url = tls_url(port, certs)
    with tq.Client(url) as client:
        m = masters("-c", "2", "-A", "procapp", "--queues", "tls", url=url)
        m.wait_ready(2)
        ids = client.enqueue_many([{"type": "pid", "queue": "tls", "payload": {}}] * 20)
        assert {client.wait(i, timeout=15) for i in ids} <= m.child_pids()
    assert "Traceback" not in m.log()


def test_a_client_without_a_certificate_is_refused_clearly(tls_server):
    _, certs, port = tls_server
    with tq.Client(tls_url(port, certs, client_cert=False)) as client, \
            pytest.raises(tq.RedisUnavailable) as err:
        client.enqueue("pid", {}, queue="tls")
    assert f"rediss://127.0.0.1:{port}/0" in str(err.value)

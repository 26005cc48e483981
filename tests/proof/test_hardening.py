"""The hardening review's attacks on the server and the proxy (issue #26 items 1, 6, 7 and 11),
each replayed against the real service on loopback with a real stub upstream."""

from __future__ import annotations

import pytest

from tests.proof.conftest import proxying_service
from tests.proof.rawhttp import HEALTH, exchange


@pytest.fixture
def served(tmp_path):
    with proxying_service(tmp_path) as pair:
        yield pair


def _port(service) -> int:
    return int(service.url.rsplit(":", 1)[1])


# --- item 11: small things ----------------------------------------------------------------------

@pytest.mark.parametrize("host", ["localhost:1@evil.com", "127.0.0.1%anything", "127.0.0.1%25evil.com:8787",
                                  "localhost:8787:80", "[::1]evil.com", "localhost evil.com"])
def test_host_guard_refuses_hosts_that_only_start_like_loopback(served, host):
    service, _ = served
    reply, _ = exchange(_port(service), f"GET /v1/health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    assert reply.status in (400, 403), reply
    assert exchange(_port(service), HEALTH)[0].status == 200


@pytest.mark.parametrize("host", ["localhost:8787", "127.0.0.1", "[::1]:8787", "a.localhost:1", "LOCALHOST"])
def test_host_guard_still_accepts_loopback_hosts(served, host):
    service, _ = served
    reply, _ = exchange(_port(service), f"GET /v1/health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    assert reply.status == 200, reply


def test_upstream_root_without_trailing_slash_sends_slash(served):
    service, stub = served
    reply, _ = exchange(_port(service), b"GET /proxy/openai HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert reply.status is not None and reply.status < 500, reply
    assert stub.last().target == "/"


def test_unknown_upstream_names_upstreams_but_not_their_urls(served):
    service, stub = served
    reply, _ = exchange(_port(service), b"GET /proxy/nope/v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert reply.status == 404
    body = reply.json()
    assert "openai" in body["upstreams"] and "openrouter" in body["upstreams"]
    assert stub.url not in reply.body.decode() and "127.0.0.1:" not in reply.body.decode()
    assert "api.openai.com" not in reply.body.decode()

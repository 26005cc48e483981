from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.mail.smtp_kit import Server, self_signed


@pytest.fixture(scope="session")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def trust(cert: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    """Trust the test certificate the way a user trusts a private CA: SSL_CERT_FILE."""
    monkeypatch.setenv("SSL_CERT_FILE", str(cert[0]))
    return cert[0]


@pytest.fixture
def smtp_server(cert: tuple[Path, Path]) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(mode: str = "plain", *, auth: bool = False, port: int | None = None) -> Server:
        server = Server(mode, cert if mode != "plain" else None, auth=auth, port=port)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()

"""TLS to the team database: libpq's `sslmode`, against a server that accepts nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llmtray.cli import main
from tests import postgres
from tests.mail.smtp_kit import self_signed


def certificate(folder: Path) -> tuple[bytes, bytes]:
    """A self-signed certificate for 127.0.0.1 (its own CA), and its key, as PEM."""
    cert, key = self_signed(folder)
    return cert.read_bytes(), key.read_bytes()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[postgres.PgServer, bytes]]:
    cert, key = certificate(tmp_path_factory.mktemp("tls"))
    server = postgres.start(tls=(cert, key))
    if isinstance(server, str):
        pytest.skip(server)
    yield server, cert
    server.stop()


def test_verify_full_connects_over_tls_and_plain_is_refused(tls_server, data_dir: Path, tmp_path, capsys):
    server, cert = tls_server
    ca = tmp_path / "ca.crt"
    ca.write_bytes(cert)
    url = server.new_database(schema=False)
    verified = f"{url}?sslmode=verify-full&sslrootcert={ca}"
    assert main(["--data-dir", str(data_dir), "--database", verified, "status"]) == 0
    import psycopg

    with psycopg.connect(verified) as conn:  # what llmtray's connection negotiated, as the server saw it
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)
    capsys.readouterr()
    assert main(["--data-dir", str(data_dir), "--database", f"{url}?sslmode=disable", "status"]) != 0
    assert "no encryption" in capsys.readouterr().err  # pg_hba: hostssl only


def test_verify_full_refuses_a_server_it_cannot_verify(tls_server, data_dir: Path, capsys):
    server, _ = tls_server
    url = server.new_database(schema=False)
    other_ca = Path(data_dir / "other-ca.crt")
    (data_dir / "other").mkdir()
    other_ca.write_bytes(certificate(data_dir / "other")[0])
    assert main(["--data-dir", str(data_dir), "--database", f"{url}?sslmode=verify-full&sslrootcert={other_ca}",
                 "status"]) != 0
    assert "certificate verify failed" in capsys.readouterr().err

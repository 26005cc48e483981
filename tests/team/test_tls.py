"""TLS to the team database: libpq's `sslmode`, against a server that accepts nothing else."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from llmtray.cli import main
from tests import postgres


def certificate() -> tuple[bytes, bytes]:
    """A self-signed certificate for 127.0.0.1 (its own CA), and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "llmtray test db")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


@pytest.fixture(scope="module")
def tls_server() -> Iterator[tuple[postgres.PgServer, bytes]]:
    cert, key = certificate()
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
    other_ca.write_bytes(certificate()[0])
    assert main(["--data-dir", str(data_dir), "--database", f"{url}?sslmode=verify-full&sslrootcert={other_ca}",
                 "status"]) != 0
    assert "certificate verify failed" in capsys.readouterr().err

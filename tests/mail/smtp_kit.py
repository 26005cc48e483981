"""A real SMTP server for the mail tests (aiosmtpd on a loopback port, in its own thread),
with or without login, STARTTLS or implicit TLS, and a self-signed certificate made per session."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

USER, PASSWORD = "alice", "s3cret"
REFUSED = "nobody@refused.example"


def self_signed(folder: Path) -> tuple[Path, Path]:
    """cert.pem and key.pem for localhost / 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class Inbox:
    """What the server accepted: (envelope recipients, parsed message)."""

    received: list[tuple[list[str], EmailMessage]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001, N802
        if address == REFUSED:
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, N802
        msg = message_from_bytes(envelope.original_content, policy=policy.default)
        with self.cond:
            self.received.append((list(envelope.rcpt_tos), msg))
            self.cond.notify_all()
        return "250 Message accepted"

    def wait_for(self, n: int, timeout: float = 20.0) -> list[tuple[list[str], EmailMessage]]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.received) >= n, timeout)
            return list(self.received)


def _authenticator(server, session, envelope, mechanism, auth_data):  # noqa: ANN001
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode() \
        and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`mode`: "plain", "starttls" (offers STARTTLS, login only after it) or "ssl" (implicit TLS)."""

    def __init__(self, mode: str, cert: tuple[Path, Path] | None = None, *, auth: bool = False,
                 port: int | None = None):
        self.inbox = Inbox()
        self.port = port or free_port()
        tls = None
        if cert is not None:
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.load_cert_chain(*cert)
        kwargs: dict = {"hostname": "127.0.0.1", "port": self.port}
        if auth:
            # aiosmtpd counts a session as TLS only after STARTTLS: under implicit TLS it offers
            # AUTH only with auth_require_tls off (and then warns if AUTH is also required).
            kwargs.update(authenticator=_authenticator, auth_required=mode == "starttls",
                          auth_require_tls=mode == "starttls")
        if mode == "starttls":
            kwargs.update(tls_context=tls, require_starttls=True)
        elif mode == "ssl":
            kwargs.update(ssl_context=tls)
        self.controller = Controller(self.inbox, **kwargs)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

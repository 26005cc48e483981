"""Sending one message over SMTP, and saying exactly what went wrong when it can't be sent.

STARTTLS, implicit TLS (`ssl`) or none (a local relay); certificates are always checked against
the system's trust store (`SSL_CERT_FILE` adds a private CA). The password is a secret: it comes
from the keyring (service `llmtray`, key `smtp_password`) or `LLMTRAY_SMTP_PASSWORD`, never
from config.toml. Every failure becomes a `MailError` whose `kind` names which of the usual
mistakes it is (wrong password, TLS mismatch, refused recipient, unreachable host), because
"SMTP error" alone sends a user hunting through four settings.
"""

from __future__ import annotations

import logging
import os
import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from llmtray.config import EmailConfig
from llmtray.core.alerts import KEYRING_SERVICE
from llmtray.core.errors import LLMTrayError

log = logging.getLogger(__name__)

PASSWORD_KEY = "smtp_password"
PASSWORD_ENV = "LLMTRAY_SMTP_PASSWORD"
TIMEOUT_S = 20.0

# what a MailError is about; `retry` says whether trying later can help without the user
KINDS = ("config", "password", "auth", "tls", "recipient", "sender", "unreachable", "server")


class MailError(LLMTrayError):
    """A message was not sent; `kind` is one of `KINDS`, the text says what to change."""

    def __init__(self, kind: str, message: str, *, retry: bool = True):
        assert kind in KINDS, kind
        self.kind, self.retry = kind, retry
        super().__init__(message)


def load_password() -> str | None:
    """`LLMTRAY_SMTP_PASSWORD`, else the keyring; None when neither has one. Call it off the GUI
    thread: a keyring can sit on an unlock prompt."""
    env = os.environ.get(PASSWORD_ENV)
    if env:
        return env
    import keyring
    from keyring.errors import KeyringError

    try:
        return keyring.get_password(KEYRING_SERVICE, PASSWORD_KEY)
    except (KeyringError, RuntimeError, OSError) as exc:
        log.warning("SMTP password unavailable: keyring failed (%s: %s)", type(exc).__name__, exc)
        return None


def save_password(password: str | None) -> None:
    """Keep the SMTP password in the keyring (None or "" removes it)."""
    import keyring
    from keyring.errors import PasswordDeleteError

    if not password:
        try:
            keyring.delete_password(KEYRING_SERVICE, PASSWORD_KEY)
        except PasswordDeleteError:
            pass
        return
    keyring.set_password(KEYRING_SERVICE, PASSWORD_KEY, password)


def addressed(message: EmailMessage, config: EmailConfig) -> EmailMessage:
    """`message` with From, To, Date and Message-ID set from `config` (what readers display)."""
    for header in ("From", "To", "Date", "Message-ID"):
        del message[header]
    message["From"] = f"llmtray <{config.sender}>"
    message["To"] = ", ".join(config.to)
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain="llmtray")
    return message


def send(config: EmailConfig, message: EmailMessage, password: str | None, *,
         timeout: float = TIMEOUT_S) -> None:
    """Deliver `message` to `config.to` from `config.sender`, or raise `MailError`."""
    if not config.configured:
        missing = [k for k, v in (("host", config.host), ("from", config.sender), ("to", config.to)) if not v]
        raise MailError("config", f"email is not set up: [email] {', '.join(missing)} missing in config.toml",
                        retry=False)
    if config.username and not password:
        raise MailError("password", f"no SMTP password for {config.username}: set it in Settings (kept in the "
                        f"keyring as '{PASSWORD_KEY}') or in {PASSWORD_ENV}")  # retried: a locked keyring opens
    where = f"{config.host}:{config.smtp_port}"
    try:
        with _connect(config, timeout) as smtp:
            _secure(smtp, config, where)
            if config.username:
                _login(smtp, config, password or "", where)
            refused = smtp.send_message(addressed(message, config), from_addr=config.sender, to_addrs=list(config.to))
    except MailError:
        raise
    except smtplib.SMTPRecipientsRefused as exc:
        raise MailError("recipient", f"{where} refused every recipient: {_refusals(exc.recipients)}",
                        retry=False) from None
    except smtplib.SMTPSenderRefused as exc:
        raise MailError("sender", f"{where} refused the sender {config.sender}: {exc.smtp_code} "
                        f"{_text(exc.smtp_error)}", retry=False) from None
    except ssl.SSLCertVerificationError as exc:
        raise MailError("tls", f"TLS: the certificate of {where} is not trusted ({exc.verify_message}); "
                        "is host the name on its certificate?") from None
    except ssl.SSLError as exc:
        hint = ("the port does not speak implicit TLS — try security = \"starttls\" (usually port 587)"
                if config.security == "ssl" else "TLS handshake failed")
        raise MailError("tls", f"TLS mismatch with {where}: {hint} ({exc.reason or exc})") from None
    except (smtplib.SMTPServerDisconnected, TimeoutError) as exc:
        hint = (" — the port may expect implicit TLS: try security = \"ssl\" (usually port 465)"
                if config.security != "ssl" else "")
        raise MailError("tls" if hint else "server", f"{where} did not answer as an SMTP server "
                        f"({type(exc).__name__}: {exc or 'timed out'}){hint}") from None
    except smtplib.SMTPResponseException as exc:
        raise MailError("server", f"{where} answered {exc.smtp_code} {_text(exc.smtp_error)}") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise MailError("unreachable", f"cannot reach the SMTP server {where}: {_os_text(exc)}") from None
    if refused:
        raise MailError("recipient", f"{where} refused some recipients (the others got it): {_refusals(refused)}",
                        retry=False)


class _SMTP(smtplib.SMTP):
    """Tells a host that can't be reached (DNS, refused, no route, connect timeout) from a
    server that was reached but answers wrongly: both raise OSError inside `smtplib`."""

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        try:
            return super()._get_socket(host, port, timeout)
        except OSError as exc:
            raise MailError("unreachable", f"cannot reach the SMTP server {host}:{port}: {_os_text(exc)}") from None


class _SMTPS(smtplib.SMTP_SSL, _SMTP):
    """Implicit TLS; its handshake errors stay TLS errors (only the TCP connect is `_SMTP`'s)."""


def _connect(config: EmailConfig, timeout: float) -> smtplib.SMTP:
    assert config.host is not None
    if config.security == "ssl":
        return _SMTPS(config.host, config.smtp_port, timeout=timeout, context=ssl.create_default_context())
    return _SMTP(config.host, config.smtp_port, timeout=timeout)


def _secure(smtp: smtplib.SMTP, config: EmailConfig, where: str) -> None:
    if config.security != "starttls":
        return
    smtp.ehlo()
    if not smtp.has_extn("starttls"):
        raise MailError("tls", f"TLS mismatch: {where} does not offer STARTTLS — use security = \"ssl\" for an "
                        "implicit-TLS port (465) or \"none\" for a local relay")
    smtp.starttls(context=ssl.create_default_context())
    smtp.ehlo()


def _login(smtp: smtplib.SMTP, config: EmailConfig, password: str, where: str) -> None:
    smtp.ehlo_or_helo_if_needed()
    if not smtp.has_extn("auth"):
        raise MailError("auth", f"{where} offers no login (AUTH) here"
                        + (" before TLS: use security = \"starttls\" or \"ssl\"" if config.security == "none" else
                           "; leave username empty for a relay that needs none"), retry=False)
    try:
        smtp.login(config.username or "", password)
    except smtplib.SMTPAuthenticationError as exc:
        raise MailError("auth", f"wrong SMTP username or password for {config.username} at {where} "
                        f"(server said {exc.smtp_code} {_text(exc.smtp_error)})") from None


def _text(value: bytes | str) -> str:
    return (value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)).strip()


def _refusals(refused: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(f"{addr} ({code} {_text(text)})" for addr, (code, text) in refused.items())


def _os_text(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens on that port)"
    strerror = getattr(exc, "strerror", None)
    return strerror or str(exc) or type(exc).__name__

"""Sending over a real SMTP server: every security mode, login, and each usual mistake named."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from llmtray.config import EmailConfig
from llmtray.mail import smtp
from llmtray.mail.smtp import MailError
from tests.mail.smtp_kit import PASSWORD, REFUSED, USER, free_port


def config(port: int, security: str = "none", username: str | None = None, to=("me@example.com",)) -> EmailConfig:
    return EmailConfig(host="127.0.0.1", port=port, security=security, username=username,
                       sender="llmtray@example.com", to=tuple(to))


def note(subject: str = "hello") -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject
    msg.set_content("body text\n")
    return msg


def test_plain_relay_without_login(smtp_server):
    server = smtp_server("plain")
    smtp.send(config(server.port), note("relay"), None)
    [(rcpt, msg)] = server.inbox.wait_for(1)
    assert rcpt == ["me@example.com"]
    assert msg["Subject"] == "relay" and msg["From"] == "llmtray <llmtray@example.com>"
    assert msg["To"] == "me@example.com" and msg["Message-ID"] and msg["Date"]
    assert msg.get_content().splitlines() == ["body text"]


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_login_over_tls(smtp_server, trust, mode):
    server = smtp_server(mode, auth=True)
    smtp.send(config(server.port, mode, USER, to=("a@example.com", "b@example.com")), note(mode), PASSWORD)
    [(rcpt, msg)] = server.inbox.wait_for(1)
    assert rcpt == ["a@example.com", "b@example.com"] and msg["Subject"] == mode


def _fails(cfg: EmailConfig, password: str | None, kind: str, *words: str, timeout: float = 5.0) -> MailError:
    with pytest.raises(MailError) as info:
        smtp.send(cfg, note(), password, timeout=timeout)
    assert info.value.kind == kind, str(info.value)
    for word in words:
        assert word in str(info.value), str(info.value)
    return info.value


def test_wrong_password_is_named_and_nothing_is_delivered(smtp_server, trust):
    server = smtp_server("starttls", auth=True)
    _fails(config(server.port, "starttls", USER), "wrong", "auth", "wrong SMTP username or password", USER, "535")
    assert server.inbox.received == []


def test_missing_password_is_named_before_connecting(monkeypatch):
    monkeypatch.delenv(smtp.PASSWORD_ENV, raising=False)
    _fails(config(free_port(), "starttls", USER), smtp.load_password(), "password", "smtp_password",
           smtp.PASSWORD_ENV)


def test_password_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(smtp.PASSWORD_ENV, "from-env")
    assert smtp.load_password() == "from-env"


def test_untrusted_certificate_is_a_tls_error(smtp_server, monkeypatch, cert):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    server = smtp_server("starttls", auth=True)
    _fails(config(server.port, "starttls", USER), PASSWORD, "tls", "not trusted")
    assert server.inbox.received == []


def test_implicit_tls_against_a_plain_port_is_a_tls_mismatch(smtp_server, trust):
    server = smtp_server("plain")
    _fails(config(server.port, "ssl"), None, "tls", "TLS mismatch", "starttls")
    assert server.inbox.received == []


def test_starttls_against_an_implicit_tls_port_is_a_tls_mismatch(smtp_server, trust):
    server = smtp_server("ssl")
    _fails(config(server.port, "starttls"), None, "tls", "implicit TLS", "ssl", timeout=1.5)


def test_starttls_not_offered_is_a_tls_mismatch(smtp_server):
    server = smtp_server("plain")
    _fails(config(server.port, "starttls"), None, "tls", "does not offer STARTTLS")
    assert server.inbox.received == []


def test_refused_recipient_is_named(smtp_server):
    server = smtp_server("plain")
    err = _fails(config(server.port, to=(REFUSED,)), None, "recipient", REFUSED, "550")
    assert not err.retry and server.inbox.received == []


def test_partly_refused_recipients_still_reach_the_others(smtp_server):
    server = smtp_server("plain")
    _fails(config(server.port, to=("ok@example.com", REFUSED)), None, "recipient", REFUSED, "others got it")
    [(rcpt, _)] = server.inbox.wait_for(1)
    assert rcpt == ["ok@example.com"]


def test_unreachable_host_is_named():
    _fails(config(free_port()), None, "unreachable", "connection refused", "127.0.0.1")
    cfg = EmailConfig(host="no-such-host.invalid", port=25, security="none", sender="a@example.com",
                      to=("b@example.com",))
    _fails(cfg, None, "unreachable", "unknown host", "no-such-host.invalid")


def test_incomplete_settings_are_named():
    err = _fails(EmailConfig(host="127.0.0.1"), None, "config", "from", "to")
    assert not err.retry

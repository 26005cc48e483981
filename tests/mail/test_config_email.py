"""`[email]` in config.toml: read, written by Settings (comments kept), every mistake named by key."""

from __future__ import annotations

import tomllib

import pytest

from llmtray import config as configmod
from llmtray.core.errors import ConfigError


def test_defaults_and_a_full_section(tmp_path):
    assert configmod.Config().email == configmod.EmailConfig()
    assert not configmod.Config().email.configured
    path = tmp_path / "config.toml"
    path.write_text('# mine\n[email]\nhost = "smtp.example.com"\nsecurity = "ssl"\nusername = "me"\n'
                    'from = "me@example.com"\nto = ["a@example.com", "b@example.com"]\nalerts = true\n'
                    'digest = "weekly"\ndigest_at = "07:30"\n', encoding="utf-8")
    email = configmod.load(path).email
    assert email == configmod.EmailConfig("smtp.example.com", None, "ssl", "me", "me@example.com",
                                          ("a@example.com", "b@example.com"), True, "weekly", "07:30")
    assert email.configured and email.smtp_port == 465


def test_settings_write_keeps_comments_and_round_trips(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("# my notes\n[display]\nweek_start = \"sunday\"\n", encoding="utf-8")
    saved = configmod.save(path, {"email": {"host": "mail.local", "port": 2525, "security": "none",
                                            "from": "x@y.org", "to": ["z@y.org"], "digest": "daily"}})
    assert saved.email.smtp_port == 2525 and saved.email.to == ("z@y.org",) and saved.week_start == 6
    assert path.read_text(encoding="utf-8").startswith("# my notes") and configmod.load(path) == saved


@pytest.mark.parametrize("body, message", [
    ('port = 0', "email.port must be an integer 1–65535"),
    ('security = "tls"', "email.security must be one of starttls, ssl, none, got 'tls'"),
    ('to = []', "email.to must be a list of mail addresses"),
    ('to = ["ok@example.com", "broken"]', "email.to[1] must be a mail address"),
    ('from = "Me <me@example.com>"', "email.from must be a mail address"),
    ('alerts = "yes"', "email.alerts must be true or false"),
    ('digest = "hourly"', "email.digest must be one of daily, weekly, off"),
    ('digest_at = "8am"', "email.digest_at must be a local time HH:MM"),
    ('digest_at = "24:00"', "email.digest_at must be a local time HH:MM"),
    ('host = "smtp example.com"', "email.host must be a non-empty name without spaces"),
    ('password = "hunter2"', "unknown key email.password"),  # secrets never in config.toml
])
def test_mistakes_are_named_and_nothing_is_written(tmp_path, body, message):
    path = tmp_path / "config.toml"
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        configmod.parse(tomllib.loads(f"[email]\n{body}\n"), str(path))
    before = "[email]\nhost = \"a.example\"\n"
    path.write_text(before, encoding="utf-8")
    key, _, value = body.partition(" = ")
    with pytest.raises(ConfigError):
        configmod.save(path, {"email": {key: tomllib.loads(f"v = {value}")["v"]}})
    assert path.read_text(encoding="utf-8") == before

"""config.toml: settings a user can read and edit by hand; every mistake is named by key.

Secrets never live here (they go to the keyring). Unknown keys are errors rather than silently
ignored, because a misspelt `spike_factor` that does nothing is worse than a clear message.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from llmtray.agents.settings import AgentsConfig, parse_agents
from llmtray.core.errors import ConfigError
from llmtray.core.trust import require_trusted

BILLING_SOURCES = ("openai", "anthropic", "openrouter")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DEFAULT_PORT = 8787
RUNAWAY_ACTIONS = ("notify", "block")
EMAIL_SECURITY = ("starttls", "ssl", "none")
DIGEST_CHOICES = ("daily", "weekly", "off")


@dataclass(frozen=True)
class EmailConfig:
    """`[email]` (DESIGN §14). The SMTP password is a secret: keyring or env, never here."""

    host: str | None = None
    port: int | None = None  # None: the usual port of `security` (587, 465, 25)
    security: str = "starttls"
    username: str | None = None
    sender: str | None = None  # the `from` key (a Python keyword)
    to: tuple[str, ...] = ()
    alerts: bool = False
    digest: str = "off"
    digest_at: str = "08:00"

    @property
    def configured(self) -> bool:
        return bool(self.host and self.sender and self.to)

    @property
    def smtp_port(self) -> int:
        return self.port or {"starttls": 587, "ssl": 465, "none": 25}[self.security]


@dataclass(frozen=True)
class Config:
    port: int = DEFAULT_PORT
    timezone: str | None = None  # None = the system's zone
    week_start: int = 0  # Monday
    spike_factor: Decimal = Decimal(4)
    spike_floor_usd: Decimal = Decimal(1)
    runaway_floor_usd: Decimal = Decimal(1)  # a runaway costing less is a warning, not critical
    runaway_action: str = "notify"  # or "block": a runaway feature is blocked for an hour at once
    quiet_hours: tuple[time, time] | None = None  # local (start, end); over midnight when end < start
    upstreams: dict[str, str] = field(default_factory=dict)
    email: EmailConfig = field(default_factory=EmailConfig)
    billing_interval_s: int = 3600  # [billing] interval: how often the app and `serve` pull the bill
    billing_urls: dict[str, str] = field(default_factory=dict)  # [billing.<source>] base_url (tests: a stub)
    agents: AgentsConfig = field(default_factory=AgentsConfig)  # [agents]: coding agents' logs (DESIGN §11)
    database_url: str | None = None  # [database] url: a team's PostgreSQL (DESIGN §16); None: the local file
    machine: str | None = None  # [database] machine: this machine's name on team events (default: host name)

    @property
    def tz(self) -> ZoneInfo | None:
        return ZoneInfo(self.timezone) if self.timezone else None


_SCHEMA: dict[str, set[str]] = {
    "ingest": {"port"},
    "display": {"timezone", "week_start"},
    "alerts": {"spike_factor", "spike_floor_usd", "runaway_floor_usd", "runaway_action", "quiet_hours"},
    "proxy": {"upstreams"},
    "email": {"host", "port", "security", "username", "from", "to", "alerts", "digest", "digest_at"},
    "billing": {"interval", *BILLING_SOURCES},
    "agents": set(),  # checked by llmtray.agents.settings
    "database": {"url", "machine"},
}
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def load(path: Path) -> Config:
    """Read config.toml; a missing file gives the defaults."""
    if not path.exists():
        return Config()
    require_trusted(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse(data, str(path))


def save(path: Path, updates: dict[str, dict[str, Any]]) -> Config:
    """Apply `updates` ({section: {key: value or None to remove}}) to config.toml, keeping the
    user's comments and layout (tomlkit), after validating the result; returns the new Config."""
    import tomlkit

    text = path.read_text(encoding="utf-8") if path.exists() else ""
    try:
        doc = tomlkit.parse(text)
    except Exception as exc:  # tomlkit raises its own ParseError subclasses
        raise ConfigError(f"{path}: {exc}") from None
    for section, values in updates.items():
        table = doc.get(section)
        if table is None:
            table = tomlkit.table()
            doc[section] = table
        for key, value in values.items():
            if value is None:
                table.pop(key, None)
            else:
                table[key] = toml_number(value) if isinstance(value, Decimal) else value
        if not table:
            doc.pop(section)
    new_text = tomlkit.dumps(doc)
    config = parse(tomllib.loads(new_text), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".toml.tmp")
    tmp.unlink(missing_ok=True)  # a leftover may have a looser mode; ours is created 0600
    with os.fdopen(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600), "w", encoding="utf-8") as f:
        f.write(new_text)
    tmp.replace(path)  # atomic: a crash never leaves half a config
    return config


def toml_number(value: Decimal) -> int | float | str:
    """A Decimal as TOML writes numbers (`spike_floor_usd = 1`, `2.5`), so the file reads like
    one a person wrote; a string only where a float would not give back the same amount."""
    if value == value.to_integral_value():
        return int(value)
    as_float = float(value)
    return as_float if Decimal(repr(as_float)) == value else str(value)


def parse(data: dict[str, Any], where: str = "config.toml") -> Config:
    for section, value in data.items():
        if section not in _SCHEMA:
            raise ConfigError(f"{where}: unknown section [{section}] (known: {', '.join(sorted(_SCHEMA))})")
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: [{section}] must be a table")
        for key in value:
            if key not in _SCHEMA[section] and section != "agents":
                raise ConfigError(
                    f"{where}: unknown key {section}.{key} (known: {', '.join(sorted(_SCHEMA[section]))})"
                )
    kwargs: dict[str, Any] = {}
    ingest, display = data.get("ingest", {}), data.get("display", {})
    alerts, proxy = data.get("alerts", {}), data.get("proxy", {})
    if "port" in ingest:
        kwargs["port"] = _port(ingest["port"], "ingest.port", where)
    if "timezone" in display:
        tz = display["timezone"]
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ConfigError(f"{where}: display.timezone {tz!r} is not an IANA zone such as 'Europe/Berlin'") from None
        kwargs["timezone"] = tz
    if "week_start" in display:
        ws = display["week_start"]
        if not isinstance(ws, str) or ws.lower() not in WEEKDAYS:
            raise ConfigError(f"{where}: display.week_start must be a weekday name such as 'monday', got {ws!r}")
        kwargs["week_start"] = WEEKDAYS.index(ws.lower())
    for key in ("spike_factor", "spike_floor_usd", "runaway_floor_usd"):
        if key in alerts:
            v = alerts[key]
            if isinstance(v, bool) or not isinstance(v, (int, float, str)):
                raise ConfigError(f"{where}: alerts.{key} must be a number, got {v!r}")
            try:
                d = Decimal(str(v))
            except ArithmeticError:
                raise ConfigError(f"{where}: alerts.{key} must be a number, got {v!r}") from None
            if not d.is_finite() or d <= 0:
                raise ConfigError(f"{where}: alerts.{key} must be > 0, got {v!r}")
            kwargs[key] = d
    if "runaway_action" in alerts:
        action = alerts["runaway_action"]
        if action not in RUNAWAY_ACTIONS:
            raise ConfigError(f"{where}: alerts.runaway_action must be one of {', '.join(RUNAWAY_ACTIONS)}, "
                              f"got {action!r}")
        kwargs["runaway_action"] = action
    if "quiet_hours" in alerts:
        kwargs["quiet_hours"] = _quiet_hours(alerts["quiet_hours"], where)
    if "upstreams" in proxy:
        ups = proxy["upstreams"]
        if not isinstance(ups, dict):
            raise ConfigError(f"{where}: proxy.upstreams must be a table of name = \"https://…\"")
        for name, url in ups.items():
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ConfigError(f"{where}: proxy.upstreams.{name} must be an http(s) URL, got {url!r}")
        kwargs["upstreams"] = {k.lower(): v.rstrip("/") for k, v in ups.items()}
    if "email" in data:
        kwargs["email"] = _parse_email(data["email"], where)
    kwargs.update(_billing(data.get("billing", {}), where))
    if "agents" in data:
        kwargs["agents"] = parse_agents(data["agents"], where)
    kwargs.update(_database(data.get("database", {}), where))
    return Config(**kwargs)


def _database(database: dict[str, Any], where: str) -> dict[str, Any]:
    """`[database] url` (checked now, so a typo is named by key before anything connects) and
    `machine`."""
    from llmtray.core import dburl

    out: dict[str, Any] = {}
    if "url" in database:
        url = database["url"]
        if not isinstance(url, str) or not url.strip():
            raise ConfigError(f"{where}: database.url must be a URL such as \"postgresql://me@db.example.com/llmtray\"")
        if dburl.has_password(url):
            raise ConfigError(f"{where}: database.url must not hold the password (config.toml is plain text); "
                              "put it in the keyring as `database_password`, or in PGPASSWORD")
        dburl.parse(url, f"{where}: database.url")
        out["database_url"] = url.strip()
    if "machine" in database:
        machine = database["machine"]
        if not isinstance(machine, str) or not machine.strip() or len(machine) > 200:
            raise ConfigError(f"{where}: database.machine must be a short non-empty name, got {machine!r}")
        out["machine"] = machine.strip()
    return out


def _port(value: Any, key: str, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise ConfigError(f"{where}: {key} must be an integer 1–65535, got {value!r}")
    return value


def _address(value: Any, key: str, where: str) -> str:
    """A bare mail address: one @, no spaces or angle brackets (they belong to display names)."""
    if not isinstance(value, str) or not re.fullmatch(r"[^@\s<>,]+@[^@\s<>,]+\.[^@\s<>,]+", value.strip()):
        raise ConfigError(f"{where}: {key} must be a mail address such as 'me@example.com', got {value!r}")
    return value.strip()


def _parse_email(email: dict[str, Any], where: str) -> EmailConfig:
    kwargs: dict[str, Any] = {}
    for key in ("host", "username"):
        if key in email:
            if not isinstance(email[key], str) or not email[key].strip() or any(c.isspace() for c in email[key].strip()):
                raise ConfigError(f"{where}: email.{key} must be a non-empty name without spaces, got {email[key]!r}")
            kwargs[key] = email[key].strip()
    if "port" in email:
        kwargs["port"] = _port(email["port"], "email.port", where)
    if "security" in email:
        if email["security"] not in EMAIL_SECURITY:
            raise ConfigError(f"{where}: email.security must be one of {', '.join(EMAIL_SECURITY)}, "
                              f"got {email['security']!r}")
        kwargs["security"] = email["security"]
    if "from" in email:
        kwargs["sender"] = _address(email["from"], "email.from", where)
    if "to" in email:
        to = email["to"]
        if isinstance(to, str):
            to = [to]
        if not isinstance(to, list) or not to:
            raise ConfigError(f"{where}: email.to must be a list of mail addresses, got {email['to']!r}")
        kwargs["to"] = tuple(_address(a, f"email.to[{i}]", where) for i, a in enumerate(to))
    if "alerts" in email:
        if not isinstance(email["alerts"], bool):
            raise ConfigError(f"{where}: email.alerts must be true or false, got {email['alerts']!r}")
        kwargs["alerts"] = email["alerts"]
    if "digest" in email:
        if email["digest"] not in DIGEST_CHOICES:
            raise ConfigError(f"{where}: email.digest must be one of {', '.join(DIGEST_CHOICES)}, "
                              f"got {email['digest']!r}")
        kwargs["digest"] = email["digest"]
    if "digest_at" in email:
        at = email["digest_at"]
        if not isinstance(at, str) or not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", at):
            raise ConfigError(f"{where}: email.digest_at must be a local time HH:MM such as \"08:00\", got {at!r}")
        kwargs["digest_at"] = at
    return EmailConfig(**kwargs)


def _quiet_hours(value: Any, where: str) -> tuple[time, time]:
    """`"22:00-07:00"`: notifications and webhooks held every day in that local window."""
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", value) if isinstance(value, str) else None
    try:
        start, end = (time(int(m[1]), int(m[2])), time(int(m[3]), int(m[4]))) if m else (None, None)
    except ValueError:
        start = end = None
    if start is None or end is None or start == end:
        raise ConfigError(f"{where}: alerts.quiet_hours must be \"HH:MM-HH:MM\" (two different local times, "
                          f"e.g. \"22:00-07:00\"), got {value!r}")
    return start, end


def _billing(billing: dict[str, Any], where: str) -> dict[str, Any]:
    """`[billing] interval = "1h"` (at least 1m: Anthropic allows a call a minute) and
    `[billing.<source>] base_url`."""
    out: dict[str, Any] = {}
    if "interval" in billing:
        text = billing["interval"]
        n, unit = (str(text).strip()[:-1], str(text).strip()[-1:]) if isinstance(text, str) else ("", "")
        if not n.isdigit() or unit not in _DURATION_UNITS or int(n) * _DURATION_UNITS[unit] < 60:
            raise ConfigError(f"{where}: billing.interval must be a duration of at least 1m such as '1h' or "
                              f"'30m', got {text!r}")
        out["billing_interval_s"] = int(n) * _DURATION_UNITS[unit]
    urls = {}
    for source in BILLING_SOURCES:
        table = billing.get(source)
        if table is None:
            continue
        if not isinstance(table, dict) or set(table) - {"base_url"}:
            raise ConfigError(f"{where}: [billing.{source}] takes only base_url")
        url = table.get("base_url")
        if url is not None:
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ConfigError(f"{where}: billing.{source}.base_url must be an http(s) URL, got {url!r}")
            urls[source] = url.rstrip("/")
    if urls:
        out["billing_urls"] = urls
    return out

"""config.toml: settings a user can read and edit by hand; every mistake is named by key.

Secrets never live here (they go to the keyring). Unknown keys are errors rather than silently
ignored, because a misspelt `spike_factor` that does nothing is worse than a clear message.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from llmtray.agents.settings import AgentsConfig, parse_agents
from llmtray.core.errors import ConfigError

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DEFAULT_PORT = 8787


@dataclass(frozen=True)
class Config:
    port: int = DEFAULT_PORT
    timezone: str | None = None  # None = the system's zone
    week_start: int = 0  # Monday
    spike_factor: Decimal = Decimal(4)
    spike_floor_usd: Decimal = Decimal(1)
    upstreams: dict[str, str] = field(default_factory=dict)
    agents: AgentsConfig = field(default_factory=AgentsConfig)  # [agents]: coding agents' logs (DESIGN §11)

    @property
    def tz(self) -> ZoneInfo | None:
        return ZoneInfo(self.timezone) if self.timezone else None


_SCHEMA: dict[str, set[str]] = {
    "ingest": {"port"},
    "display": {"timezone", "week_start"},
    "alerts": {"spike_factor", "spike_floor_usd"},
    "proxy": {"upstreams"},
    "agents": set(),  # checked by llmtray.agents.settings
}


def load(path: Path) -> Config:
    """Read config.toml; a missing file gives the defaults."""
    if not path.exists():
        return Config()
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
                table[key] = str(value) if isinstance(value, Decimal) else value
        if not table:
            doc.pop(section)
    new_text = tomlkit.dumps(doc)
    config = parse(tomllib.loads(new_text), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(new_text, encoding="utf-8")
    tmp.replace(path)  # atomic: a crash never leaves half a config
    return config


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
        port = ingest["port"]
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            raise ConfigError(f"{where}: ingest.port must be an integer 1–65535, got {port!r}")
        kwargs["port"] = port
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
    for key in ("spike_factor", "spike_floor_usd"):
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
    if "upstreams" in proxy:
        ups = proxy["upstreams"]
        if not isinstance(ups, dict):
            raise ConfigError(f"{where}: proxy.upstreams must be a table of name = \"https://…\"")
        for name, url in ups.items():
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ConfigError(f"{where}: proxy.upstreams.{name} must be an http(s) URL, got {url!r}")
        kwargs["upstreams"] = {k.lower(): v.rstrip("/") for k, v in ups.items()}
    if "agents" in data:
        kwargs["agents"] = parse_agents(data["agents"], where)
    return Config(**kwargs)

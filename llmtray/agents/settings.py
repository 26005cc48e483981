"""`[agents]` in config.toml: reading coding agents' logs on or off, per agent, and how each bills.

Kept apart from `llmtray.config` (which only hands the section over) so the agents' options live
with the agents. Imports nothing heavy: `llmtray.config` loads it on every start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmtray.core.errors import ConfigError

# The `source` of each agent's events, in the order they are shown (DESIGN §11).
SOURCES = ("claude-code", "codex", "gemini-cli", "opencode")
LABELS = {"claude-code": "Claude Code", "codex": "Codex", "gemini-cli": "Gemini CLI", "opencode": "opencode"}
BILLING = ("api", "subscription")
_AGENT_KEYS = {"enabled", "billing"}


@dataclass(frozen=True)
class AgentSettings:
    """One agent: read its logs at all, and whether its calls are billed per token (`api`) or
    covered by a flat plan (`subscription`: shown as API-equivalent value, never as spend)."""

    enabled: bool = True
    billing: str = "api"

    @property
    def subscription(self) -> bool:
        return self.billing == "subscription"


@dataclass(frozen=True)
class AgentsConfig:
    enabled: bool = True
    agents: dict[str, AgentSettings] = field(default_factory=dict)

    def of(self, source: str) -> AgentSettings:
        return self.agents.get(source, AgentSettings())

    def active(self, source: str) -> bool:
        return self.enabled and self.of(source).enabled


def parse_agents(section: Any, where: str) -> AgentsConfig:
    """The `[agents]` table; every mistake named by its key."""
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: [agents] must be a table")
    enabled = section.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}: agents.enabled must be true or false, got {enabled!r}")
    agents: dict[str, AgentSettings] = {}
    for key, value in section.items():
        if key == "enabled":
            continue
        if key not in SOURCES:
            raise ConfigError(f"{where}: unknown key agents.{key} (known: enabled, {', '.join(SOURCES)})")
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: [agents.{key}] must be a table")
        for sub in value:
            if sub not in _AGENT_KEYS:
                raise ConfigError(f"{where}: unknown key agents.{key}.{sub} (known: {', '.join(sorted(_AGENT_KEYS))})")
        on = value.get("enabled", True)
        if not isinstance(on, bool):
            raise ConfigError(f"{where}: agents.{key}.enabled must be true or false, got {on!r}")
        billing = value.get("billing", "api")
        if billing not in BILLING:
            raise ConfigError(f"{where}: agents.{key}.billing must be \"api\" or \"subscription\", got {billing!r}")
        agents[key] = AgentSettings(on, billing)
    return AgentsConfig(enabled, agents)

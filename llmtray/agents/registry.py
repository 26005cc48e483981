"""Every agent llmtray reads, in the order they are shown (DESIGN §11)."""

from __future__ import annotations

from llmtray.agents.base import Agent
from llmtray.agents.claude import ClaudeCode
from llmtray.agents.codex import Codex
from llmtray.agents.gemini import GeminiCli
from llmtray.agents.opencode import OpenCode

AGENTS: tuple[Agent, ...] = (ClaudeCode(), Codex(), GeminiCli(), OpenCode())

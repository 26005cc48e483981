"""The exact settings that point a tool's OpenTelemetry exporter at llmtray (`llmtray otel-env`,
the tray's "Copy OpenTelemetry settings").

Why print them rather than document them: each tool spells them differently (Codex takes a TOML
block with full URLs, Gemini CLI its own variables, Claude Code and SDKs the standard `OTEL_*`
ones), the vendors' quickstarts default to gRPC on port 4317 which llmtray does not serve, and the
token must be filled in. A wrong line fails silently in most exporters (OTEL.md §7).
"""

from __future__ import annotations

from urllib.parse import quote

TOOLS = ("generic", "claude-code", "codex", "gemini-cli")


def _headers_env(token: str | None) -> list[str]:
    if not token:
        return []
    # W3C-baggage encoding, as the spec asks: `%20` for the space (SDKs percent-decode it).
    return [f'export OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer{quote(" ")}{token}"']


def settings(tool: str, url: str, token: str | None) -> str:
    """The lines for `tool` (one of TOOLS) pointing at the llmtray at `url` with `token`."""
    if tool == "claude-code":
        return "\n".join([
            "# Claude Code → llmtray: in your shell profile, or as \"env\" in ~/.claude/settings.json.",
            "# Per-request usage comes from the logs exporter (api_request events); metrics are not needed.",
            "export CLAUDE_CODE_ENABLE_TELEMETRY=1",
            "export OTEL_LOGS_EXPORTER=otlp",
            "export OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
            f"export OTEL_EXPORTER_OTLP_ENDPOINT={url}",
            *_headers_env(token),
        ])
    if tool == "codex":
        headers = f', headers = {{ "Authorization" = "Bearer {token}" }}' if token else ""
        return "\n".join([
            "# Codex → llmtray: add to ~/.codex/config.toml (the user-level file; a project's .codex/ is ignored",
            "# for [otel]). Token counts come only from the logs exporter; the URL is used as it is.",
            "[otel]",
            "log_user_prompt = false",
            f'exporter = {{ otlp-http = {{ endpoint = "{url}/v1/logs", protocol = "binary"{headers} }} }}',
        ])
    if tool == "gemini-cli":
        return "\n".join([
            "# Gemini CLI → llmtray: in your shell profile (or telemetry.* in ~/.gemini/settings.json).",
            "# 'http' means OTLP/HTTP JSON here; the default, gRPC on port 4317, is not served by llmtray.",
            "export GEMINI_TELEMETRY_ENABLED=true",
            "export GEMINI_TELEMETRY_TARGET=local",
            "export GEMINI_TELEMETRY_OTLP_PROTOCOL=http",
            f"export GEMINI_TELEMETRY_OTLP_ENDPOINT={url}",
            "export GEMINI_TELEMETRY_LOG_PROMPTS=false",
            *_headers_env(token),
        ])
    if tool == "generic":
        return "\n".join([
            "# Any OpenTelemetry SDK or framework (OpenLLMetry, OpenInference, Pydantic AI/Logfire, the",
            "# Vercel AI SDK, opentelemetry-instrumentation-openai-v2, …) → llmtray:",
            f"export OTEL_EXPORTER_OTLP_ENDPOINT={url}",
            "export OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
            *_headers_env(token),
            "# Prompt and completion content is never stored by llmtray; leave content capture off at the source.",
        ])
    raise ValueError(f"unknown tool {tool!r}; one of {', '.join(TOOLS)}")

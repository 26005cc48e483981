"""From OTLP records to llmtray usage events: which records are calls, and what they cost.

One profile per emitter (OTEL.md §3, §5), chosen from `service.name`, the scope and the attribute
families present — never a sum over families, because the same usage is often written twice on
one span (AI SDK `ai.usage.*` + `gen_ai.usage.*`) and that is exactly how peers double-counted.

Only per-request records count: a Claude Code `api_request` log or `llm_request` span, a Codex
`response.completed` SSE log, a Gemini CLI `api_response` log, or a *leaf* LLM span of a framework
(agent, workflow, tool and framework spans, and any span with a usage-bearing descendant, carry
aggregates). Each event gets a deterministic id — `<provider>:<request id>` when the record knows
the provider's request id (the same id the proxy, hooks and agent logs give that call), else the
trace and span id, else a hash of what identifies the record — so an exporter's retry, a span and
log of the same call, or the same call from the agent-log tailer are stored once.

Content (prompts, completions, tool bodies) is never read, so it can't be stored.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from llmtray.otel.records import LOG, SPAN, Record, RecentIds

CLAUDE_CODE, CODEX, GEMINI_CLI = "claude-code", "codex", "gemini-cli"
MAX_TAG_VALUE = 200

# gen_ai.provider.name / gen_ai.system / llm.provider / ai.model.provider → llmtray provider ids.
_PROVIDERS = {
    "az.ai.openai": "azure", "azure.ai.openai": "azure", "azure.ai.inference": "azure", "azure_openai": "azure",
    "aws.bedrock": "aws", "bedrock": "aws", "amazon-bedrock": "aws",
    "gcp.gemini": "google", "gcp.vertex_ai": "google", "gcp.gen_ai": "google", "google": "google",
    "vertex_ai": "google", "vertexai": "google", "gemini": "google", "google.generative-ai": "google",
    "mistral_ai": "mistral", "mistralai": "mistral", "x_ai": "xai", "ibm.watsonx.ai": "ibm", "moonshot_ai": "moonshot",
}
# Values that name a framework, not who was paid: the provider then comes from the model id.
_FRAMEWORKS = {"langchain", "spring_ai", "pydantic_ai", "llamaindex", "crewai", "haystack", "dspy", "litellm",
               "semantic_kernel", "autogen", "strands", "agno", "openai_agents", "ai", "unknown", ""}
_MODEL_PREFIXES = (("claude", "anthropic"), ("gpt-", "openai"), ("o1", "openai"), ("o3", "openai"),
                   ("o4", "openai"), ("chatgpt", "openai"), ("text-embedding", "openai"), ("davinci", "openai"),
                   ("gemini", "google"), ("gemma", "google"), ("mistral", "mistral"), ("mixtral", "mistral"),
                   ("codestral", "mistral"), ("grok", "xai"), ("deepseek", "deepseek"), ("command", "cohere"))

# Operations that aggregate their children's usage (OTEL.md §6 rule 4): never counted.
_AGGREGATE_OPERATIONS = {"invoke_agent", "invoke_workflow", "create_agent", "execute_tool", "framework"}
_OPERATIONS = {"chat": "chat", "generate_content": "chat", "text_completion": "completion",
               "completion": "completion", "embeddings": "embeddings", "embedding": "embeddings",
               "responses": "responses"}
_AI_SDK_PARENTS = ("ai.generateText", "ai.streamText", "ai.generateObject", "ai.streamObject", "ai.embed",
                   "ai.embedMany")

# Token attribute families in precedence order (OTEL.md §6 rule 6): the first family with an input
# or output count is the only one read.
_FAMILIES: tuple[dict[str, tuple[str, ...]], ...] = (
    {  # GenAI semantic conventions, current names (OpenLLMetry ≥2025-10, openai-v2, Pydantic AI, OpenLIT …)
        "input": ("gen_ai.usage.input_tokens",),
        "output": ("gen_ai.usage.output_tokens",),
        "cache_read": ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens",
                       "gen_ai.usage.input_tokens.cached", "gen_ai.usage.cache_read_tokens",
                       "gen_ai.usage.details.cache_read_tokens"),
        "cache_write": ("gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_creation_input_tokens",
                        "gen_ai.usage.cache_write_tokens", "gen_ai.usage.details.cache_write_tokens"),
        "reasoning": ("gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.reasoning_tokens",
                      "gen_ai.usage.output_tokens.reasoning", "llm.usage.reasoning_tokens"),
    },
    {  # GenAI ≤1.26 names (OpenLLMetry 2024-04 → 2025-10, AI SDK v3–4)
        "input": ("gen_ai.usage.prompt_tokens",),
        "output": ("gen_ai.usage.completion_tokens",),
        "cache_read": ("gen_ai.usage.cache_read_input_tokens",),
        "cache_write": ("gen_ai.usage.cache_creation_input_tokens",),
        "reasoning": ("llm.usage.reasoning_tokens",),
    },
    {  # OpenInference / Phoenix
        "input": ("llm.token_count.prompt",),
        "output": ("llm.token_count.completion",),
        "cache_read": ("llm.token_count.prompt_details.cache_read",),
        "cache_write": ("llm.token_count.prompt_details.cache_write",),
        "reasoning": ("llm.token_count.completion_details.reasoning",),
    },
    {  # Vercel AI SDK
        "input": ("ai.usage.inputTokens", "ai.usage.promptTokens"),
        "output": ("ai.usage.outputTokens", "ai.usage.completionTokens"),
        "cache_read": ("ai.usage.cachedInputTokens",),
        "cache_write": (),
        "reasoning": ("ai.usage.reasoningTokens",),
    },
    {  # OpenLLMetry 2023-09 → 2024-04
        "input": ("llm.usage.prompt_tokens",),
        "output": ("llm.usage.completion_tokens",),
        "cache_read": (), "cache_write": (), "reasoning": (),
    },
)
_COST_ATTRS = ("gen_ai.usage.cost", "operation.cost", "llm.cost.total", "gen_ai.usage.cost_usd", "llm.usage.total_cost")
_MODEL_ATTRS = ("gen_ai.response.model", "gen_ai.request.model", "llm.model_name", "ai.response.model",
                "ai.model.id", "llm.response.model", "llm.request.model", "model")
_PROVIDER_ATTRS = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system", "ai.model.provider")
_RESPONSE_ID_ATTRS = ("gen_ai.response.id", "ai.response.id", "llm.response.id")
_SESSION_ATTRS = ("session.id", "gen_ai.conversation.id", "conversation.id", "langfuse.session.id")
_FEATURE_ATTRS = ("llmtray.feature", "gen_ai.agent.name", "traceloop.workflow.name", "ai.telemetry.functionId")
_USER_ATTRS = ("llmtray.user", "user.id", "enduser.id", "langfuse.user.id")
# Resource attributes every SDK sets: not the user's own, so not copied into tags.
_STANDARD_PREFIXES = ("service.", "telemetry.", "host.", "os.", "process.", "container.", "k8s.", "cloud.",
                      "deployment.", "device.", "faas.", "webengine.", "llmtray.")


class BadRecord(ValueError):
    """A record that is a call but can't become a valid event (the message names the attribute)."""


@dataclass(slots=True)
class Mapped:
    """A usage event (the JSON dict DESIGN §3 describes) and what its record was."""

    event: dict[str, Any]
    record: Record


def profile_of(record: Record) -> str | None:
    """The emitter profile of a record, or None when it reports no call (OTEL.md §3, §6 rule 1)."""
    service = str(record.resource.get("service.name", "")).lower()
    name = record.name
    if service == "claude-code" or record.scope.startswith("com.anthropic.claude_code"):
        if record.signal == LOG and name.endswith("api_request"):
            return "claude-code-log"
        if record.signal == SPAN and name.endswith("llm_request"):
            return "claude-code-span"
        return None
    if service in ("codex_cli_rs", "codex-cli", "codex") or name.startswith("codex."):
        if record.signal == LOG and name == "codex.sse_event" and record.attrs.get("event.kind") == "response.completed":
            return "codex-log"
        return None  # Codex spans repeat the log's usage (OTEL.md §3.2)
    if service == "gemini-cli" or name.startswith("gemini_cli."):
        if record.signal == LOG and name in ("gemini_cli.api_response", "api_response"):
            return "gemini-cli-log"
        return None  # the gen_ai twin event lacks cache and thoughts
    if record.signal != SPAN:
        return None
    attrs = record.attrs
    operation = str(attrs.get("gen_ai.operation.name", "")).lower()
    if operation in _AGGREGATE_OPERATIONS:
        return None
    kind = attrs.get("openinference.span.kind")
    if kind is not None and str(kind).upper() not in ("LLM", "EMBEDDING"):
        return None
    ai_operation = str(attrs.get("ai.operationId", ""))
    if ai_operation in _AI_SDK_PARENTS:
        return None
    if str(attrs.get("gen_ai.system", "")).lower() == "spring_ai" and operation == "framework":
        return None
    if _family(attrs) is None:
        return None
    return "genai"


def _family(attrs: Mapping[str, Any]) -> dict[str, tuple[str, ...]] | None:
    for family in _FAMILIES:
        if any(attrs.get(k) is not None for k in family["input"] + family["output"]):
            return family
    return None


# --- values -------------------------------------------------------------------------------------


def _count(attrs: Mapping[str, Any], names: Iterable[str], where: str) -> int | None:
    """The first present token count among `names`, read from any encoding (int, float, string)."""
    for name in names:
        value = attrs.get(name)
        if value is None or value == "":
            continue
        if isinstance(value, bool):
            raise BadRecord(f"{where}: {name} must be a token count, got {value!r}")
        if isinstance(value, str):
            text = value.strip()
            try:
                value = int(text) if text.lstrip("-").isdigit() else float(text)
            except ValueError:
                raise BadRecord(f"{where}: {name} must be a token count, got {text[:40]!r}") from None
        if isinstance(value, float):
            if not math.isfinite(value) or not value.is_integer():
                raise BadRecord(f"{where}: {name} must be a whole token count, got {value!r}")
            value = int(value)
        if not isinstance(value, int):
            raise BadRecord(f"{where}: {name} must be a token count, got {type(value).__name__}")
        if value < 0:
            raise BadRecord(f"{where}: {name} must be ≥ 0, got {value}")
        return value
    return None


def _money(attrs: Mapping[str, Any], names: Iterable[str], where: str) -> tuple[str, Decimal] | None:
    """A reported cost in USD, exact: strings parse as Decimal, floats by their shortest repr."""
    for name in names:
        value = attrs.get(name)
        if value is None or value == "":
            continue
        if isinstance(value, bool):
            raise BadRecord(f"{where}: {name} must be an amount in USD, got {value!r}")
        try:
            amount = Decimal(value.strip()) if isinstance(value, str) else Decimal(repr(value)) \
                if isinstance(value, float) else Decimal(value)
        except (InvalidOperation, TypeError):
            raise BadRecord(f"{where}: {name} must be an amount in USD, got {str(value)[:40]!r}") from None
        if not amount.is_finite() or amount < 0:
            raise BadRecord(f"{where}: {name} must be a finite amount ≥ 0, got {value!r}")
        return name, amount
    return None


def _text(attrs: Mapping[str, Any], names: Iterable[str]) -> str | None:
    for name in names:
        value = attrs.get(name)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return None


def _clip(value: str, limit: int = MAX_TAG_VALUE) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def provider_id(value: str | None, model: str | None) -> str:
    """llmtray's provider id for an emitter's provider attribute (OTEL.md §5 provider mapping)."""
    text = (value or "").strip().lower()
    if text in _PROVIDERS:
        return _PROVIDERS[text]
    head = text.split(".", 1)[0]  # AI SDK: openai.responses, anthropic.messages
    if text and text not in _FRAMEWORKS and head not in _FRAMEWORKS:
        mapped = _PROVIDERS.get(head, head)
        return mapped.replace("_", "-") if mapped else "unknown"
    lowered = (model or "").lower().rsplit("/", 1)[-1]
    for prefix, provider in _MODEL_PREFIXES:
        if lowered.startswith(prefix):
            return provider
    return "unknown"


def _ts(ns: int) -> str:
    """RFC 3339 from Unix nanoseconds (µs precision: what the store keeps)."""
    return datetime.fromtimestamp(ns // 1000 / 1e6, UTC).isoformat().replace("+00:00", "Z")


def _content_id(profile: str, *parts: object) -> str:
    key = "\x1f".join("" if p is None else str(p) for p in parts)
    return f"otel:{profile}:{hashlib.blake2b(key.encode(), digest_size=16).hexdigest()}"


def _attribution(record: Record, event: dict[str, Any]) -> None:
    """project from `service.name` (or `llmtray.project`), env, user, feature, session and the
    user's own resource attributes as tags."""
    resource, attrs = record.resource, record.attrs
    merged = {**resource, **attrs}
    project = _text(merged, ("llmtray.project", "service.name"))
    if project:
        event["project"] = _clip(project)
    env = _text(merged, ("llmtray.env", "deployment.environment.name", "deployment.environment"))
    if env:
        event["env"] = _clip(env)
    user = _text(merged, _USER_ATTRS)
    if user:
        event["user"] = _clip(user)
    feature = _text(merged, _FEATURE_ATTRS)
    if feature:
        event["feature"] = _clip(feature)
    tags: dict[str, str] = event.setdefault("tags", {})
    session = _text(merged, _SESSION_ATTRS)
    if session:
        tags["session"] = _clip(session)
    for key, value in resource.items():
        if len(tags) >= 30:
            break
        if key.startswith(_STANDARD_PREFIXES) or not isinstance(value, (str, int, float, bool)) or len(key) > 64:
            continue
        tags.setdefault(key, _clip(str(value)))
    version = _text(resource, ("service.version", "app.version"))
    if version and len(tags) < 31:
        tags["agent_version" if record.resource.get("service.name") in ("claude-code", "codex_cli_rs",
                                                                         "gemini-cli") else "service_version"] = _clip(version)


def _latency(record: Record, attrs: Mapping[str, Any], where: str) -> float | None:
    duration = _count(attrs, ("duration_ms",), where) if attrs.get("duration_ms") is not None else None
    if duration is not None:
        return float(duration)
    if record.signal == SPAN and record.end_ns > record.start_ns > 0:
        return (record.end_ns - record.start_ns) / 1e6
    return None


# --- profiles -----------------------------------------------------------------------------------


def _claude_code(record: Record, profile: str) -> dict[str, Any]:
    a, where = record.attrs, record.where
    inp = _count(a, ("input_tokens", "gen_ai.usage.input_tokens"), where) or 0
    cache_read = _count(a, ("cache_read_tokens",), where) or 0
    cache_write = _count(a, ("cache_creation_tokens",), where) or 0
    model = _text(a, ("model", "gen_ai.response.model", "gen_ai.request.model"))
    event: dict[str, Any] = {
        "provider": "anthropic", "model": model,
        # Claude Code reports Anthropic's convention: input excludes cache reads and writes.
        "input_tokens": inp + cache_read + cache_write, "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write, "output_tokens": _count(a, ("output_tokens",), where) or 0,
    }
    micros = _count(a, ("cost_usd_micros",), where)
    if micros is not None:
        event["cost_usd"] = str(Decimal(micros) / 1_000_000)
    else:
        cost = _money(a, ("cost_usd",), where)
        if cost is not None:
            event["cost_usd"] = str(cost[1])
    request_id = _text(a, ("request_id", "gen_ai.response.id"))
    if request_id:
        event["request_id"] = _clip(request_id)
        event["id"] = f"anthropic:{request_id}"
    elif profile == "claude-code-log" and a.get("prompt.id") is not None:
        event["id"] = _content_id(profile, record.resource.get("session.id", a.get("session.id")),
                                  a.get("prompt.id"), a.get("event.sequence"))
    timestamp = _text(a, ("event.timestamp",))
    event["ts"] = timestamp if timestamp and profile == "claude-code-log" else _ts(record.start_ns or record.end_ns)
    speed = _text(a, ("speed",))
    if speed:
        event.setdefault("tags", {})["speed"] = _clip(speed)
    agent = _text(a, ("agent.name",))
    if agent:
        event.setdefault("tags", {})["agent"] = _clip(agent)
    if a.get("parent_agent_id"):  # a subagent's call (spans only); its spend rolls up to the session
        event.setdefault("tags", {})["subagent"] = "true"
    return event


def _codex(record: Record) -> dict[str, Any]:
    a, where = record.attrs, record.where
    inp = _count(a, ("input_token_count",), where) or 0
    cache_read = _count(a, ("cached_token_count",), where) or 0
    cache_write = _count(a, ("cache_write_token_count",), where) or 0
    if cache_read + cache_write > inp:  # whether writes are inside input is unverified (OTEL.md §9)
        inp += cache_write
    model = _text(a, ("model", "slug"))
    provider = _text(a, ("provider_name", "provider")) or "openai"
    event: dict[str, Any] = {
        "provider": provider_id(provider, model), "model": model, "input_tokens": inp,
        "cache_read_tokens": cache_read, "cache_write_tokens": cache_write,
        "output_tokens": _count(a, ("output_token_count",), where) or 0,
        "reasoning_tokens": _count(a, ("reasoning_token_count",), where) or 0,
        "operation": "responses",
    }
    timestamp = _text(a, ("event.timestamp",))
    event["ts"] = timestamp or _ts(record.end_ns)
    conversation = _text({**record.resource, **a}, ("conversation.id",))
    event["id"] = _content_id("codex", conversation, event["ts"], model, inp, cache_read, event["output_tokens"])
    return event


def _gemini_cli(record: Record) -> dict[str, Any]:
    a, where = record.attrs, record.where
    thoughts = _count(a, ("thoughts_token_count",), where) or 0
    model = _text(a, ("model",))
    event: dict[str, Any] = {
        "provider": "google", "model": model,
        # promptTokenCount includes cached content; tool-use prompt tokens are billed as input.
        "input_tokens": (_count(a, ("input_token_count",), where) or 0) + (_count(a, ("tool_token_count",), where) or 0),
        "cache_read_tokens": _count(a, ("cached_content_token_count",), where) or 0,
        # Gemini's candidates count excludes thoughts; llmtray's output includes reasoning.
        "output_tokens": (_count(a, ("output_token_count",), where) or 0) + thoughts,
        "reasoning_tokens": thoughts,
    }
    timestamp = _text(a, ("event.timestamp",))
    event["ts"] = timestamp or _ts(record.end_ns)
    status = a.get("status_code")
    if status is not None and str(status) not in ("200", "0", ""):
        event["status"], event["error"] = "error", _clip(f"HTTP {status}")
    session = _text({**record.resource, **a}, ("session.id",))
    event["id"] = _content_id("gemini-cli", session, _text(a, ("prompt_id",)), event["ts"], model,
                              event["input_tokens"], event["output_tokens"])
    return event


def _genai(record: Record, family: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    a, where = record.attrs, record.where
    inp = _count(a, family["input"], where) or 0
    out = _count(a, family["output"], where) or 0
    cache_read = _count(a, family["cache_read"], where) or 0
    cache_write = _count(a, family["cache_write"], where) or 0
    reasoning = _count(a, family["reasoning"], where) or 0
    heuristics = []
    if cache_read + cache_write > inp:  # an emitter that wrote input exclusive of cache (OTEL.md §5)
        inp += cache_read + cache_write
        heuristics.append("input+cache")
    if reasoning > out:
        out += reasoning
        heuristics.append("output+reasoning")
    model = _text(a, _MODEL_ATTRS)
    event: dict[str, Any] = {
        "provider": provider_id(_text(a, _PROVIDER_ATTRS), model), "model": model,
        "input_tokens": inp, "output_tokens": out, "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write, "reasoning_tokens": reasoning,
        "ts": _ts(record.start_ns or record.end_ns),
    }
    operation = _OPERATIONS.get(str(a.get("gen_ai.operation.name", "")).lower())
    if operation is None and str(a.get("openinference.span.kind", "")).upper() == "EMBEDDING":
        operation = "embeddings"
    if operation:
        event["operation"] = operation
    cost = _money(a, _COST_ATTRS, where)
    if cost is not None:
        event["cost_usd"] = str(cost[1])
    response_id = _text(a, _RESPONSE_ID_ATTRS)
    if response_id:
        event["request_id"] = _clip(response_id)
        event["id"] = f"{event['provider']}:{response_id}"[:128]
    elif record.trace_id and record.span_id:
        event["id"] = f"otel:{record.trace_id}:{record.span_id}"
    ttft_s = a.get("gen_ai.server.time_to_first_token")
    ttft_ms = a.get("ai.response.msToFirstChunk")
    if isinstance(ttft_ms, (int, float)) and not isinstance(ttft_ms, bool) and ttft_ms >= 0:
        event["ttft_ms"] = float(ttft_ms)
    elif isinstance(ttft_s, (int, float)) and not isinstance(ttft_s, bool) and ttft_s >= 0:
        event["ttft_ms"] = float(ttft_s) * 1000
    if record.status_code == 2:
        event["status"], event["error"] = "error", _clip(record.status_message or "the span's status is ERROR", 500)
    tier = _text(a, ("openai.response.service_tier", "gen_ai.openai.response.service_tier"))
    if tier in ("default", "batch", "flex", "priority"):
        event["service_tier"] = tier
    if heuristics:
        event.setdefault("tags", {})["otel_profile"] = "genai+" + "+".join(heuristics)
    return event


def map_record(record: Record, profile: str) -> dict[str, Any]:
    """The usage event of one call record; `BadRecord` when it can't be one."""
    if profile.startswith("claude-code"):
        event = _claude_code(record, profile)
    elif profile == "codex-log":
        event = _codex(record)
    elif profile == "gemini-cli-log":
        event = _gemini_cli(record)
    else:
        family = _family(record.attrs)
        assert family is not None
        event = _genai(record, family)
    if not event.get("model"):
        raise BadRecord(f"{record.where}: no model attribute (looked for {', '.join(_MODEL_ATTRS[:3])}, …)")
    latency = _latency(record, record.attrs, record.where)
    if latency is not None:
        event["latency_ms"] = latency
    if "id" not in event:
        event["id"] = _content_id(profile, sorted(record.resource.items()), record.scope, record.end_ns, record.name,
                                  sorted((k, str(v)) for k, v in record.attrs.items()))
    _attribution(record, event)
    tags = event["tags"]
    tags.setdefault("otel_profile", profile)
    if not tags:
        del event["tags"]
    event["model"] = _clip(event["model"])
    return event


def calls(records: list[Record], ancestors: set[str] | RecentIds | None = None) -> tuple[list[Mapped], list[str]]:
    """The usage events in a batch of records and a message per record that was a call but
    couldn't be read.

    Leaf rule: a span that is an ancestor of a call span is skipped — it aggregates (or wraps) a
    call counted on its own. `ancestors` carries the span ids known to be such ancestors from
    earlier batches (a parent span ends, and is exported, after its children) and is updated."""
    ancestors = set() if ancestors is None else ancestors
    profiled = [(r, p) for r in records if (p := profile_of(r)) is not None]
    parent_of = {r.span_id: r.parent_span_id for r in records if r.signal == SPAN and r.span_id}
    for record, _ in profiled:
        if record.signal == SPAN:
            _mark_ancestors(record.parent_span_id, parent_of, ancestors)
    out: list[Mapped] = []
    problems: list[str] = []
    for record, profile in profiled:
        if record.signal == SPAN and record.span_id in ancestors:
            _mark_ancestors(record.parent_span_id, parent_of, ancestors)
            continue
        try:
            out.append(Mapped(map_record(record, profile), record))
        except BadRecord as exc:
            problems.append(str(exc))
    return out, problems


def _mark_ancestors(parent: str, parent_of: dict[str, str], found: set[str] | RecentIds) -> None:
    steps = 0
    while parent and steps < 1000:
        found.add(parent)
        parent = parent_of.get(parent, "")
        steps += 1

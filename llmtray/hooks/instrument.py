"""`instrument(client)`: record every OpenAI / Anthropic SDK call of one client object.

Both SDKs (Stainless-generated) give each resource a `_post` attribute bound to the client, and
every creating call — `create`, and the helpers `stream()` and `parse()` built on it — goes
through it with the request path. Replacing that attribute on the client's own resource objects
(`chat.completions`, `responses`, `embeddings`, `completions`, `messages`, `beta.messages`)
instruments this client only, catches the helpers too, and leaves retrieve/list/count-tokens
calls alone (they use other paths). `copy()` / `with_options()` return instrumented copies.
Nothing is imported from the SDKs: the client's class names tell which one it is.

The wrapper's promise: the user's call behaves exactly as before. Our bookkeeping is guarded and
never raises; the provider's exceptions are recorded and re-raised unchanged; the only exception
of our own is `BudgetExceeded`, and only with `enforce=True`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from llmtray.core.events import BLOCKED_TAG
from llmtray.hooks import enforce, streams
from llmtray.hooks.apis import ANTHROPIC_RESOURCES, COMPATIBLE_HOSTS, OPENAI_RESOURCES
from llmtray.hooks.calls import USAGE_TAG, Api, Call, HookConfig
from llmtray.hooks.context import current, make

log = logging.getLogger("llmtray.hooks")

MARK = "_llmtray_config"


def instrument(client: Any, *, feature: str | None = None, user: str | None = None, project: str | None = None,
               env: str | None = None, tags: Mapping[str, Any] | None = None, enforce: bool = False,
               provider: str | None = None) -> Any:
    """Record every Chat Completions, Responses, Embeddings, Completions and Messages call made
    with `client` (`openai.OpenAI`/`AsyncOpenAI`, Azure clients, `anthropic.Anthropic`/
    `AsyncAnthropic`); returns the same object. The keyword values are this client's default
    attribution (`lt.tags(...)` at the call site wins over them). `provider` overrides what is
    inferred from the client (class, then base URL host). Calling it again updates the settings.
    """
    try:
        family = _family(client)
        if family is None:
            log.warning("llmtray: %s is not an OpenAI or Anthropic SDK client; nothing instrumented "
                        "(use lt.record() or lt.httpx_hooks())", type(client).__name__)
            return client
        defaults = make(feature, user, project, env, tags)
        config = _existing_config(client, family)
        if config is None:
            config = HookConfig(provider or _provider(client, family), defaults, enforce)
        else:
            config.provider = provider or config.provider
            config.defaults = defaults
            config.enforce = enforce
        _patch(client, family, config)
    except Exception:
        log.warning("llmtray: could not instrument %s; its calls are not recorded", type(client).__name__,
                    exc_info=True)
    return client


def _family(client: Any) -> str | None:
    for cls in type(client).__mro__:
        root = cls.__module__.split(".", 1)[0]
        if root in ("openai", "anthropic") and cls.__name__ not in ("object",):
            return root
    return None


def _resources(family: str) -> dict[str, dict[str, Api]]:
    return OPENAI_RESOURCES if family == "openai" else ANTHROPIC_RESOURCES


def _resolve(client: Any, dotted: str) -> Any:
    obj = client
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _existing_config(client: Any, family: str) -> HookConfig | None:
    for dotted in _resources(family):
        resource = _resolve(client, dotted)
        config = getattr(getattr(resource, "_post", None), MARK, None)
        if isinstance(config, HookConfig):
            return config
    return None


def _provider(client: Any, family: str) -> str:
    names = " ".join(cls.__name__ for cls in type(client).__mro__)
    if "Azure" in names:
        return "azure"
    if "Bedrock" in names:
        return "aws"
    if "Vertex" in names:
        return "google"
    try:
        host = urlsplit(str(client.base_url)).hostname or ""
    except Exception:
        host = ""
    for suffix, name in COMPATIBLE_HOSTS.items():
        if host == suffix or host.endswith("." + suffix):
            return name
    return family


def _patch(client: Any, family: str, config: HookConfig) -> None:
    for dotted, routes in _resources(family).items():
        resource = _resolve(client, dotted)
        post = getattr(resource, "_post", None)
        if post is None or getattr(post, MARK, None) is not None:
            continue  # not in this SDK version, or already instrumented (same config object)
        resource._post = (_async_wrapper if inspect.iscoroutinefunction(post) else _sync_wrapper)(post, routes, config)
    for name in ("copy", "with_options"):
        method = getattr(client, name, None)
        if callable(method) and getattr(method, MARK, None) is None:
            setattr(client, name, _copying(method, config))


def _copying(method: Callable[..., Any], config: HookConfig) -> Callable[..., Any]:
    def copy(*args: Any, **kwargs: Any) -> Any:
        new = method(*args, **kwargs)
        try:
            family = _family(new)
            if family is not None:
                _patch(new, family, config)
        except Exception:
            log.warning("llmtray: could not instrument a client copy", exc_info=True)
        return new

    setattr(copy, MARK, config)
    return copy


# --- the wrappers: keep these short, they run on every call ---------------------------------


def _begin(api: Api, config: HookConfig, kwargs: dict[str, Any]) -> Call | None:
    try:
        body = kwargs.get("body")
        model = body.get("model") if type(body) is dict or isinstance(body, Mapping) else None
        return Call(api, config, current(), model, bool(kwargs.get("stream")))
    except Exception:
        log.debug("llmtray hooks: could not start recording a call", exc_info=True)
        return None


def _enforcement(call: Call) -> tuple[enforce.Enforcer, tuple[str, str, Any]] | None:
    try:
        model = call.requested_model if isinstance(call.requested_model, str) else ""
        return enforce.get(), (call.config.provider, model, call.config.defaults.merged(call.context))
    except Exception:
        log.debug("llmtray hooks: enforcement check skipped", exc_info=True)
        return None


def _check(call: Call) -> None:
    """Raise `BudgetExceeded` when an enforced budget forbids the call; nothing else escapes."""
    found = _enforcement(call)
    if found is not None:
        try:
            found[0].check(*found[1])
        except enforce.Blocked as exc:
            _refused(call, exc)
            raise
        except enforce.BudgetExceeded:
            raise
        except Exception:
            log.debug("llmtray hooks: enforcement check failed", exc_info=True)


async def _acheck(call: Call) -> None:
    found = _enforcement(call)
    if found is not None:
        try:
            await found[0].check_async(*found[1])
        except enforce.Blocked as exc:
            _refused(call, exc)
            raise
        except enforce.BudgetExceeded:
            raise
        except Exception:
            log.debug("llmtray hooks: enforcement check failed", exc_info=True)


def _refused(call: Call, exc: enforce.Blocked) -> None:
    """Count a call a block refused: an error event tagged with the block's id (zero cost)."""
    call.note(BLOCKED_TAG, str(exc.block_id))
    call.finish(exc=exc)


def _record(call: Call, response: Any) -> None:
    """Take the usage of a parsed response, or watch a stream; queues the call."""
    try:
        if call.stream:
            streams.watch(response, call)
            return
        call.took_response(response)
    except Exception:
        log.debug("llmtray hooks: could not read a response", exc_info=True)
    call.finish()


_raw_types: dict[type, bool] = {}


def _is_raw(result: Any) -> bool:
    """Whether `result` is a `with_raw_response` / `with_streaming_response` wrapper. Decided once
    per class: `hasattr` on a pydantic response would take its slow missing-attribute path."""
    cls = type(result)
    raw = _raw_types.get(cls)
    if raw is None:
        raw = _raw_types[cls] = any(c.__name__ in ("BaseAPIResponse", "LegacyAPIResponse") for c in cls.__mro__)
    return raw


def _raw_unread(call: Call, result: Any) -> bool:
    """A raw wrapper whose body hasn't been read yet: reading it here would change the call, so
    it is recorded without usage. True when the call was recorded that way."""
    try:
        if call.stream or result.http_response.is_closed:
            return False
    except Exception:
        pass
    call.note(USAGE_TAG, "missing")
    call.finish()
    return True


def _end(call: Call, result: Any) -> Any:
    if not _is_raw(result):
        _record(call, result)
    elif not _raw_unread(call, result):
        try:
            response = result.parse()  # cached by the SDK: the user's own parse() gets the same object
        except Exception:  # the user's own parse() will raise it again
            call.finish()
            return result
        _record(call, response)
    return result


def _sync_wrapper(post: Callable[..., Any], routes: dict[str, Api], config: HookConfig) -> Callable[..., Any]:
    def _post(path: str, *args: Any, **kwargs: Any) -> Any:
        api = routes.get(path)
        if api is None:
            return post(path, *args, **kwargs)
        call = _begin(api, config, kwargs)
        if call is not None and config.enforce:
            _check(call)
        try:
            result = post(path, *args, **kwargs)
        except Exception as exc:
            if call is not None:
                call.finish(exc=exc)
            raise
        return result if call is None else _end(call, result)

    setattr(_post, MARK, config)
    return _post


async def _aend(call: Call, result: Any) -> Any:
    if not _is_raw(result):
        _record(call, result)
    elif not _raw_unread(call, result):
        try:
            response = result.parse()
            if inspect.isawaitable(response):  # AsyncAPIResponse.parse is a coroutine
                response = await response
        except Exception:
            call.finish()
            return result
        _record(call, response)
    return result


def _async_wrapper(post: Callable[..., Any], routes: dict[str, Api], config: HookConfig) -> Callable[..., Any]:
    async def _post(path: str, *args: Any, **kwargs: Any) -> Any:
        api = routes.get(path)
        if api is None:
            return await post(path, *args, **kwargs)
        call = _begin(api, config, kwargs)
        if call is not None and config.enforce:
            await _acheck(call)
        try:
            result = await post(path, *args, **kwargs)
        except Exception as exc:
            if call is not None:
                call.finish(exc=exc)
            raise
        return result if call is None else await _aend(call, result)

    setattr(_post, MARK, config)
    return _post

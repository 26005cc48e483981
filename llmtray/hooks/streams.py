"""Watching an SDK stream without changing it: the user keeps the SDK's own `Stream` object.

Both SDKs iterate a stream through its `_iterator` (a generator; Anthropic's is created lazily);
we put a generator in front of it that times the first chunk, hands each chunk to the API's
observer and records the call when the stream ends, fails, is closed early, or is garbage
collected without being read (`weakref.finalize`). The stream's own type, attributes and helper
wrappers (`MessageStream`, `ChatCompletionStream`) keep working because nothing else is touched
except an instance-level `close` that records before delegating.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

from llmtray.hooks.calls import Call, track_open

log = logging.getLogger("llmtray.hooks")


def _chunk(call: Call, item: Any) -> None:
    if call.ttft_ms is None:
        call.ttft_ms = (time.perf_counter() - call.t0) * 1000.0
    observe = call.api.observe
    if observe is not None:
        try:
            observe(call, item)
        except Exception:  # an odd chunk must never break the user's loop
            log.debug("llmtray hooks: could not read a stream chunk", exc_info=True)


def _interrupted(call: Call, exc: BaseException) -> None:
    call.finish("interrupted", exc)


def _abandoned(call: Call) -> None:
    call.finish("abandoned")


def _watch(inner: Iterator[Any], call: Call) -> Iterator[Any]:
    try:
        for item in inner:
            _chunk(call, item)
            yield item
    except GeneratorExit:
        _abandoned(call)
        close = getattr(inner, "close", None)
        if close is not None:
            close()
        raise
    except Exception as exc:
        _interrupted(call, exc)
        raise
    call.finish()


async def _awatch(inner: AsyncIterator[Any], call: Call) -> AsyncIterator[Any]:
    try:
        async for item in inner:
            _chunk(call, item)
            yield item
    except GeneratorExit:
        _abandoned(call)
        aclose = getattr(inner, "aclose", None)
        if aclose is not None:
            await aclose()
        raise
    except Exception as exc:
        _interrupted(call, exc)
        raise
    call.finish()


def watch(stream: Any, call: Call) -> Any:
    """Attach `call` to an SDK `Stream`/`AsyncStream`; returns the same object."""
    try:
        inner = stream._iterator
    except AttributeError:
        log.warning("llmtray hooks: unknown stream type %s; its usage is not recorded", type(stream).__name__)
        call.note("llmtray.usage", "missing")
        call.finish()
        return stream
    ref = weakref.ref(stream)
    cls_close = type(stream).close
    if hasattr(inner, "__anext__"):
        stream._iterator = _awatch(inner, call)

        async def aclose_and_record() -> None:
            try:
                s = ref()
                if s is not None:
                    await cls_close(s)
            finally:
                _abandoned(call)  # a no-op when the stream had already ended

        stream.close = aclose_and_record
    else:
        stream._iterator = _watch(inner, call)

        def close_and_record() -> None:
            try:
                s = ref()
                if s is not None:
                    cls_close(s)
            finally:
                _abandoned(call)

        stream.close = close_and_record
    weakref.finalize(stream, _abandoned, call).atexit = False
    track_open(call)
    return stream

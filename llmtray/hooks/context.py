"""Who and what a call is for: attribution carried in a context variable, so it follows the code path.

`tags(...)` sets feature / user / project / env and free tags for every instrumented call made
inside it, as a `with` block or a decorator. Nested blocks merge: the inner value of a field wins,
tag dictionaries are combined (inner keys win). asyncio tasks copy the context when they are
created, so attribution flows into them on its own; a plain `threading.Thread` or a thread pool
starts from an empty context — wrap the target with `propagate(fn)` to carry it over.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

from llmtray.core.events import ATTRIBUTION_FIELDS

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Attribution:
    """Immutable attribution values; merging makes a new one, so a snapshot can sit in a queue."""

    feature: str | None = None
    user: str | None = None
    project: str | None = None
    env: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def merged(self, inner: Attribution) -> Attribution:
        """`inner` on top of `self`: its set fields win, tags are combined with its keys winning."""
        if inner is EMPTY:
            return self
        if self is EMPTY:
            return inner
        return Attribution(
            inner.feature if inner.feature is not None else self.feature,
            inner.user if inner.user is not None else self.user,
            inner.project if inner.project is not None else self.project,
            inner.env if inner.env is not None else self.env,
            {**self.tags, **inner.tags} if inner.tags else self.tags,
        )

    def as_fields(self) -> dict[str, Any]:
        """The event fields this attribution sets (unset ones left out)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in ATTRIBUTION_FIELDS if getattr(self, name) is not None}
        if self.tags:
            out["tags"] = dict(self.tags)
        return out


EMPTY = Attribution()
_CURRENT: ContextVar[Attribution] = ContextVar("llmtray_attribution", default=EMPTY)


def make(feature: str | None = None, user: str | None = None, project: str | None = None,
         env: str | None = None, tags: Mapping[str, Any] | None = None) -> Attribution:
    """An Attribution from user-given values; tag values are turned into strings."""
    clean_tags = {str(k): str(v) for k, v in tags.items()} if tags else {}
    if feature is None and user is None and project is None and env is None and not clean_tags:
        return EMPTY
    return Attribution(feature, user, project, env, clean_tags)


def current() -> Attribution:
    """The attribution in effect here (cheap: one context-variable read)."""
    return _CURRENT.get()


class tags:  # noqa: N801 — used like `contextlib.suppress`: a lowercase context manager
    """Attribute every instrumented call inside: `with lt.tags(feature="search", user="u42"):`.

    Also a decorator (`@lt.tags(feature="nightly")`, sync or async functions). Free tags go in
    `tags={...}` or as extra keyword arguments: `lt.tags(feature="x", customer="acme")`.
    One instance may be entered again while it is active (tokens are stacked); use separate
    instances, or the decorator form, from concurrently running threads.
    """

    def __init__(self, feature: str | None = None, user: str | None = None, project: str | None = None,
                 env: str | None = None, tags: Mapping[str, Any] | None = None, **more_tags: Any):
        self.attribution = make(feature, user, project, env, {**(tags or {}), **more_tags})
        self._tokens: list[Token[Attribution]] = []

    def __enter__(self) -> Attribution:
        value = _CURRENT.get().merged(self.attribution)
        self._tokens.append(_CURRENT.set(value))
        return value

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        _CURRENT.reset(self._tokens.pop())

    def __call__(self, fn: F) -> F:
        attribution = self.attribution
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                token = _CURRENT.set(_CURRENT.get().merged(attribution))
                try:
                    return await fn(*args, **kwargs)
                finally:
                    _CURRENT.reset(token)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = _CURRENT.set(_CURRENT.get().merged(attribution))
            try:
                return fn(*args, **kwargs)
            finally:
                _CURRENT.reset(token)

        return wrapper  # type: ignore[return-value]


def propagate(fn: F) -> F:
    """`fn` bound to the caller's current context, for plain threads and thread pools:

        threading.Thread(target=lt.propagate(work)).start()
        pool.submit(lt.propagate(work), item)

    The context is captured now; each call runs in its own copy of it, so the wrapper may be
    called from several threads at once (a `Context` itself can only be entered by one thread).
    """
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return captured.copy().run(fn, *args, **kwargs)

    return wrapper  # type: ignore[return-value]

"""`lt.tags(...)`: nesting, decorator form, threads (with `lt.propagate`) and asyncio tasks — checked
both on the context itself and on events stored by the real ingest service."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import llmtray.hooks as lt
from llmtray.hooks.context import EMPTY, Attribution, current
from tests.hooks.conftest import delivered
from tests.hooks.helpers import one


def test_nesting_inner_wins_and_tags_merge():
    assert current() is EMPTY
    with lt.tags(feature="outer", user="u1", tags={"team": "a", "tier": "free"}):
        with lt.tags(feature="inner", tags={"tier": "pro"}, region="eu") as inside:
            assert inside == Attribution("inner", "u1", None, None, {"team": "a", "tier": "pro", "region": "eu"})
            assert current() == inside
        assert current() == Attribution("outer", "u1", None, None, {"team": "a", "tier": "free"})
    assert current() is EMPTY


def test_tags_restored_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with lt.tags(feature="doomed"):
            1 / 0
    assert current() is EMPTY


def test_tag_values_become_strings():
    with lt.tags(tags={"attempt": 3}, beta=True) as inside:
        assert dict(inside.tags) == {"attempt": "3", "beta": "True"}


def test_decorator_sync_and_async():
    @lt.tags(feature="nightly", job="reindex")
    def job() -> Attribution:
        return current()

    @lt.tags(feature="handler")
    async def handler() -> Attribution:
        await asyncio.sleep(0)
        return current()

    with lt.tags(user="u7"):
        assert job() == Attribution("nightly", "u7", None, None, {"job": "reindex"})
        assert asyncio.run(handler()) == Attribution("handler", "u7", None, None, {})
    assert current() is EMPTY
    assert job.__name__ == "job"


def test_plain_threads_start_empty_and_propagate_carries_it_over():
    seen: dict[str, Attribution] = {}

    def work(name: str) -> None:
        seen[name] = current()

    with lt.tags(feature="batch", user="u9"):
        plain = threading.Thread(target=work, args=("plain",))
        carried = threading.Thread(target=lt.propagate(work), args=("carried",))
        plain.start()
        carried.start()
        plain.join()
        carried.join()
    assert seen["plain"] is EMPTY  # contextvars don't flow into threads by themselves
    assert seen["carried"] == Attribution("batch", "u9")


def test_propagate_can_run_in_many_pool_threads_at_once():
    barrier = threading.Barrier(4)

    def work(i: int) -> tuple[int, Attribution]:
        barrier.wait(10)  # all four inside the same captured context at the same time
        with lt.tags(tags={"item": str(i)}):
            return i, current()

    with lt.tags(feature="fanout"):
        task = lt.propagate(work)
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = dict(pool.map(task, range(4)))
    for i, attribution in results.items():
        assert attribution == Attribution("fanout", None, None, None, {"item": str(i)})


def test_asyncio_tasks_inherit_and_isolate():
    async def child(name: str) -> Attribution:
        with lt.tags(tags={"child": name}):
            await asyncio.sleep(0)
            return current()

    async def main() -> tuple[Attribution, Attribution, Attribution]:
        with lt.tags(feature="agent"):
            a, b = await asyncio.gather(asyncio.create_task(child("a")), asyncio.create_task(child("b")))
            in_thread = await asyncio.to_thread(current)  # to_thread copies the context too
        return a, b, in_thread

    a, b, in_thread = asyncio.run(main())
    assert a == Attribution("agent", None, None, None, {"child": "a"})
    assert b == Attribution("agent", None, None, None, {"child": "b"})
    assert in_thread == Attribution("agent")


def test_events_carry_the_attribution_of_their_thread_and_task(hook_env: Path, tray):
    def record(tag: str) -> None:
        lt.record(provider="mistral", model="mistral-small-latest", input_tokens=10, tags={"where": tag})

    async def in_tasks() -> None:
        with lt.tags(user="async-user"):
            await asyncio.gather(*(asyncio.create_task(asyncio.to_thread(record, f"task{i}")) for i in range(2)))

    with lt.tags(feature="worker", project="p1"):
        thread = threading.Thread(target=lt.propagate(record), args=("thread",))
        thread.start()
        thread.join()
        bare = threading.Thread(target=record, args=("bare",))
        bare.start()
        bare.join()
        asyncio.run(in_tasks())
    events = delivered(hook_env)
    assert len(events) == 4
    carried = one(events, tags={"where": "thread"})
    assert (carried["feature"], carried["project"]) == ("worker", "p1")
    assert "feature" not in one(events, tags={"where": "bare"})
    for i in range(2):
        event = one(events, tags={"where": f"task{i}"})
        assert (event["feature"], event["user"]) == ("worker", "async-user")

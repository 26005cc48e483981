"""Delivery: tray down, up, restarted; spool files crash-safe, bounded, handed over between processes;
exit flush; fork. Against the real ingest service and its SQLite file, in real processes."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import openai
import pytest

import llmtray.hooks as lt
from llmtray.hooks import endpoint, sender
from llmtray.hooks.sender import Sender
from tests.hooks.conftest import delivered, drained, plant, start_tray, stored
from tests.hooks.flaky_receiver import FlakyReceiver
from tests.hooks.helpers import CHAT, tokens

HELLO = [{"role": "user", "content": "Say hello"}]


def spool_lines(data: Path) -> list[str]:
    folder = data / "spool"
    if not folder.exists():
        return []
    return [line for f in sorted(folder.glob("hook-*.jsonl")) for line in f.read_text().splitlines()]


def dead_letters(data: Path) -> list[dict]:
    path = data / "spool" / "dead-letter.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def event(i: int, **extra) -> dict:
    return {"id": f"e{i:03}", "provider": "openai", "model": "gpt-4o-mini", "input_tokens": 100 + i, **extra}


def run_script(data: Path, code: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LLMTRAY_DATA_DIR": str(data), "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
           **env_vars}
    env.pop("LLMTRAY_URL", None)
    env.pop("LLMTRAY_TOKEN", None)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_tray_down_calls_succeed_then_everything_arrives_exactly_once(hook_env: Path, upstream):
    with lt.instrument(openai.OpenAI(api_key="k", base_url=upstream.url + "/v1", max_retries=0)) as client:
        for _ in range(5):
            assert client.chat.completions.create(model="gpt-4o-mini", messages=HELLO).usage.prompt_tokens == 1117
    assert lt.flush(5) is False  # nobody to deliver to: kept on disk
    assert len(spool_lines(hook_env)) == 5 and lt.stats()["spooled"] == 5
    tray = start_tray(hook_env)
    try:
        events = delivered(hook_env)
        assert len(events) == 5 and len({e["id"] for e in events}) == 5
        assert all(tokens(e) == CHAT for e in events)
        assert tray.api.activity_snapshot().duplicates == 0
        assert spool_lines(hook_env) == []  # truncated once the server said 200
        assert lt.flush(5) and len(stored(hook_env)) == 5
    finally:
        tray.stop()


def test_tray_restarted_on_another_port_gets_the_rest(hook_env: Path):
    first = start_tray(hook_env)
    for i in range(3):
        lt.record(provider="openai", model="gpt-4o-mini", input_tokens=i + 1)
    assert len(delivered(hook_env)) == 3
    first.stop()
    for i in range(4):
        lt.record(provider="openai", model="gpt-4o-mini", input_tokens=i + 10)
    assert lt.flush(5) is False and len(spool_lines(hook_env)) == 4
    second = start_tray(hook_env)  # port 0: a different port, found again through ingest.json
    try:
        assert second.url != first.url
        events = delivered(hook_env)
        assert sorted(e["input_tokens"] for e in events) == [1, 2, 3, 10, 11, 12, 13]
        assert second.api.activity_snapshot().duplicates == 0
    finally:
        second.stop()


def test_spool_left_by_an_exited_process_is_delivered_by_the_next_one(hook_env: Path):
    code = ("import llmtray.hooks as lt\n"
            "for i in range(20):\n"
            "    lt.record(provider='anthropic', model='claude-sonnet-4-20250514', input_tokens=i + 1)\n")
    proc = run_script(hook_env, code)
    assert proc.returncode == 0, proc.stderr
    assert len(spool_lines(hook_env)) == 20  # the exit flush spooled what it could not deliver
    tray = start_tray(hook_env)
    try:
        events = drained(hook_env)  # the tray (or this process's sender) claims the orphaned file
        assert sorted(e["input_tokens"] for e in events) == list(range(1, 21))
        assert list((hook_env / "spool").glob("hook-*.jsonl")) == []
    finally:
        tray.stop()


def test_half_written_last_line_is_ignored_and_a_garbled_line_dead_lettered(hook_env: Path, tray):
    folder = hook_env / "spool"
    folder.mkdir()
    good = [json.dumps(event(i)) for i in range(3)]
    # a process died mid-write: a garbled line (disk trouble) and an unterminated last line
    plant(folder, "hook-424242-deadbeef.jsonl",
          good[0] + "\n" + '{"id": "e9' + "\n" + good[1] + "\n" + good[2] + "\n" + '{"id": "e777", "provi')
    events = drained(hook_env)
    assert sorted(e["id"] for e in events) == ["e000", "e001", "e002"]
    letters = dead_letters(hook_env)
    assert len(letters) == 1 and letters[0]["line"] == '{"id": "e9'
    assert "unreadable spool line at byte" in letters[0]["error"] and "hook-424242-deadbeef.jsonl" in letters[0]["error"]
    assert not (folder / "hook-424242-deadbeef.jsonl").exists()


def test_events_the_server_rejects_are_dead_lettered_with_its_message(hook_env: Path, tray):
    folder = hook_env / "spool"
    folder.mkdir()
    lines = [event(0), event(1, tokens=12), event(2), event(3, output_tokens=-1)]
    plant(folder, "hook-515151-cafecafe.jsonl", "".join(json.dumps(e) + "\n" for e in lines))
    events = drained(hook_env)
    assert sorted(e["id"] for e in events) == ["e000", "e002"]  # the good ones of the batch still arrive
    letters = {d["event"]["id"]: d for d in dead_letters(hook_env)}
    assert set(letters) == {"e001", "e003"}
    assert letters["e001"]["error"].startswith("400 ") and "tokens" in " ".join(letters["e001"]["errors"])
    assert "output_tokens" in " ".join(letters["e003"]["errors"])


def test_full_spool_drops_the_oldest_and_counts_them(hook_env: Path, caplog: pytest.LogCaptureFixture):
    s = Sender(hook_env / "spool", spool_max_events=50)
    try:
        with caplog.at_level(logging.WARNING, logger="llmtray.hooks"):
            for i in range(80):
                s.submit(event(i))
            assert s.flush(5) is False  # no tray yet
        assert s.stats()["dropped"] == 30 and s.stats()["spooled"] == 80
        assert "dropped" in caplog.text and "oldest" in caplog.text
        tray = start_tray(hook_env)
        try:
            assert s.flush(15)
            assert sorted(e["id"] for e in stored(hook_env)) == [f"e{i:03}" for i in range(30, 80)]
        finally:
            tray.stop()
    finally:
        s.close()


def test_full_queue_spills_to_the_spool_and_nothing_is_lost(hook_env: Path, tray):
    gate = threading.Event()
    entered = threading.Event()

    def slow_discovery():  # holds the sender thread inside its first delivery
        entered.set()
        gate.wait(10)
        return endpoint.discover()

    s = Sender(hook_env / "spool", queue_max=5, discover=slow_discovery)
    try:
        s.submit(event(0))
        assert entered.wait(10)
        for i in range(1, 21):
            s.submit(event(i))  # never blocks: 5 wait in memory, the rest go to the spool file
        assert s.stats()["queued"] == 5 and s.stats()["spooled"] == 15
        gate.set()
        assert s.flush(15)
        assert sorted(e["id"] for e in stored(hook_env)) == [f"e{i:03}" for i in range(21)]
        assert tray.api.activity_snapshot().duplicates == 0
    finally:
        gate.set()
        s.close()


def test_a_rejected_token_is_looked_up_again(hook_env: Path, tray, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LLMTRAY_URL", tray.url)
    monkeypatch.setenv("LLMTRAY_TOKEN", "not-the-token")
    lt.record(provider="openai", model="gpt-4o-mini", input_tokens=5)
    assert lt.flush(5) is False
    assert lt.stats()["last_error"].startswith("401")
    assert len(spool_lines(hook_env)) == 1  # kept, not dropped
    monkeypatch.setenv("LLMTRAY_TOKEN", tray.token)  # e.g. the user fixed the environment
    assert [e["input_tokens"] for e in delivered(hook_env)] == [5]


def test_server_errors_are_retried_and_large_batches_split(hook_env: Path):
    answers = iter([(503, {"error": "writer backlog full"}, {"Retry-After": "0"}),
                    (500, {"error": "internal error"}, {})])

    def script(events):
        scripted = next(answers, None)
        if scripted is not None:
            return scripted
        if len(events) > 4:
            return 413, {"error": "body too large"}, {}
        return 200, {"accepted": len(events), "duplicates": 0}, {}

    receiver = FlakyReceiver(script)
    s = Sender(hook_env / "spool", discover=lambda: endpoint.Endpoint(receiver.url, "t"))
    try:
        for i in range(10):
            s.submit(event(i))
        results = [s.flush(5) for _ in range(4)]
        assert results[:2] == [False, False] and results[-1] is True  # 503, 500, then through
        assert receiver.statuses[:3] == [503, 500, 413]
        assert sorted(receiver.accepted) == [f"e{i:03}" for i in range(10)]  # each exactly once
        assert s.stats()["spooled"] == 10 and not s.stats()["pending_in_spool"]
    finally:
        s.close()
        receiver.close()


def test_connection_refused_keeps_events(hook_env: Path):
    with socket_closed_port() as port:
        s = Sender(hook_env / "spool", discover=lambda: endpoint.Endpoint(f"http://127.0.0.1:{port}", "t"))
        try:
            s.submit(event(1))
            assert s.flush(5) is False
            assert "ConnectionRefusedError" in s.stats()["last_error"]
            assert len(spool_lines(hook_env)) == 1
        finally:
            s.close()
    assert len(spool_lines(hook_env)) == 1  # undelivered events outlive the sender


class socket_closed_port:  # noqa: N801 - a context manager naming what it gives
    """A loopback port with nothing listening (bound, then released)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        pass


def test_exit_flush_delivers_without_an_explicit_flush(hook_env: Path, tray):
    code = ("import llmtray.hooks as lt\n"
            "for i in range(50):\n"
            "    lt.record(provider='openai', model='gpt-4o-mini', input_tokens=i + 1, feature='exiting')\n")
    proc = run_script(hook_env, code)
    assert proc.returncode == 0, proc.stderr
    events = stored(hook_env)
    assert len(events) == 50 and {e["feature"] for e in events} == {"exiting"}


def test_a_stream_still_open_at_exit_is_recorded_as_abandoned(hook_env: Path, tray, upstream):
    code = ("import os, openai, llmtray.hooks as lt\n"
            "client = lt.instrument(openai.OpenAI(api_key='k', base_url=os.environ['STUB'] + '/v1', max_retries=0))\n"
            "stream = client.chat.completions.create(model='gpt-4o-mini', stream=True,\n"
            "                                        messages=[{'role': 'user', 'content': 'hi'}])\n"
            "next(iter(stream))\n")  # and exit, the stream still open and referenced
    proc = run_script(hook_env, code, STUB=upstream.url)
    assert proc.returncode == 0, proc.stderr
    (event,) = stored(hook_env)
    assert event["tags"] == {"llmtray.stream": "abandoned", "llmtray.usage": "missing"}
    assert event["model"] == "gpt-4o-mini-2024-07-18" and event["ttft_ms"] > 0


def _child(queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    queue.put(sender._sender is None)  # the parent's sender didn't come along
    for i in range(2):
        lt.record(provider="openai", model="gpt-4o-mini", input_tokens=1000 + i, feature="child")


def test_a_forked_child_sends_its_own_events_and_not_the_parents(hook_env: Path, tray):
    for i in range(3):
        lt.record(provider="openai", model="gpt-4o-mini", input_tokens=i + 1, feature="parent")
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(queue,))
    child.start()
    fresh = queue.get(timeout=30)
    child.join(30)
    queue.close()
    queue.join_thread()
    assert child.exitcode == 0 and fresh is True
    events = delivered(hook_env)
    assert sorted((e["feature"], e["input_tokens"]) for e in events) == [
        ("child", 1000), ("child", 1001), ("parent", 1), ("parent", 2), ("parent", 3)]
    assert tray.api.activity_snapshot().duplicates == 0


def test_record_validates_on_the_spot(hook_env: Path, tray, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING, logger="llmtray.hooks"):
        bad = lt.record(provider="openai", model="gpt-4o-mini", input_tokens=-5, tokns=3)
    assert bad is None
    assert "input_tokens" in caplog.text and "tokns" in caplog.text and "did you mean" in caplog.text
    good = lt.record(provider="openrouter", model="anthropic/claude-3.5-sonnet", input_tokens=40, output_tokens=9,
                     cost_usd="0.00042", request_id="gen-123", tags={"attempt": 2})
    assert good is not None and uuid.UUID(good)
    event = one_event(delivered(hook_env))
    assert event["id"] == good and event["cost_usd"] == "0.00042" and event["cost_source"] == "reported"
    assert event["tags"] == {"attempt": "2"}
    letters = dead_letters(hook_env)
    assert len(letters) == 1 and letters[0]["event"]["tokns"] == 3


def one_event(events: list[dict]) -> dict:
    assert len(events) == 1, events
    return events[0]

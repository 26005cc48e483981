"""Delivery of hook events: a bounded in-memory queue, one background thread, batches, the spool.

The caller's thread only appends to a deque (never blocks, never does I/O unless the queue is
full — then that one event is spilled to the spool file). The `llmtray-hooks` thread lets a
burst gather for up to 0.2 s (or until 500 are waiting), turns queued items into events, posts
them in batches of at most 500 and sorts each answer
(`transport`): 200 → done; 400 → the named events go to the dead-letter file with the server's
message and the rest are resent; 413 → the batch is split; anything retryable → the batch is
spooled and delivery resumes from the spool after an exponential backoff with jitter
(`Event.wait`, so a new event or a `flush()` can cut the wait short). When the tray comes back,
the spool — and spool files left by processes that ended — is delivered and only then
truncated. At interpreter exit the queue is flushed for at most two seconds, then — while time
is left — the spool and files of ended processes (a short script's only cycle may be that one);
what is left is spooled. The llmtray owning the data dir drains the spool too (`ingest.spool_drain`). After `fork()` the child starts with an empty queue and its own thread.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from llmtray.hooks import endpoint as discovery
from llmtray.hooks.spool import Chunk, Spool
from llmtray.hooks.transport import Connection, Delivered, Rejected, Retry, TooLarge, post_events
from llmtray.ingest.discovery import ENV_TOKEN

log = logging.getLogger("llmtray.hooks")

MAX_BATCH = 500
LINGER = 0.2  # seconds a first event waits for company before its batch is posted
QUEUE_MAX = 10_000
SPOOL_MAX_EVENTS = 200_000
POST_TIMEOUT = 10.0
EXIT_DEADLINE = 2.0
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
ORPHAN_SCAN_EVERY = 60.0


class Pending(Protocol):
    """A recorded call whose event is built off the caller's thread."""

    def to_event(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class DeadLetter:
    """An event refused before sending (`record()` with bad fields): written to the dead-letter
    file by the sender's thread, so the caller's thread does no file I/O."""

    entry: dict[str, Any]


Item = dict[str, Any] | DeadLetter | Pending


class Sender:
    """One per process (see `get()`); tests create their own and `close()` them."""

    def __init__(self, spool_folder: Path | None = None, *, queue_max: int = QUEUE_MAX,
                 spool_max_events: int = SPOOL_MAX_EVENTS, backoff_cap: float = BACKOFF_CAP,
                 post_timeout: float = POST_TIMEOUT,
                 discover: Callable[[], discovery.Endpoint | None] = discovery.discover):
        self.queue_max = queue_max
        self.backoff_cap = backoff_cap
        self.post_timeout = post_timeout
        self.spool = Spool(spool_folder or discovery.spool_dir(), spool_max_events)
        self._discover = discover
        self._queue: deque[Item] = deque()
        self._wake = threading.Event()  # something was queued
        self._urgent = threading.Event()  # a full batch is waiting, or flush()/close() asked
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._cycles = 0
        self._conn = Connection()
        self._endpoint: discovery.Endpoint | None = None
        self._endpoint_known = False
        self._failures = 0
        self._retry_at = 0.0
        self._last_scan = float("-inf")
        self._inflight: list[dict[str, Any]] | None = None
        self._exit_deadline = 0.0
        self._lost_logged = False
        self._token_warned = False
        self.sent = 0
        self.duplicates = 0
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="llmtray-hooks", daemon=True)
        self._thread.start()

    # --- producer side (any thread) --------------------------------------------------------

    def submit(self, item: Item) -> None:
        """Queue one event; O(1), never blocks. A full queue spills the event to the spool."""
        queued = len(self._queue)
        if queued >= self.queue_max:
            self._spill(item)
            return
        self._queue.append(item)
        if not self._wake.is_set():
            self._wake.set()
        elif queued == MAX_BATCH - 1:
            self._urgent.set()

    def _spill(self, item: Item) -> None:
        event = self._build(item)
        if event is None:
            return
        try:
            self.spool.append([event])
        except OSError as exc:
            self._lost(1, exc)

    # --- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(self._wait_time())
            if self._queue and len(self._queue) < MAX_BATCH:
                self._urgent.wait(LINGER)  # let a batch gather: one POST per burst, not per call
            self._urgent.clear()
            self._wake.clear()
            stopping = self._stop.is_set()
            try:
                self._cycle(stopping)
            except Exception:  # a bug here must not kill delivery for the rest of the process
                log.exception("llmtray hooks: delivery cycle failed")
                self._backoff(None)
            with self._idle:
                self._cycles += 1
                self._idle.notify_all()
            if stopping:
                return

    def _wait_time(self) -> float | None:
        if self._queue:
            return 0
        if self.spool.has_pending():
            return max(0.0, self._retry_at - time.monotonic())
        return None

    def _cycle(self, stopping: bool) -> None:
        now = time.monotonic()
        if now < self._retry_at or (stopping and now >= self._exit_deadline):
            self._spool_queue()  # the tray is down: keep events on disk, not in memory
            return
        while True:
            batch = self._take_batch()
            if batch and not self._send_batch(batch):
                return
            if stopping:  # at exit the queue first; then, while the deadline allows, the spool
                if time.monotonic() >= self._exit_deadline:
                    self._spool_queue()
                    return
                if batch:
                    continue
            chunk = self.spool.next_chunk(MAX_BATCH)
            # a short script claims orphans before it exits: its only cycle may be the exit one
            if chunk is None and (stopping or self._orphan_scan_due()) and self.spool.claim_orphan():
                continue  # files left by processes that ended: deliver them too
            if chunk is not None and not self._deliver_chunk(chunk):
                self._spool_queue()
                return
            if not batch and chunk is None:
                return

    def scan_orphans_now(self) -> None:
        """Look for spool files left by ended processes at the next cycle, not within a minute
        (the ingest service calls this when a file appears in the spool folder)."""
        self._last_scan = float("-inf")
        self._urgent.set()
        self._wake.set()

    def _orphan_scan_due(self) -> bool:
        """At start, after the tray came back, and once a minute otherwise (one directory listing)."""
        now = time.monotonic()
        if now - self._last_scan < ORPHAN_SCAN_EVERY:
            return False
        self._last_scan = now
        return True

    def _send_batch(self, batch: list[dict[str, Any]]) -> bool:
        self._inflight = batch
        try:
            remaining = self._deliver(batch)
        finally:
            self._inflight = None
        if remaining:
            self._store(remaining)
            self._spool_queue()
            return False
        return True

    def _take_batch(self) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        while self._queue and len(batch) < MAX_BATCH:
            event = self._build(self._queue.popleft())
            if event is not None:
                batch.append(event)
        return batch

    def _spool_queue(self) -> None:
        while True:
            batch = self._take_batch()
            if not batch:
                return
            self._store(batch)

    def _store(self, events: list[dict[str, Any]]) -> None:
        try:
            self.spool.append(events)
        except OSError as exc:
            self._lost(len(events), exc)

    def _lost(self, n: int, exc: BaseException) -> None:
        self.spool.dropped += n
        if not self._lost_logged:
            self._lost_logged = True
            log.error("llmtray hooks: cannot write the spool in %s (%s); events are being lost",
                      self.spool.folder, exc)

    def _build(self, item: Item) -> dict[str, Any] | None:
        """The event dict (built here, off the caller's thread). Not validated again: events from
        `Call` are valid by construction and `record()` validated its own; should the server still
        refuse one, its 400 names it and only that one is dead-lettered."""
        try:
            if isinstance(item, dict):
                return item
            if isinstance(item, DeadLetter):
                self.spool.dead_letter([item.entry])
                return None
            return item.to_event()
        except Exception as exc:
            log.exception("llmtray hooks: could not build an event")
            self.spool.dead_letter([{"error": f"could not build the event: {exc!r}", "item": repr(item)[:2000]}])
            return None

    def _deliver_chunk(self, chunk: Chunk) -> bool:
        if chunk.events and self._deliver(chunk.events):
            return False
        self.spool.commit(chunk)
        return True

    def _deliver(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Post `events`; returns those not delivered (to keep) — empty when all were accepted
        or dead-lettered."""
        if not self._endpoint_known:
            self._endpoint, self._endpoint_known = self._discover(), True
        outcome = post_events(self._conn, self._endpoint, events, self._timeout())
        if isinstance(outcome, Retry) and outcome.auth:
            fresh = self._discover()
            if fresh != self._endpoint:
                self._endpoint = fresh
                outcome = post_events(self._conn, self._endpoint, events, self._timeout())
            if isinstance(outcome, Retry) and outcome.auth:
                self._warn_token()
        if isinstance(outcome, Delivered):
            self.sent += outcome.accepted
            self.duplicates += outcome.duplicates
            if self._failures:
                log.info("llmtray hooks: delivering again after %d failed attempt(s)", self._failures)
                self._last_scan = float("-inf")  # back online: look for other processes' spools
            self._failures, self._retry_at, self.last_error = 0, 0.0, None
            return []
        if isinstance(outcome, Rejected):
            return self._rejected(events, outcome)
        if isinstance(outcome, TooLarge):
            if len(events) == 1:
                self.spool.dead_letter([{"error": "413: the event is larger than the server accepts", "event": events[0]}])
                return []
            half = len(events) // 2
            first = self._deliver(events[:half])
            return first + events[half:] if first else self._deliver(events[half:])
        assert isinstance(outcome, Retry)
        self._endpoint_known = False  # the tray may come back on another port or with another token
        self._backoff(outcome)
        return events

    def _warn_token(self) -> None:
        """Once per process: a refused token is a setup mistake the user must hear about, not a
        retry that hides in `lt.stats()`."""
        if self._token_warned:
            return
        self._token_warned = True
        url = self._endpoint.url if self._endpoint else "?"
        if os.environ.get(ENV_TOKEN, "").strip():
            log.warning("llmtray hooks: the tray at %s refused the token in %s (401 wrong token); events are "
                        "kept in the spool until it matches — unset %s to use the one in ingest.json",
                        url, ENV_TOKEN, ENV_TOKEN)
        else:
            log.warning("llmtray hooks: the tray at %s refused the token from ingest.json (401 wrong token); "
                        "events are kept in the spool until it matches", url)

    def _rejected(self, events: list[dict[str, Any]], outcome: Rejected) -> list[dict[str, Any]]:
        by_index: dict[int, list[str]] = {}
        for e in outcome.errors:
            index = e.get("index")
            if isinstance(index, int) and 0 <= index < len(events):
                by_index.setdefault(index, []).append(f"{e.get('field', '')}: {e.get('message', '')}".strip(": "))
        if not by_index:  # the server refused the request as a whole
            self.spool.dead_letter([{"error": f"400 {outcome.message}", "event": e} for e in events])
            return []
        self.spool.dead_letter([{"error": f"400 {outcome.message}", "errors": by_index[i], "event": events[i]}
                                for i in sorted(by_index)])
        rest = [e for i, e in enumerate(events) if i not in by_index]
        return self._deliver(rest) if rest else []

    def _timeout(self) -> float:
        if self._stop.is_set():
            return max(0.1, self._exit_deadline - time.monotonic())
        return self.post_timeout

    def _backoff(self, outcome: Retry | None) -> None:
        self._failures += 1
        delay = min(self.backoff_cap, BACKOFF_BASE * 2 ** min(self._failures - 1, 16))
        delay = random.uniform(delay / 2, delay)  # jitter: many processes don't retry in step
        if outcome is not None and outcome.retry_after is not None:
            delay = max(delay, outcome.retry_after)
        self._retry_at = time.monotonic() + delay
        reason = outcome.reason if outcome else "internal error"
        if self._failures == 1 or reason != self.last_error:
            log.info("llmtray hooks: tray not reachable (%s); events are spooled, retrying in %.1fs", reason, delay)
        self.last_error = reason

    # --- control ---------------------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Try to deliver everything queued and spooled now; True when nothing is left.

        A pending backoff is cut short (one attempt now); returns False as soon as an attempt
        fails, leaving the events spooled."""
        deadline = time.monotonic() + timeout
        while True:
            with self._idle:
                target = self._cycles + 1
            failures = self._failures
            self._retry_at = 0.0
            self._urgent.set()
            self._wake.set()
            with self._idle:
                while self._cycles < target and self._thread.is_alive():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._idle.wait(left)
            if not self._queue and self._inflight is None and not self.spool.has_pending():
                return True
            if self._failures > failures or time.monotonic() >= deadline or not self._thread.is_alive():
                return False

    def close(self, timeout: float = EXIT_DEADLINE) -> None:
        """Stop the thread: deliver what it can within `timeout`, spool the rest, release files."""
        self._exit_deadline = time.monotonic() + timeout
        self._stop.set()
        self._urgent.set()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self._thread.is_alive():  # stuck in a slow POST: keep its batch too (ids dedupe a double)
            inflight = self._inflight
            if inflight:
                self._store(list(inflight))
            self._spool_queue()
        self.spool.close()
        self._conn.close()

    def forget_after_fork(self) -> None:
        """In a forked child: the parent's queue and thread are not ours; drop them quietly."""
        self._queue = deque()
        self._conn.forget()
        self.spool.forget_after_fork()

    def stats(self) -> dict[str, Any]:
        return {
            "queued": len(self._queue),
            "sent": self.sent,
            "duplicates": self.duplicates,
            "spooled": self.spool.spooled,
            "pending_in_spool": self.spool.has_pending(),
            "dead_lettered": self.spool.dead_lettered,
            "dropped": self.spool.dropped,
            "failed_attempts": self._failures,
            "last_error": self.last_error,
        }


# --- the process-wide sender -----------------------------------------------------------------

_sender: Sender | None = None
_start_lock = threading.Lock()
_exit_hooks: list[Callable[[], None]] = []


def get() -> Sender:
    """The process's sender, started on first use."""
    sender = _sender
    if sender is not None:
        return sender
    return _start()


def _start() -> Sender:
    global _sender
    with _start_lock:
        if _sender is None:
            _sender = Sender()
        return _sender


def current_stats() -> dict[str, Any]:
    sender = _sender
    if sender is not None:
        return sender.stats()
    return {"queued": 0, "sent": 0, "duplicates": 0, "spooled": 0, "pending_in_spool": False, "dead_lettered": 0,
            "dropped": 0, "failed_attempts": 0, "last_error": None}


def submit(item: Item) -> None:
    """Hand one event (or pending call) to the background sender; never raises."""
    try:
        (_sender or _start()).submit(item)
    except Exception:  # e.g. thread start refused during interpreter shutdown
        log.debug("llmtray hooks: could not queue an event", exc_info=True)


def add_exit_hook(fn: Callable[[], None]) -> None:
    """Run `fn` at exit before the final flush (open streams record themselves there)."""
    _exit_hooks.append(fn)


def shutdown(timeout: float = EXIT_DEADLINE) -> None:
    """Flush for at most `timeout` seconds and stop the sender (a later event starts a new one)."""
    global _sender
    for fn in _exit_hooks:
        try:
            fn()
        except Exception:
            log.debug("llmtray hooks: exit hook failed", exc_info=True)
    with _start_lock:
        sender, _sender = _sender, None
    if sender is not None:
        sender.close(timeout)


def _after_fork_in_child() -> None:
    global _sender, _start_lock
    _start_lock = threading.Lock()
    sender, _sender = _sender, None
    if sender is not None:
        sender.forget_after_fork()
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        # multiprocessing children leave through os._exit, skipping atexit, and clear the
        # finalizer registry on start; its after-fork callbacks run after that clearing
        mp_util.register_after_fork(_MP_ANCHOR, _flush_at_multiprocessing_exit)


class _Anchor:
    """A weak-referenceable key for `multiprocessing.util.register_after_fork`."""


_MP_ANCHOR = _Anchor()


def _flush_at_multiprocessing_exit(_anchor: object) -> None:
    sys.modules["multiprocessing.util"].Finalize(None, shutdown, exitpriority=10)


atexit.register(shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

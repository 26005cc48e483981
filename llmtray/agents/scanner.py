"""One pass over the coding agents' logs: find files, read what is new, store the calls.

Used by `llmtray agents scan` (a `Store` as the sink) and by the live watcher inside the app and
`serve` (the ingest `Writer` as the sink, so budgets, the tray and the dashboard hear of each
commit). Calls are collected across files and stored in batches: copies of one id in the batch are
merged first (per-count maximum), then compared with what is stored. An id stored by this source
with smaller counts is *replaced* by the merged call (a snapshot that grew); one stored by another
path (the proxy, OTLP) is a duplicate. Every event goes through `event_errors`, the validation of
the ingest API: a call it refuses is a skipped line with the field and the reason, never a crash.
File states are saved after the batch that covers them committed.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from llmtray.agents import ledger
from llmtray.agents.base import Agent
from llmtray.agents.calls import TOKEN_KEYS, Call, merge, raise_counts, tokens_of
from llmtray.agents.registry import AGENTS
from llmtray.agents.settings import AgentsConfig
from llmtray.agents.tailer import FileState, changed, read_document, read_new
from llmtray.core.errors import FieldError
from llmtray.core.events import UsageEvent, event_errors
from llmtray.core.money import nanos_to_str

if TYPE_CHECKING:  # both import genai-prices' data (~0.4 s): a re-scan with nothing new never needs it
    from llmtray.core.pricing import Pricer
    from llmtray.core.store import AddResult

FLUSH_EVENTS = 4000  # calls per stored batch: bounds memory and the writer's transaction
# A cold scan with this much to read reads in a second process while this one stores (the
# longer of the two instead of their sum); below it, starting the process costs more.
PARALLEL_MIN_BYTES = 32 << 20
GROUP_BYTES = 16 << 20  # new bytes per group of files sent to the reader process
# Files written to within this long are polled on every pass; older ones (most of a long history)
# only when the roots are walked again, which keeps the idle watcher's stat calls few.
HOT_NS = 3600 * 10**9


class Sink(Protocol):
    """Where calls are stored: `write` returns after the commit."""

    def write(self, events: list[UsageEvent], source: str, replace: bool) -> AddResult: ...


@dataclass
class AgentReport:
    """What one pass did for one agent (`llmtray agents scan` prints it)."""

    source: str
    roots: list[str] = field(default_factory=list)
    files: int = 0
    files_read: int = 0
    added: int = 0
    updated: int = 0
    duplicates: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)  # unreadable folders and files

    def as_json(self) -> dict[str, Any]:
        return {"agent": self.source, "roots": self.roots, "files": self.files, "files_read": self.files_read,
                "added": self.added, "updated": self.updated, "duplicates": self.duplicates,
                "skipped": self.skipped, "errors": self.errors}


class Scanner:
    """Keeps every agent's file states in memory between passes (the live watcher polls often);
    one per thread, on its own connection."""

    def __init__(self, conn: sqlite3.Connection, sink: Sink, config: AgentsConfig, *,
                 env: Mapping[str, str] | None = None, make_pricer: Callable[[], Pricer] | None = None,
                 agents: tuple[Agent, ...] = AGENTS, stopping: Callable[[], bool] = lambda: False,
                 parallel: bool = False, ledger_conn: sqlite3.Connection | None = None):
        self.conn, self.sink, self.config = conn, sink, config
        self.ledger = ledger_conn or conn  # the files read so far (this machine's own in team mode)
        # `parallel`: big reads in a reader process (the CLI; not inside the GUI app's process)
        self.parallel = parallel and (os.cpu_count() or 1) > 1 and not getattr(sys, "frozen", False)
        self.parallel_min_bytes = PARALLEL_MIN_BYTES
        self.stopping = stopping  # checked between files: quitting never waits for a whole backfill
        self.env = os.environ if env is None else env
        self.agents = agents
        self._make_pricer = make_pricer
        self._pricer: Pricer | None = None
        self._states: dict[str, dict[str, FileState]] = {}
        self._files: dict[str, list[Path]] = {}
        self.roots: dict[str, list[Path]] = {}

    @property
    def pricer(self) -> Pricer:  # built on first use: a re-scan with nothing new never loads prices
        if self._pricer is None:
            from llmtray.core.pricing import Pricer

            self._pricer = (self._make_pricer or Pricer)()
        return self._pricer

    def enabled(self) -> list[Agent]:
        return [a for a in self.agents if self.config.active(a.source)]

    def scan(self, only: str | None = None, *, discover: bool = True) -> list[AgentReport]:
        """One pass. `discover`: walk the roots for new files (slow timer); else only the files
        already known are checked (a `stat` each)."""
        reports = []
        for agent in self.enabled():
            if only is None or agent.source == only:
                reports.append(self._scan_agent(agent, discover))
        return reports

    def _scan_agent(self, agent: Agent, discover: bool) -> AgentReport:
        report = AgentReport(agent.source)
        if agent.source not in self._states:
            self._states[agent.source] = ledger.load(self.ledger, agent.source)
        states = self._states[agent.source]
        if discover or agent.source not in self._files:
            roots = agent.roots(self.env)
            self.roots[agent.source] = roots
            found: list[Path] = []
            for root in roots:
                found.extend(agent.files(root, lambda where, why: report.errors.append(f"{where}: {why}")))
            self._files[agent.source] = found
            present = {str(f) for f in found}
            gone = [p for p in states if p not in present]
            if gone:
                ledger.forget(self.ledger, gone)
                for p in gone:
                    del states[p]
        report.roots = [str(r) for r in self.roots.get(agent.source, [])]
        files = self._files[agent.source]
        report.files = len(files)
        todo: list[tuple[os.stat_result, FileState]] = []
        cold_before = time.time_ns() - HOT_NS
        for path in files:
            key = str(path)
            fs = states.get(key)
            if not discover and fs is not None and fs.mtime_ns < cold_before and agent.mode(path) != "sqlite":
                continue  # untouched for an hour: checked on the next discovery pass (30 s) only
            try:
                st = os.stat(key)
            except OSError as exc:
                report.errors.append(f"{key}: {exc.strerror or exc}")
                continue
            if fs is None:
                fs = states[key] = FileState(key, agent.source)
            elif agent.mode(path) == "sqlite":
                if _db_signature(key) == (fs.reader or {}).get("signature"):
                    continue  # neither the database nor its WAL changed: no query
            elif not changed(st, fs):
                continue
            todo.append((st, fs))
        todo.sort(key=lambda item: -item[0].st_mtime_ns)  # newest first: today shows up at once
        batch: _Batch = _Batch()
        new_bytes = sum(max(st.st_size - fs.offset, 0) for st, fs in todo)
        if self.parallel and new_bytes >= self.parallel_min_bytes:
            batch = self._read_in_reader_process(agent, todo, states, batch, report)
        else:
            for st, fs in todo:
                if self.stopping():
                    break  # what was read is stored below; the rest is read next time
                self._take(*_read_group(agent.source, [(fs, st)], (agent,)), batch, report)
                if len(batch.calls) >= FLUSH_EVENTS:
                    self._flush(agent.source, batch, report)
                    batch = _Batch()
        self._flush(agent.source, batch, report)
        return report

    def _read_in_reader_process(self, agent: Agent, todo: list[tuple[os.stat_result, FileState]],
                                states: dict[str, FileState], batch: _Batch, report: AgentReport) -> _Batch:
        """Groups of files read by a second process, two groups ahead of the storing."""
        groups: list[list[tuple[FileState, os.stat_result]]] = [[]]
        size = 0
        for st, fs in todo:
            if size >= GROUP_BYTES:
                groups.append([])
                size = 0
            groups[-1].append((fs, st))
            size += max(st.st_size - fs.offset, 0)
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            pending: deque[Future[_GroupRead]] = deque()
            for group in groups:
                if self.stopping():
                    break  # groups already read are still stored below
                pending.append(pool.submit(_read_group, agent.source, group))
                if len(pending) > 2:
                    batch = self._take_read(agent.source, pending.popleft().result(), states, batch, report)
            while pending:
                batch = self._take_read(agent.source, pending.popleft().result(), states, batch, report)
        return batch

    def _take_read(self, source: str, result: _GroupRead, states: dict[str, FileState], batch: _Batch,
                   report: AgentReport) -> _Batch:
        read, calls = result
        for fs, _, _ in read:  # the reader's copies are the states now
            states[fs.path] = fs
        self._take(read, calls, batch, report)
        if len(batch.calls) < FLUSH_EVENTS:
            return batch
        self._flush(source, batch, report)
        return _Batch()

    @staticmethod
    def _take(read: list[tuple[FileState, int, str | None]], calls: dict[str, Call], batch: _Batch,
              report: AgentReport) -> None:
        """One group's result into the batch: file states (and their errors), calls merged by id."""
        for fs, skipped, error in read:
            batch.files[fs.path] = fs  # a read cut short by an error still saves its state (offset unmoved)
            if error:
                report.errors.append(error)
            else:
                report.files_read += 1
                report.skipped += skipped
        for call in calls.values():
            batch.add(call)

    def _flush(self, source: str, batch: _Batch, report: AgentReport) -> None:
        if batch.calls:
            self._store(source, batch, report)
        ledger.save(self.ledger, batch.files.values())

    def _store(self, source: str, batch: _Batch, report: AgentReport) -> None:
        known = ledger.stored(self.conn, [*batch.calls, *(a for c in batch.calls.values() for a in c.aliases)])
        fresh: list[UsageEvent] = []
        grown: list[UsageEvent] = []
        subscription = self.config.of(source).subscription
        now = datetime.now(UTC)
        for call in batch.calls.values():
            data = call.event
            if any(known.get(alias, (source,))[0] != source for alias in call.aliases):
                report.duplicates += 1  # stored by another path under its other id
                continue
            old = known.get(call.id)
            if old is not None:
                old_source, old_tokens = old
                if old_source != source:
                    report.duplicates += 1
                    continue
                data = raise_counts(data, dict(zip(TOKEN_KEYS, old_tokens)), data)
                if tokens_of(data) == old_tokens:
                    report.duplicates += 1
                    continue
            event, errors = event_errors(data, now=now)
            if event is not None and data.get("ts") is None:  # never "now": the call happened earlier
                event, errors = None, [FieldError("ts", "the record has no timestamp")]
            if event is None:
                batch.files[call.path].skip("; ".join(f"{e.field}: {e.message}" for e in errors), call.line)
                report.skipped += 1
                continue
            if subscription:
                event = self._as_subscription(event)
            (grown if old is not None else fresh).append(event)
            batch.files[call.path].events += old is None
        if fresh:
            result = self.sink.write(fresh, source, False)
            report.added += result.accepted
            report.duplicates += result.duplicates
        if grown:
            report.updated += self.sink.write(grown, source, True).accepted

    def _as_subscription(self, event: UsageEvent) -> UsageEvent:
        """A flat plan's call: it cost nothing extra (`cost_usd` 0, so spend and budgets leave it
        out); its API-equivalent value rides along as the `api_equivalent_usd` tag."""
        priced = self.pricer.price(event)
        value = "unpriced" if priced.cost_nanos is None else nanos_to_str(priced.cost_nanos)
        tags = {**event.tags, "billing": "subscription", "api_equivalent_usd": value}
        return replace(event, cost_usd=Decimal(0), tags=tags)


_GroupRead = tuple[list[tuple[FileState, int, "str | None"]], dict[str, Call]]


def _read_group(source: str, group: list[tuple[FileState, os.stat_result]],
                agents: tuple[Agent, ...] = AGENTS) -> _GroupRead:
    """Read what is new in a group of files, here or in the reader process: per file its new
    state, the lines it skipped, or why it could not be read; and the calls, merged by id."""
    agent = next(a for a in agents if a.source == source)
    batch = _Batch()
    out: list[tuple[FileState, int, str | None]] = []
    for fs, st in group:
        before = sum(n for n, _ in fs.skipped.values())
        try:
            _read_file(agent, fs, st, batch.add)
        except OSError as exc:
            out.append((fs, 0, f"{fs.path}: {exc.strerror or exc}"))
            continue
        # a document re-read from its start counts its skips afresh: never a negative count
        out.append((fs, max(0, sum(n for n, _ in fs.skipped.values()) - before), None))
    return out, batch.calls


def _read_file(agent: Agent, fs: FileState, st: os.stat_result, emit: Callable[[Call], None]) -> None:
    path = Path(fs.path)
    mode = agent.mode(path)
    if mode == "lines":
        read_new(fs, st, agent.markers, lambda state: agent.reader(path, state), emit)
    elif mode == "document":
        read_document(fs, st, agent.reader(path, fs.reader), emit)
    else:
        signature = _db_signature(fs.path)  # taken first: a write during the read is seen next time
        agent.read_database(fs, emit)  # type: ignore[attr-defined]
        fs.reader = {**(fs.reader or {}), "signature": signature}
        fs.dev, fs.ino, fs.size, fs.mtime_ns = st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _db_signature(path: str) -> list[int]:
    """Size and mtime of a database and of its WAL (where its writes land until a checkpoint)."""
    out: list[int] = []
    for name in (path, f"{path}-wal"):
        try:
            st = os.stat(name)
        except OSError:
            out += [-1, -1]
        else:
            out += [st.st_size, st.st_mtime_ns]
    return out


class _Batch:
    """Calls found since the last flush, merged by id, and the files they came from."""

    def __init__(self) -> None:
        self.calls: dict[str, Call] = {}
        self.files: dict[str, FileState] = {}

    def add(self, call: Call) -> None:
        old = self.calls.get(call.id)
        if old is not None:
            call.event = merge(old.event, call.event)
        self.calls[call.id] = call


"""Ingest throughput: the real `llmtray serve` against a naive baseline and SQLite's own ceiling.

Prints, in one run:
  (a) events/s with 1 event per request from one keep-alive client;
  (b) events/s with batches of 500 from 4 client processes;
  (c) the naive baseline: a fresh sqlite3 connection + INSERT + COMMIT per event;
  the ceiling: raw `executemany` in WAL of pre-built rows, 500 per transaction, into the real
  schema (indexes and rollup triggers) and into a bare table with the same columns (best of 3);
  the floor: (a) and (b) against `bench/floor_server.py`, a server of the same shape that does
  no work (no validation, pricing, rollups or indexes), with and without the writer thread;
  and a per-event breakdown of where the server's time goes.

The server runs as a subprocess (`python -m llmtray serve`), so the clients' Python never shares
its GIL; clients are raw sockets with pre-encoded requests, so they don't dominate the figure.

    python bench/ingest.py [--seconds 3] [--clients 4] [--batch 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TARGET_BATCH_EPS, TARGET_CEILING_SHARE, TARGET_SINGLE_RPS = 50_000, 0.25, 3_000


def event(tag: str, i: int) -> dict:
    """A typical hook event; every one has its own id and millisecond (no cache can help)."""
    ts = f"2026-01-02T{10 + i // 3_600_000 % 10:02d}:{i // 60_000 % 60:02d}:{i // 1000 % 60:02d}.{i % 1000:03d}Z"
    return {"id": f"{tag}-{i}", "provider": "openai", "model": "gpt-4o-mini", "ts": ts,
            "input_tokens": 1200 + i % 100, "output_tokens": 300, "cache_read_tokens": 100,
            "feature": "chat", "user": f"u{i % 7}", "latency_ms": 812.5}


def request(body: bytes, token: str) -> bytes:
    return (b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (token.encode(), len(body))) + body


def read_status(sock: socket.socket, buf: bytearray) -> int:
    """Read one Content-Length-framed response; returns its status."""
    while (end := buf.find(b"\r\n\r\n")) < 0:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        buf += data
    head = bytes(buf[:end])
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(buf) < end + 4 + length:
        buf += sock.recv(65536)
    del buf[:end + 4 + length]
    return int(head[9:12])


def full_insert_sql(columns: tuple[str, ...]) -> str:
    """One event row with every column bound: the plain INSERT a first draft writes."""
    return f"INSERT INTO event_row ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load() -> str:
    return "load average %.1f" % os.getloadavg()[0] if hasattr(os, "getloadavg") else "load unknown"


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


# --- the server under test --------------------------------------------------------------------


def start_server(data: Path) -> tuple[subprocess.Popen, int, str]:
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
    proc = subprocess.Popen([sys.executable, "-m", "llmtray", "--data-dir", str(data), "serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            info = json.loads((data / "ingest.json").read_text())
            if info["pid"] == proc.pid:
                port = int(info["url"].rsplit(":", 1)[1])
                with connect(port) as s:
                    s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    if read_status(s, bytearray()) == 200:
                        return proc, port, info["token"]
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("llmtray serve did not start")


def start_floor(tmp: Path, mode: str) -> tuple[subprocess.Popen, int]:
    port_file = tmp / f"floor-{mode}.port"
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("floor_server.py")),
                             str(tmp / f"floor-{mode}.db"), str(port_file)] + ([f"--{mode}"] if mode else []))
    deadline = time.monotonic() + 60
    while not (port_file.exists() and port_file.read_text()):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit("bench/floor_server.py did not start")
        time.sleep(0.05)
    return proc, int(port_file.read_text())


def floor_figures(tmp: Path, seconds: float, clients: int, batch: int) -> dict[str, tuple[float, float, float]]:
    """(a) requests/s, (b) events/s and GET requests/s of the no-work server: raw asyncio with its
    writer thread and inline, and aiohttp's low-level server (what llmtray serves with)."""
    out: dict[str, tuple[float, float, float]] = {}
    for label, mode in (("writer thread", ""), ("commit on the loop", "inline"), ("aiohttp, writer thread", "aiohttp")):
        proc, port = start_floor(tmp, mode)
        try:
            get = health_requests(port, seconds / 2)
            n, t = single_events(port, "-", seconds)
            m, u = batches(port, "-", clients, batch, seconds, eps_guess=100_000)
            out[label] = (n / t, m / u, get)
        finally:
            proc.kill()
            proc.wait()
    return out


def single_events(port: int, token: str, seconds: float) -> tuple[int, float]:
    """(a): one event per request, one keep-alive connection, request after request."""
    prepared = [request(json.dumps(event("single", i)).encode(), token) for i in range(60_000)]
    with connect(port) as sock:
        buf = bytearray()
        n, t0 = 0, time.perf_counter()
        while n < len(prepared) and time.perf_counter() - t0 < seconds:
            sock.sendall(prepared[n])
            if read_status(sock, buf) != 200:
                raise SystemExit("(a) a request failed")
            n += 1
        return n, time.perf_counter() - t0


def health_requests(port: int, seconds: float) -> float:
    """The HTTP floor: GET /v1/health (no body, no writer) on one keep-alive connection."""
    req = b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with connect(port) as sock:
        buf = bytearray()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            sock.sendall(req)
            read_status(sock, buf)
            n += 1
        return n / (time.perf_counter() - t0)


def hop_floor(seconds: float) -> float:
    """Round trips/s of the hand-off every acknowledged request makes: event loop → a thread
    waiting on a Condition → back to the loop through `asyncio.wrap_future` (no work at all)."""
    cond, queue = threading.Condition(), deque()

    def worker() -> None:
        while True:
            with cond:
                while not queue:
                    cond.wait()
                future = queue.popleft()
            if future is None:
                return
            future.set_result(None)

    async def loop_side() -> float:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            future: Future[None] = Future()
            with cond:
                queue.append(future)
                cond.notify()
            await asyncio.wrap_future(future)
            n += 1
        return n / (time.perf_counter() - t0)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        return asyncio.run(loop_side())
    finally:
        with cond:
            queue.append(None)
            cond.notify()
        thread.join()


def _batch_client(port: int, token: str, client: int, batch: int, requests: int,
                  start: Any, results: Any) -> None:
    prepared = [request(json.dumps([event(f"b{client}-{r}", i) for i in range(batch)]).encode(), token)
                for r in range(requests)]
    with connect(port) as sock:
        buf = bytearray()
        start.wait()
        t0 = time.perf_counter()
        for req in prepared:
            sock.sendall(req)
            status = read_status(sock, buf)
            if status != 200:
                raise SystemExit(f"(b) a request got {status}")
        results.put((t0, time.perf_counter()))


def batches(port: int, token: str, clients: int, batch: int, seconds: float, eps_guess: float) -> tuple[int, float]:
    """(b): `clients` processes, each sending its share of batches back to back."""
    requests = max(2, int(eps_guess * seconds / batch / clients))
    ctx = mp.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_batch_client, args=(port, token, c, batch, requests, start, results))
             for c in range(clients)]
    for p in procs:
        p.start()
    time.sleep(1.0)  # let every client build its requests before the clock starts
    start.set()
    spans = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    return clients * requests * batch, max(e for _, e in spans) - min(s for s, _ in spans)


# --- SQLite on its own ---------------------------------------------------------------------------


def prebuilt_rows(n: int) -> list[list]:
    """Rows exactly as the store writes them (priced, ids assigned)."""
    from llmtray.core.events import parse_batch
    from llmtray.core.pricing import Pricer
    from llmtray.core.store import Batch, Store

    tmp = Path(tempfile.mkdtemp(prefix="llmtray-bench-rows-"))
    store = Store.open(tmp / "rows.db", Pricer())
    rows, _ = store.prebuilt(Batch(parse_batch([event("row", i) for i in range(n)]), "api"))
    store.close()
    return rows


def naive(db: Path, rows: list[list], seconds: float) -> tuple[int, float]:
    """(c): what a first draft does — connect, insert, commit, close — per event."""
    from llmtray.core.compact import ROW_COLUMNS
    insert_sql = full_insert_sql(ROW_COLUMNS)

    n, t0 = 0, time.perf_counter()
    while n < len(rows) and time.perf_counter() - t0 < seconds:
        conn = sqlite3.connect(db)
        conn.execute(insert_sql, rows[n])
        conn.commit()
        conn.close()
        n += 1
    return n, time.perf_counter() - t0


def ceiling(conn: sqlite3.Connection, rows: list[list], sql: str, batch: int) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(rows), batch):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, rows[i:i + batch])
        conn.execute("COMMIT")
    return len(rows) / (time.perf_counter() - t0)


def sqlite_figures(tmp: Path, seconds: float, batch: int) -> dict[str, float]:
    from llmtray.core import db as dbmod
    from llmtray.core.compact import ROW_COLUMNS
    insert_sql = full_insert_sql(ROW_COLUMNS)

    rows = prebuilt_rows(40_000)
    out: dict[str, float] = {}
    naive_db = tmp / "naive.db"
    dbmod.migrate(naive_db)
    n, t = naive(naive_db, rows, seconds)
    out["naive"] = n / t
    best = {"ceiling_real": 0.0, "ceiling_bare": 0.0}
    for attempt in range(3):  # the best of 3: one run can land on a checkpoint or a busy neighbour
        real = tmp / f"ceiling-real-{attempt}.db"
        dbmod.migrate(real)
        conn = sqlite3.connect(real, isolation_level=None)
        for pragma, value in dbmod.PRAGMAS.items():
            conn.execute(f"PRAGMA {pragma} = {value}")
        best["ceiling_real"] = max(best["ceiling_real"], ceiling(conn, rows, insert_sql, batch))
        conn.close()
        conn = sqlite3.connect(tmp / f"ceiling-bare-{attempt}.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode = wal")
        conn.execute("PRAGMA synchronous = normal")
        conn.execute(f"CREATE TABLE event_row ({', '.join(ROW_COLUMNS)})")
        best["ceiling_bare"] = max(best["ceiling_bare"], ceiling(conn, rows, insert_sql, batch))
        conn.close()
    return out | best


def breakdown(tmp: Path, n: int = 5_000) -> dict[str, float]:
    """µs per event of each stage the server runs, measured in this process on the same events."""
    from llmtray.core.events import parse_batch
    from llmtray.core.pricing import Pricer
    from llmtray.core.store import Batch, Store
    from llmtray.ingest.api import decode_json

    body = json.dumps([event("split", i) for i in range(n)]).encode()
    timings: dict[str, float] = {}
    t = time.perf_counter()
    items = decode_json(body)
    timings["json decode"] = time.perf_counter() - t
    t = time.perf_counter()
    events = parse_batch(items, now=datetime.now(UTC))
    timings["validate (parse_batch)"] = time.perf_counter() - t
    pricer = Pricer()
    pricer.price(events[0])
    t = time.perf_counter()
    for e in events:
        pricer.price(e)
    timings["price"] = time.perf_counter() - t
    store = Store.open(tmp / "split.db", Pricer())
    store.add(events[:1], "api")
    t = time.perf_counter()
    for i in range(1, n, 500):
        store.add_many([Batch(events[i:i + 500], "api")])
    timings["store.add_many (price + rows + insert + commit)"] = time.perf_counter() - t
    store.close()
    return {k: v / n * 1e6 for k, v in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each timed phase (default 3)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="llmtray-bench-"))
    print(f"llmtray ingest bench ({os.cpu_count()} CPUs, {load()}, Python {sys.version.split()[0]}, SQLite "
          f"{sqlite3.sqlite_version}); data in {tmp}")

    figures = sqlite_figures(tmp, args.seconds, args.batch)
    proc, port, token = start_server(tmp / "serve")
    cpu: dict[str, float | None] = {}
    try:
        health = health_requests(port, args.seconds / 2)
        before = cpu_seconds(proc.pid)
        n, t = single_events(port, token, args.seconds)
        single, middle = n / t, cpu_seconds(proc.pid)
        cpu["a"] = (middle - before) / n * 1e6 if before is not None and middle is not None else None
        n, t = batches(port, token, args.clients, args.batch, args.seconds, eps_guess=figures["ceiling_real"] / 2)
        batched, after = n / t, cpu_seconds(proc.pid)
        cpu["b"] = (after - middle) / n * 1e6 if middle is not None and after is not None else None
    finally:
        proc.terminate()
        proc.wait(60)
    split = breakdown(tmp)
    hop = hop_floor(args.seconds / 2)
    floors = floor_figures(tmp, args.seconds, args.clients, args.batch)

    real, bare = figures["ceiling_real"], figures["ceiling_bare"]
    print()
    print(f"(a) 1 event/request, 1 keep-alive client   {single:10,.0f} events/s  (= requests/s; target ≥ "
          f"{TARGET_SINGLE_RPS:,}: {'met' if single >= TARGET_SINGLE_RPS else 'NOT met'}){_cpu(cpu['a'])}")
    print(f"    floors in this run: GET /v1/health {health:,.0f} requests/s (HTTP alone); "
          f"loop → thread → loop hand-off {hop:,.0f}/s (no work)")
    print(f"(b) {args.batch}-event batches, {args.clients} clients        {batched:10,.0f} events/s  (target ≥ "
          f"{TARGET_BATCH_EPS:,}: {'met' if batched >= TARGET_BATCH_EPS else 'NOT met'}){_cpu(cpu['b'])}")
    print(f"(c) naive: connect+insert+commit per event  {figures['naive']:10,.0f} events/s  "
          f"(b is {batched / figures['naive']:,.0f}× faster)")
    print(f"ceiling: executemany, real schema           {real:10,.0f} events/s  (b reaches {batched / real:.0%}; "
          f"target ≥ {TARGET_CEILING_SHARE:.0%}: {'met' if batched >= TARGET_CEILING_SHARE * real else 'NOT met'})")
    print(f"ceiling: executemany, bare table            {bare:10,.0f} events/s  (b reaches {batched / bare:.0%})")
    for label, (a, b, get) in floors.items():
        print(f"floor, no-work server, {label + ':':24s} (a) {a:7,.0f} requests/s, (b) {b:9,.0f} events/s, "
              f"GET {get:7,.0f} requests/s")
    print()
    print("where one event's time goes (µs, in-process, same events):")
    for stage, us in split.items():
        print(f"  {stage:50s} {us:7.1f}  (≈ {1e6 / us:,.0f}/s alone)")
    print(f"  {'executemany, real schema (SQLite only)':50s} {1e6 / real:7.1f}")
    print(f"\nmachine: {load()} at the end (figures are only comparable within one run)")


def _cpu(us: float | None) -> str:
    return f"; server CPU {us:,.0f} µs/event" if us is not None else ""


if __name__ == "__main__":
    main()

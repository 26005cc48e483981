"""Team mode (PostgreSQL, DESIGN §16) measured: 8 machines ingesting into one database, and the
dashboard's views on a big team database — each beside its ceiling and SQLite's figure, in the
same run.

    python bench/team.py [--events 200000] [--writers 8] [--batch 500] [--dashboard 1M] [--profile]
    python bench/team.py --full        # the issue's scale: 1M ingested events, the dashboard at 10M

Ingest: one throwaway PostgreSQL (`tests/postgres.start`, data in a temp dir, stopped at the end
even on Ctrl-C), `--writers` real `llmtray --database URL serve` processes (own data dir and
port, `LLMTRAY_MACHINE=m<i>`), and as many client processes posting pre-encoded batches of
`--batch` events (bench/ingest.py's client) each to its own server: events/s over a fixed count,
then the database must hold exactly the acknowledged events (and each machine's tag on its own)
and every rollup level's sums must equal the events' (integers, exact). Beside it, in the same
run: the store alone on PostgreSQL (`Store.add_many`, no HTTP, by COPY and by the multi-row
INSERTs COPY replaced), its row write of pre-built rows (both ways), raw COPY of the same rows
(the machine's ceiling), SQLite's `serve` (bench/ingest.py's case (b), same batches) — and
where the CPU went (per process group, from /proc; `--profile` adds py-spy's top frames of one
server).

Dashboard: bench/dashboard.py's database of the chosen size (its demo generator, cached in
bench/out/), copied table by table into PostgreSQL with COPY (triggers off: the rollups are
copied as SQLite computed them), then `check_exact` against PostgreSQL's own event table and
every view timed with the same `Queries` calls as bench/dashboard.py, SQLite's figures beside.
Targets (the issue's): ≥ 20,000 events/s in total; every view < 250 ms at 10M events.

The server runs with tests/postgres.py's settings (fsync, synchronous_commit and
full_page_writes off, shared_buffers at the default 128 MB): a throwaway server's, so the
figures are PostgreSQL's CPU cost, not a disk's.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import dashboard as dash  # noqa: E402  (bench/dashboard.py: the views, the data, the checks)
import ingest  # noqa: E402  (bench/ingest.py: the client, the SQLite server figure)
from tests import postgres  # noqa: E402  (the throwaway server the test suite uses)

TARGET_EPS, TARGET_VIEW_MS = 20_000, 250.0
SIZES = {"100k": "100k", "100000": "100k", "1M": "1M", "1000000": "1M", "10M": "10M", "10000000": "10M"}


# --- the server -----------------------------------------------------------------------------------


@contextmanager
def pg_server() -> Iterator[postgres.PgServer]:
    """A throwaway PostgreSQL, stopped and its files removed however the bench ends (SIGTERM
    is turned into an exception so that `finally` runs)."""
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    server = postgres.start()
    if isinstance(server, str):
        raise SystemExit(f"no PostgreSQL: {server}")
    try:
        yield server
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)


def pg_pids(server: postgres.PgServer) -> list[int]:
    """Our server's processes: its postmaster and the backends and workers it forked (other
    PostgreSQL servers on the machine, a test session's, run as the same user); none for a
    server given by LLMTRAY_TEST_POSTGRES_URL (not ours to read)."""
    if server.data is None:
        return []
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    out = [postmaster]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    out.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def cpu_of(pids: list[int]) -> float:
    return sum(ingest.cpu_seconds(p) or 0.0 for p in pids)


def machine_busy() -> float:
    """Seconds of CPU the whole machine has spent (all processes, all cores): /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    busy = sum(int(v) for i, v in enumerate(fields[:8]) if i not in (3, 4))  # not idle, not iowait
    return busy / os.sysconf("SC_CLK_TCK")


# --- 8 machines ingesting -------------------------------------------------------------------------


@dataclass
class Serve:
    proc: subprocess.Popen
    port: int
    token: str


def start_serves(url: str, tmp: Path, count: int) -> list[Serve]:
    """`count` `llmtray --database URL serve` processes, started together, each ready."""
    procs = []
    for i in range(count):
        data = tmp / f"serve-{i}"
        env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring", "LLMTRAY_MACHINE": f"m{i}",
               "PYTHONPATH": str(ROOT)}
        procs.append((data, subprocess.Popen(
            [sys.executable, "-m", "llmtray", "--data-dir", str(data), "--database", url, "serve", "--port", "0"],
            stdout=subprocess.DEVNULL, stderr=open(tmp / f"serve-{i}.log", "w"), env=env)))
    serves: list[Serve] = []
    deadline = time.monotonic() + 180
    for data, proc in procs:
        while True:
            try:
                info = json.loads((data / "ingest.json").read_text())
                if info["pid"] == proc.pid:
                    port = int(info["url"].rsplit(":", 1)[1])
                    with ingest.connect(port) as s:
                        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                        if ingest.read_status(s, bytearray()) == 200:
                            serves.append(Serve(proc, port, info["token"]))
                            break
            except (OSError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                stop_serves([Serve(p, 0, "") for _, p in procs])
                raise SystemExit(f"llmtray serve {data.name} did not start; see {data}.log")
            time.sleep(0.05)
    return serves


def stop_serves(serves: list[Serve]) -> None:
    for s in serves:
        if s.proc.poll() is None:
            s.proc.terminate()
    for s in serves:
        try:
            s.proc.wait(60)
        except subprocess.TimeoutExpired:
            s.proc.kill()


def post_all(server: postgres.PgServer, serves: list[Serve], batch: int, requests: int,
             profile: Path | None) -> dict[str, float]:
    """One client process per server, `requests` batches each, started together; the clock runs
    from the first client's first request to the last one's last answer (every one a 200)."""
    ctx = mp.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    clients = [ctx.Process(target=ingest._batch_client, args=(s.port, s.token, c, batch, requests, start, results))
               for c, s in enumerate(serves)]
    for p in clients:
        p.start()
    time.sleep(1.0 + 0.3 * len(clients))  # every client builds its requests before the clock starts
    groups = {"llmtray serve": [s.proc.pid for s in serves], "clients": [p.pid for p in clients],
              "postgres": pg_pids(server)}
    before = {k: cpu_of(v) for k, v in groups.items()} | {"machine": machine_busy()}
    spy = None
    if profile is not None:
        spy = subprocess.Popen(["/work/venv/bin/py-spy" if Path("/work/venv/bin/py-spy").exists() else "py-spy",
                                "record", "--pid", str(serves[0].proc.pid), "--format", "raw", "--rate", "200",
                                "--nonblocking", "--output", str(profile)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start.set()
    spans = [results.get(timeout=1800) for _ in clients]
    after = {k: cpu_of(v) for k, v in groups.items()} | {"machine": machine_busy()}
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
    for p in clients:
        p.join()
    if any(p.exitcode != 0 for p in clients):
        raise SystemExit("a client failed (a request that was not answered 200)")
    wall = max(e for _, e in spans) - min(s for s, _ in spans)
    return {"wall": wall} | {f"cpu {k}": after[k] - before[k] for k in after}


def verify(url: str, writers: int, per_writer: int) -> list[str]:
    """The database holds exactly the acknowledged events, each machine's under its tag, and
    every rollup level sums to the events' own totals."""
    import psycopg

    from llmtray.core import db as dbmod

    wrong = []
    with psycopg.connect(url) as conn:
        (stored,) = conn.execute("SELECT count(*) FROM event_row").fetchone()
        if stored != writers * per_writer:
            wrong.append(f"{stored:,} events stored, {writers * per_writer:,} acknowledged")
        machines = dict(conn.execute("SELECT g.value, count(*) FROM event_tag_link l JOIN tag g ON g.id = l.tag"
                                     " WHERE g.key = 'machine' GROUP BY 1").fetchall())
        if machines != {f"m{i}": per_writer for i in range(writers)}:
            wrong.append(f"events per machine tag {machines}")
        sums = ("events", "requests", "input_tokens", "output_tokens", "cache_read_tokens", "cost_nanos", "unpriced")
        truth = conn.execute("SELECT count(*), sum(requests), sum(input_tokens), sum(output_tokens),"
                             " sum(cache_read_tokens), sum(coalesce(cost_nanos, 0)),"
                             " sum(CASE WHEN cost_nanos IS NULL THEN requests ELSE 0 END) FROM event_row").fetchone()
        truth = tuple(int(v or 0) for v in truth)
        for level in (*dbmod.LEVELS, dbmod.TAG_ROLLUP):
            names = [s for s in sums if s in ("events", *level.sums)]
            if level.tagged:  # each event once per tag it carries: compare the `machine` tag's rows
                where, expect = " WHERE key = 'machine'", truth
            else:
                where, expect = "", truth
            got = conn.execute(f"SELECT {', '.join(f'sum({n})' for n in names)} FROM {level.table}{where}").fetchone()
            want = tuple(expect[sums.index(n)] for n in names)
            if tuple(int(v or 0) for v in got) != want:
                wrong.append(f"{level.table}: {dict(zip(names, got))} ≠ events' {dict(zip(names, want))}")
    return wrong


# --- the ceilings: no HTTP --------------------------------------------------------------------------


def store_alone(url: str, n: int, batch: int) -> float:
    """events/s of `Store.add_many` on PostgreSQL in this process: validation and HTTP left out,
    everything the server's writer does kept (pricing, names, rows, INSERTs, rollups, commit)."""
    from llmtray.core import dburl
    from llmtray.core.events import parse_batch
    from llmtray.core.store import Batch, Store

    events = parse_batch([ingest.event("alone", i) for i in range(n)])
    store = Store.open(dburl.resolve(url, None, "alone"))
    try:
        store.add(events[:1], "api")
        t = time.perf_counter()
        for i in range(1, n, batch):
            store.add_many([Batch(events[i:i + batch], "api")])
        return (n - 1) / (time.perf_counter() - t)
    finally:
        store.close()


def prebuilt(url: str, n: int) -> list[tuple[Any, ...]]:
    """`event_row` rows exactly as the store writes them, ids from 1 (names in `url`'s dictionary)."""
    from llmtray.core import dburl
    from llmtray.core.events import parse_batch
    from llmtray.core.store import Batch, Store

    store = Store.open(dburl.resolve(url, None, "rows"))
    try:
        rows, _ = store.prebuilt(Batch(parse_batch([ingest.event("row", i) for i in range(n)]), "api"))
    finally:
        store.close()
    return rows


@contextmanager
def inserts_only() -> Iterator[None]:
    """The store's writes as before COPY (`pg.copy_rows` declines every batch): multi-row
    INSERTs, for the before/after figure in the same run."""
    from llmtray.core import pg

    saved, pg.COPY_FROM_ROWS = pg.COPY_FROM_ROWS, sys.maxsize
    try:
        yield
    finally:
        pg.COPY_FROM_ROWS = saved


def store_rows(url: str, rows: list[tuple[Any, ...]], batch: int) -> float:
    """The store's own row write (`_insert_encoded`: the key lookup and COPY, or the INSERTs
    under `inserts_only`) in transactions of `batch` rows, with the write lock, into the real
    schema — no names, links or rollups."""
    from llmtray.core import dburl, pg
    from llmtray.core.store import _insert_encoded

    conn = pg.connect(dburl.parse(url))
    try:
        t = time.perf_counter()
        for i in range(0, len(rows), batch):
            conn.execute("BEGIN IMMEDIATE")
            _insert_encoded(conn, rows[i:i + batch])
            conn.execute("COMMIT")
        return len(rows) / (time.perf_counter() - t)
    finally:
        conn.close()


def copy_rows(url: str, rows: list[tuple[Any, ...]], batch: int) -> float:
    """The machine's ceiling: the same rows by COPY, one transaction per `batch`, real schema."""
    import psycopg

    from llmtray.core.compact import ROW_COLUMNS

    names = ", ".join(f'"{c}"' for c in ROW_COLUMNS)
    with psycopg.connect(url, autocommit=True) as conn:
        t = time.perf_counter()
        for i in range(0, len(rows), batch):
            with conn.transaction(), conn.cursor().copy(f"COPY event_row ({names}) FROM STDIN") as copy:
                for row in rows[i:i + batch]:
                    copy.write_row(row)
        return len(rows) / (time.perf_counter() - t)


def sqlite_serve(tmp: Path, clients: int, batch: int, seconds: float) -> float:
    """bench/ingest.py's case (b): one SQLite `serve`, `clients` processes of the same batches."""
    proc, port, token = ingest.start_server(tmp / "sqlite-serve")
    try:
        n, t = ingest.batches(port, token, clients, batch, seconds, eps_guess=40_000)
        return n / t
    finally:
        proc.terminate()
        proc.wait(60)


def top_frames(raw: Path, count: int = 14) -> list[tuple[str, float, float]]:
    """py-spy's raw (collapsed) stacks → (function, inclusive share, own share), by inclusive."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")" if " (" in f else f
                  for f in stack.split(";")]
        total += int(n)
        for f in set(frames[1:]):
            inclusive[f] = inclusive.get(f, 0) + int(n)
        own[frames[-1]] = own.get(frames[-1], 0) + int(n)
    ranked = sorted(inclusive, key=inclusive.get, reverse=True)
    boring = ("<module>", "run (threading.py)", "_bootstrap", "main (", "run_forever", "_run_once", "_run (events.py)")
    ranked = [f for f in ranked if not any(f.startswith(b) or b in f for b in boring)]
    return [(f, inclusive[f] / total, own.get(f, 0) / total) for f in ranked[:count]] if total else []


def ingest_section(server: postgres.PgServer, args: argparse.Namespace, tmp: Path) -> bool:
    per_writer = args.events // args.writers // args.batch * args.batch
    requests = per_writer // args.batch
    url = server.new_database()
    print(f"\n== ingest: {args.writers} `llmtray serve` → one PostgreSQL, {args.writers} clients, "
          f"{requests} × {args.batch}-event POSTs each ({args.writers * per_writer:,} events) ==", flush=True)
    serves = start_serves(url, tmp, args.writers)
    profile = tmp / "serve-0.pyspy" if args.profile else None
    try:
        run = post_all(server, serves, args.batch, requests, profile)
    finally:
        stop_serves(serves)
    total = args.writers * per_writer
    eps = total / run["wall"]
    wrong = verify(url, args.writers, per_writer)
    server.drop_database(url)

    n = min(total, 100_000)
    alone = store_alone(server.new_database(), min(n, 50_000), args.batch)
    with inserts_only():
        alone_inserts = store_alone(server.new_database(), min(n, 50_000), args.batch)
    rows_db = server.new_database()
    rows = prebuilt(rows_db, n)
    server.drop_database(rows_db)
    copied_rows = store_rows(server.new_database(), rows, args.batch)
    with inserts_only():
        inserted_rows = store_rows(server.new_database(), rows, args.batch)
    copied = copy_rows(server.new_database(), rows, args.batch)
    sqlite = sqlite_serve(tmp, min(4, args.writers), args.batch, args.seconds)

    print(f"8 machines → PostgreSQL, over HTTP         {eps:10,.0f} events/s  (target ≥ {TARGET_EPS:,}: "
          f"{'met' if eps >= TARGET_EPS else 'NOT met'}; {run['wall']:.1f} s for {total:,})")
    print(f"the store alone on PostgreSQL (add_many)   {alone:10,.0f} events/s  (one process, no HTTP; with "
          f"multi-row INSERTs instead of COPY: {alone_inserts:,.0f})")
    print(f"the store's row write, pre-built rows      {copied_rows:10,.0f} events/s  (key lookup + COPY; "
          f"its multi-row INSERTs: {inserted_rows:,.0f}; no names, links, rollups)")
    print(f"ceiling: COPY of the same rows             {copied:10,.0f} events/s  (one process, {args.batch}/transaction)")
    print(f"SQLite: one `serve`, {min(4, args.writers)} clients (bench/ingest.py b) {sqlite:9,.0f} events/s")
    cpu = {k[4:]: v for k, v in run.items() if k.startswith("cpu ")}
    whole = cpu.pop("machine")
    print(f"CPU during the ingest ({run['wall']:.1f} s × {os.cpu_count()} cores = "
          f"{run['wall'] * (os.cpu_count() or 1):.1f} core-s; the machine spent {whole:.1f}):")
    for group, seconds in cpu.items():
        print(f"  {group:16s} {seconds:7.1f} core-s  {seconds / total * 1e6:6.0f} µs/event  "
              f"({seconds / whole:.0%} of the machine's)")
    print(f"  {'other':16s} {whole - sum(cpu.values()):7.1f} core-s  (the kernel's, other users', and processes that came and went: autovacuum)")
    ours = sum(cpu.values())
    print(f"  on {os.cpu_count()} idle cores the same work would take at least {ours / (os.cpu_count() or 1):.1f} s: "
          f"≤ {total / ours * (os.cpu_count() or 1):,.0f} events/s (CPU-bound; the write lock caps it "
          f"too, at about the store-alone rate)")
    if profile is not None and profile.exists():
        print("where `serve` m0's time goes (py-spy, inclusive / own, all threads):")
        for frame, inc, self_ in top_frames(profile):
            print(f"  {inc:5.0%} {self_:5.0%}  {frame}")
    print("exact: every acknowledged event stored once under its machine; every rollup level sums to the "
          "events" if not wrong else f"NOT exact: {'; '.join(wrong)}")
    return eps >= TARGET_EPS and not wrong


# --- the dashboard on a big team database ------------------------------------------------------------


def copy_database(sqlite_path: Path, url: str) -> tuple[int, float]:
    """Every table of the SQLite database into PostgreSQL's schema by COPY, triggers off (the
    rollups arrive as SQLite computed them; `check_exact` then holds them to the events), then
    ANALYZE. Returns (rows, seconds)."""
    import sqlite3

    import psycopg

    src = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    rows = 0
    t = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")  # no triggers, no FK checks
        wanted = {n for (n,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        for (table,) in src.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall():
            if table not in wanted:
                continue
            cur = src.execute(f"SELECT * FROM {table}")
            columns = [d[0] for d in cur.description]
            quoted = ", ".join(f'"{c}"' for c in columns)  # `user`, `offset`: reserved words there
            with conn.transaction():
                conn.execute(f"DELETE FROM {table}")
                with conn.cursor().copy(f"COPY {table} ({quoted}) FROM STDIN") as copy:
                    blob_at = columns.index("event_id") if table == "event_row" else -1
                    for row in cur:
                        if blob_at >= 0 and isinstance(row[blob_at], str):
                            row = (*row[:blob_at], row[blob_at].encode(), *row[blob_at + 1:])
                        copy.write_row(row)
                        rows += 1
        conn.execute("ANALYZE")
    src.close()
    return rows, time.perf_counter() - t


def dashboard_section(server: postgres.PgServer, label: str, repeat: int) -> bool:
    from llmtray.core import dburl

    path, now = dash.ensure_db(label)
    url = server.new_database()
    print(f"\n== dashboard: {label} events (bench/dashboard.py's database {path.name}) on PostgreSQL ==", flush=True)
    rows, seconds = copy_database(path, url)
    print(f"copied {rows:,} rows (events, tag links, names, rollups) by COPY in {seconds:.0f} s", flush=True)
    team = dburl.parse(url)
    on_pg = dash.time_views(team, now, repeat)
    wrong = dash.check_exact(team, now)
    naive = dash.time_naive(team, now)
    on_sqlite = dash.time_views(path, now, repeat)
    print(f"ms per view, best of {repeat} after a warm-up: PostgreSQL / SQLite (same data, same calls)")
    print("| view | " + " | ".join(dash.SCENARIOS) + " |")
    print("|---|" + "---:|" * len(dash.SCENARIOS))
    ok = not wrong
    for name, per in on_pg.items():
        cells = []
        for scenario in dash.SCENARIOS:
            ms, lite = per[scenario], on_sqlite[name][scenario]
            over = label == "10M" and ms > TARGET_VIEW_MS
            ok &= not over
            cells.append(f"{ms:.0f}{' !' if over else ''} / {lite:.0f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    worst = max(ms for per in on_pg.values() for ms in per.values())
    verdict = f": {'met' if worst < TARGET_VIEW_MS else 'NOT met'}" if label == "10M" else ""
    print(f"slowest view on PostgreSQL: {worst:.0f} ms (target < {TARGET_VIEW_MS:.0f} ms at 10M{verdict})")
    print("naive baseline on PostgreSQL (30 days summed from the event view, no rollups): "
          + ", ".join(f"{k} {v:,.0f} ms" for k, v in naive.items()))
    print("exact: every scenario's breakdown and daily totals equal PostgreSQL's event table" if not wrong
          else f"NOT exact: {'; '.join(wrong)}")
    server.drop_database(url)
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="events the writers post in all (default 200k)")
    parser.add_argument("--writers", type=int, default=8, help="`serve` processes and clients (default 8)")
    parser.add_argument("--batch", type=int, default=500, help="events per POST (default 500)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of the SQLite serve phase (default 3)")
    parser.add_argument("--dashboard", default="1M", help="dashboard database size: 100k, 1M or 10M (default 1M)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=("ingest", "dashboard"), help="one half only")
    parser.add_argument("--profile", action="store_true", help="py-spy one server during the ingest")
    parser.add_argument("--full", action="store_true", help="the issue's scale: 1M events ingested, 10M on the dashboard")
    args = parser.parse_args()
    if args.full:
        args.events, args.dashboard = 1_000_000, "10M"
    if args.dashboard not in SIZES:
        parser.error(f"--dashboard: choose from 100k, 1M, 10M, not {args.dashboard!r}")
    tmp = Path(tempfile.mkdtemp(prefix="llmtray-bench-team-"))
    print(f"llmtray team-mode bench ({os.cpu_count()} CPUs, {ingest.load()}, Python {sys.version.split()[0]}); "
          f"data in {tmp}", flush=True)
    ok = True
    try:
        with pg_server() as server:
            with server.admin() as conn:
                print("PostgreSQL", conn.execute("SHOW server_version").fetchone()[0], "with",
                      ", ".join(f"{k}={conn.execute(f'SHOW {k}').fetchone()[0]}"
                                for k in ("shared_buffers", "fsync", "synchronous_commit")), flush=True)
            if args.only in (None, "ingest"):
                ok &= ingest_section(server, args, tmp)
            if args.only in (None, "dashboard"):
                ok &= dashboard_section(server, SIZES[args.dashboard], args.repeat)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nmachine: {ingest.load()} at the end (figures are only comparable within one run)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

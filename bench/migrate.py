"""Schema migration of a big database: how long `db.migrate` takes to bring a database of
today's schema (`--from`, default 9) with `--rows` events to the newest one, its peak memory,
the bytes before and after, and whether every event and cost came through exactly.

The database is what a heavy user has: mostly an OpenRouter per-generation import (event ids,
request ids, two to four tags per call, latency and time to first token, reported costs to the
nano-dollar), plus live calls from hooks and the proxy (several providers and models, features,
projects, end users, a `team` tag on some, errors, unpriced calls), over 30 days. It is written
with bulk `executemany` straight into the `event` and `event_tag` tables of that schema, and
`rebuild_rollups` fills the rollups in the same transaction, so a million rows take seconds
instead of an import's minutes; it is cached under the temp dir (keyed by schema and rows) and
every run migrates a fresh copy (TMPDIR moves the cache).

For scale, in the same run: the time to copy the file (this disk's floor for touching every
byte once) and of `CREATE TABLE copy AS SELECT * FROM event` (SQLite's floor for rewriting every
event row once, without an index). The migration itself runs in a child process, so that the
peak RSS it reports is the migration's own (the app runs the same `migrate` on a thread behind
its progress dialog, `gui/prepare_db.py`).

    python bench/migrate.py                    # 1M events (the v9 database is built once)
    python bench/migrate.py --rows 200000      # quick look
    python bench/migrate.py --rows 10000000    # the issue's 10M figure: long, and ~5× the database in free disk

Exits 1 if a total differs after the migration (printed MISMATCH); figures only otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmtray.core import db as dbmod  # noqa: E402
from llmtray.core.sketch import bin_of  # noqa: E402
from llmtray.core.store import to_us  # noqa: E402
from llmtray.importers.values import key_id  # noqa: E402

FROM_VERSION = 9
CACHE = Path(tempfile.gettempdir()) / "llmtray-bench-migrate"
# Bumped when the generated data changes, so a cached database of the old data is not reused.
GENERATOR = 1
START = datetime(2026, 4, 1, tzinfo=UTC)
DAYS = 30
DAY_US = 86_400_000_000
FORMAT = "openrouter-generations"
IMPORTED_SHARE = 0.8  # of the events: the OpenRouter import; the rest are live calls
# (permaslug, typical reported cost in nano-dollars)
OPENROUTER_MODELS = (("openai/gpt-4o-mini", 150_000), ("anthropic/claude-4.5-sonnet-20250929", 9_000_000),
                     ("meta-llama/llama-3.3-70b-instruct", 400_000), ("google/gemini-2.5-flash", 700_000),
                     ("deepseek/deepseek-chat-v3.1", 300_000), ("openai/gpt-5", 6_000_000))
UPSTREAMS = ("OpenAI", "Anthropic", "Together", "Google", "DeepInfra", "Azure")
APPS = ("", "cline", "aider", "my-app")
# (provider, model, nano-dollars per input token, per output token; None: no price known)
LIVE_MODELS = (("openai", "gpt-4o-mini", 150, 600), ("openai", "gpt-4.1", 2_000, 8_000),
               ("anthropic", "claude-sonnet-4-5", 3_000, 15_000), ("anthropic", "claude-haiku-4-5", 1_000, 5_000),
               ("google", "gemini-2.5-flash", 300, 2_500), ("acme", "in-house-7b", None, None))
FEATURES = ("chat", "search", "summarize", "")
PROJECTS = ("web", "batch", "")
ENVS = ("prod", "dev")
TEAMS = ("core", "growth", "research")
# The `event` columns written (the rest keep their defaults); `lat_bin` and `ttft_bin` are added
# when the schema has them (from 10 on).
COLUMNS = ("id", "event_id", "ts", "received", "provider", "model", "input_tokens", "output_tokens",
           "cache_read_tokens", "reasoning_tokens", "cost_nanos", "cost_source", "pricing_version", "priced_model",
           "latency_ms", "ttft_ms", "status", "error", "stream", "feature", "user", "project", "env", "tags",
           "request_id", "source", "dataset_id")
CHUNK = 50_000
# Disk a run needs, in sizes of the source database: its copy, the migration's backup of it, and
# the WAL of the migration's transactions (1.5× at schema 10: every event row rewritten, new tables).
DISK_FACTOR = 4
# What the migration child runs: it says "ready" once imported, so a test's kill timer starts at
# the migration itself, then prints its own figures as JSON.
CHILD = """
import json, re, sys, time
from pathlib import Path
from llmtray.core import db

def peak_kb():  # VmHWM: this process's own peak (ru_maxrss would carry the parent's over fork and exec)
    return int(re.search(r"VmHWM:\\s+(\\d+)", Path("/proc/self/status").read_text())[1])

print("ready", flush=True)
rss = peak_kb()
start = time.perf_counter()
version = db.migrate(Path(sys.argv[1]))
print(json.dumps({"version": version, "seconds": time.perf_counter() - start, "rss_before_kb": rss,
                  "max_rss_kb": peak_kb()}), flush=True)
"""


def events(n: int, days: int = DAYS, seed: int = 19) -> Iterator[tuple[dict[str, object], dict[str, str]]]:
    """`n` events in id and time order over `days` days, with their tags: IMPORTED_SHARE of them
    rows of one OpenRouter generations import (dataset 1), the others live calls."""
    rnd = random.Random(seed)
    step = days * DAY_US // max(n, 1)
    start = to_us(START)
    imported_at = start + (days + 1) * DAY_US
    tag_json: dict[tuple[tuple[str, str], ...], str] = {}
    for i in range(n):
        ts = start + i * step + rnd.randrange(step or 1)
        latency = round(rnd.lognormvariate(7.0, 0.9), 1)  # ~1.1 s median, a long tail
        if rnd.random() < IMPORTED_SHARE:
            model, typical = OPENROUTER_MODELS[rnd.randrange(len(OPENROUTER_MODELS))]
            generation = f"gen-{ts // 1000}-{rnd.getrandbits(40):010x}"
            prompt = rnd.randrange(50, 20_000)
            tags = {"api_key": f"key-{rnd.randrange(3)}", "upstream": UPSTREAMS[rnd.randrange(len(UPSTREAMS))]}
            if app := APPS[rnd.randrange(len(APPS))]:
                tags["app"] = app
            if rnd.random() < 0.01:
                tags["cancelled"] = "true"
            row: dict[str, object] = {
                "event_id": key_id(FORMAT, generation), "received": imported_at, "provider": "openrouter",
                "model": model, "input_tokens": prompt, "output_tokens": rnd.randrange(1, 2_000),
                "cache_read_tokens": rnd.randrange(prompt) if rnd.random() < 0.3 else 0, "reasoning_tokens": 0,
                "cost_nanos": rnd.randrange(typical // 10, typical * 3), "cost_source": "reported",
                "pricing_version": None, "priced_model": None, "latency_ms": latency,
                "ttft_ms": round(latency * rnd.uniform(0.05, 0.4), 1), "status": "ok", "error": None,
                "stream": rnd.randrange(2), "feature": "", "user": f"u{rnd.randrange(50)}" if rnd.random() < 0.7 else "",
                "project": "", "env": "", "request_id": generation, "source": f"import:{FORMAT}", "dataset_id": 1,
            }
        else:
            provider, model, per_in, per_out = LIVE_MODELS[rnd.randrange(len(LIVE_MODELS))]
            prompt, completion = rnd.randrange(10, 8_000), rnd.randrange(1, 1_500)
            failed = rnd.random() < 0.03
            tags = {"team": TEAMS[rnd.randrange(len(TEAMS))]} if rnd.random() < 0.5 else {}
            row = {
                "event_id": f"{rnd.getrandbits(128):032x}" if rnd.random() < 0.5 else None,
                "received": ts + rnd.randrange(1_000, 2_000_000), "provider": provider, "model": model,
                "input_tokens": prompt, "output_tokens": 0 if failed else completion, "cache_read_tokens": 0,
                "reasoning_tokens": 0,
                "cost_nanos": None if per_in is None else prompt * per_in + (0 if failed else completion * per_out),
                "cost_source": "unpriced" if per_in is None else "computed",
                "pricing_version": None if per_in is None else "genai-prices 0.2.3",
                "priced_model": None if per_in is None else model,
                "latency_ms": latency if rnd.random() < 0.9 else None, "ttft_ms": None,
                "status": "error" if failed else "ok", "error": "rate_limited" if failed else None,
                "stream": None, "feature": FEATURES[rnd.randrange(len(FEATURES))],
                "user": f"user-{rnd.randrange(200)}", "project": PROJECTS[rnd.randrange(len(PROJECTS))],
                "env": ENVS[rnd.randrange(len(ENVS))], "request_id": None, "source": ("hook", "proxy")[rnd.randrange(2)],
                "dataset_id": None,
            }
        key = tuple(sorted(tags.items()))
        if key not in tag_json:
            tag_json[key] = json.dumps(dict(key), ensure_ascii=False, sort_keys=True) if key else None
        row["tags"] = tag_json[key]
        row["id"], row["ts"] = i + 1, ts
        yield row, tags


def build(path: Path, rows: int, version: int = FROM_VERSION, days: int = DAYS) -> None:
    """A database at schema `version` holding `events(rows, days)` and their rollups. Written to
    a temporary name without a journal (fast; a crash leaves only that file) and renamed."""
    part = path.with_name(path.name + ".part")
    dbmod.remove_database_files(part)
    dbmod.migrate(part, upto=version)
    with closing(sqlite3.connect(part, isolation_level=None)) as conn:
        conn.executescript("PRAGMA journal_mode = off; PRAGMA synchronous = off; PRAGMA cache_size = -256000;")
        bins = "lat_bin" in _columns(conn, "event")
        columns = [*COLUMNS, *(["lat_bin", "ttft_bin"] if bins else [])]
        insert = f"INSERT INTO event ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        conn.execute("BEGIN")
        generated = events(rows, days)
        while chunk := list(islice(generated, CHUNK)):
            for row, _ in chunk if bins else ():
                row["lat_bin"], row["ttft_bin"] = bin_of(row["latency_ms"]), bin_of(row["ttft_ms"])  # type: ignore[arg-type]
            conn.executemany(insert, ([row[c] for c in columns] for row, _ in chunk))
            conn.executemany("INSERT INTO event_tag (event, key, value) VALUES (?, ?, ?)",
                             ((row["id"], k, v) for row, tags in chunk for k, v in tags.items()))
        conn.execute("INSERT INTO dataset (id, name, format, path, created, rows_read, imported, state)"
                     " SELECT 1, 'openrouter_generations.csv', ?, '/home/me/Downloads/openrouter_generations.csv',"
                     " ?, count(*), count(*), 'done' FROM event WHERE dataset_id = 1",
                     (FORMAT, int(START.timestamp()) + (days + 1) * 86_400))
        dbmod.rebuild_rollups(conn)
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode = wal")
    part.rename(path)


def cached(rows: int, version: int, days: int, rebuild: bool = False) -> Path:
    """The cached database of `rows` events over `days` at `version`, built first if missing."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"v{version}-{rows}-{days}d-g{GENERATOR}.db"
    if rebuild:
        dbmod.remove_database_files(path)
    if not path.exists():
        print(f"building {rows:,} events over {days} days at schema {version} in {path} (once)", flush=True)
        started = time.perf_counter()
        build(path, rows, version, days)
        print(f"  built in {time.perf_counter() - started:.1f} s", flush=True)
    return path


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {name for _, name, *_ in conn.execute(f"PRAGMA table_info({table})")}


def migration_process(path: Path) -> subprocess.Popen[str]:
    """A child process migrating `path` to the newest schema; its first line is "ready" (just
    before `migrate` starts), its last the figures as JSON."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError(f"the migration child failed to start (exit {proc.wait()})")
    return proc


def totals(path: Path) -> dict[str, object]:
    """What must come through a migration unchanged, read through `event` and `event_tag`
    whatever their layout: counts, exact sums, the spend of every UTC day, and tag counts."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        count, cost, input_tokens, output_tokens = conn.execute(
            "SELECT count(*), sum(cost_nanos), sum(input_tokens), sum(output_tokens) FROM event").fetchone()
        days = conn.execute(f"SELECT ts / {DAY_US}, count(*), sum(cost_nanos) FROM event GROUP BY 1 ORDER BY 1").fetchall()
        tags = conn.execute("SELECT key, value, count(*) FROM event_tag GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
    return {"events": count, "cost_nanos": cost, "input_tokens": input_tokens, "output_tokens": output_tokens,
            "per-day spend": days, "tag counts": tags}


def files_bytes(path: Path) -> int:
    """The database with its WAL (a migration's writes sit there until checkpointed)."""
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


class DiskWatch:
    """Peak bytes of every file beside the database (WAL, backup), polled while a migration
    runs: the free disk a user needs for it."""

    def __init__(self, path: Path) -> None:
        self.path, self.peak, self._stop = path, 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*")
                                           if p.exists()))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def copy_floor(path: Path) -> float:
    """Seconds of `CREATE TABLE copy AS SELECT * FROM event`, rolled back (the file is left as it was)."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("BEGIN")
        started = time.perf_counter()
        conn.execute("CREATE TABLE bench_copy AS SELECT * FROM event")
        seconds = time.perf_counter() - started
        conn.execute("ROLLBACK")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return seconds


def vacuumed_bytes(path: Path) -> tuple[int, float]:
    """Bytes of the database once VACUUMed (in place) and the seconds that took."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        started = time.perf_counter()
        conn.execute("VACUUM")
        seconds = time.perf_counter() - started
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return files_bytes(path), seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="events in the database (default 1,000,000)")
    parser.add_argument("--from", dest="version", type=int, default=FROM_VERSION,
                        choices=range(2, dbmod.MIGRATIONS[-1].version), help="schema to migrate from (default 9)")
    parser.add_argument("--days", type=int, default=DAYS, help="days the events span (default 30)")
    parser.add_argument("--rebuild", action="store_true", help="build the source database again, not from the cache")
    parser.add_argument("--keep", action="store_true", help="keep the migrated copy (its path is printed)")
    parser.add_argument("--no-vacuum", action="store_true", help="skip the VACUUM after the migration")
    args = parser.parse_args()
    if args.rows < 1 or args.days < 1:
        parser.error(f"--rows and --days must be at least 1 (got {args.rows} and {args.days})")
    source = cached(args.rows, args.version, args.days, args.rebuild)
    need, free = DISK_FACTOR * source.stat().st_size, shutil.disk_usage(CACHE).free
    if free < need:
        print(f"the migration of a copy of {source} needs about {need / 2**30:.1f} GiB free beside it, {CACHE} has "
              f"{free / 2**30:.1f} GiB: free some, or point TMPDIR at a bigger disk")
        return 1
    work_dir = Path(tempfile.mkdtemp(prefix="migrate-", dir=CACHE))
    work = work_dir / "llmtray.db"
    started = time.perf_counter()
    shutil.copyfile(source, work)
    copy_s = time.perf_counter() - started
    before_bytes = files_bytes(work)
    mib = before_bytes / 2**20
    try:
        before = totals(work)  # also reads the file into the page cache for both timings below
        floor_s = copy_floor(work)
        watch = DiskWatch(work)
        proc = migration_process(work)
        out, _ = proc.communicate()
        peak_disk = watch.stop()
        if proc.returncode != 0:
            print(f"migration failed (exit {proc.returncode})")
            return 1
        child = json.loads(out.strip().splitlines()[-1])
        after_bytes = files_bytes(work)
        after = totals(work)
        vacuum = None if args.no_vacuum else vacuumed_bytes(work)
    finally:
        if not args.keep:
            shutil.rmtree(work_dir)
    n = args.rows
    print(f"\nmigrating {n:,} events over {args.days} days, schema {args.version} → {child['version']} ({mib:,.0f} MiB)")
    print(f"  {'migrate()':<42}{child['seconds']:>9.1f} s {n / child['seconds']:>12,.0f} rows/s")
    print(f"  {'floor: CREATE TABLE AS SELECT * FROM event':<42}{floor_s:>9.1f} s {n / floor_s:>12,.0f} rows/s")
    print(f"  {'floor: copy the file':<42}{copy_s:>9.1f} s {mib / copy_s:>12,.0f} MiB/s")
    print(f"  peak RSS of the migrating process: {child['max_rss_kb'] / 1024:,.0f} MiB "
          f"({child['rss_before_kb'] / 1024:,.0f} MiB before it started)")
    print(f"  bytes: {before_bytes:,} before ({before_bytes / n:,.0f}/event), {after_bytes:,} after "
          f"({after_bytes / n:,.0f}/event)" + (f", {vacuum[0]:,} after VACUUM ({vacuum[0] / n:,.0f}/event,"
                                              f" VACUUM {vacuum[1]:.1f} s)" if vacuum else ""))
    print(f"  peak disk during the migration (database, WAL, backup): {peak_disk:,} "
          f"({peak_disk / max(before_bytes, 1):.1f}× the database)")
    if args.keep:
        print(f"  kept: {work}")
    bad = [k for k in before if before[k] != after[k]]
    for key, value in before.items():
        shown = value if isinstance(value, int) else f"{len(value)} rows"  # type: ignore[arg-type]
        print(f"  {key:<16}{shown!s:>24}  {'MISMATCH' if key in bad else 'OK'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

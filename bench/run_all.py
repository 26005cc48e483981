"""Run every bench in bench/ and collect what they print into one markdown report.

    python bench/run_all.py [--quick] [--only store,ingest] [--skip soak] [--out bench/out/RESULTS.md]

Each bench runs in its own subprocess (its own process group, killed whole on timeout) with
arguments chosen to be short but meaningful — `--quick` picks the shortest settings that still
exercise every figure. Each bench prints its figures next to its own naive baseline from the
same run; this script adds the machine (cores, load average at start and end, Python, commit)
so figures from different runs can be judged, and writes one file with a section per bench:
markdown tables kept as tables, other lines as preformatted text. The file is also printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "RESULTS.md"


@dataclass(frozen=True)
class Bench:
    name: str
    normal: tuple[str, ...]
    quick: tuple[str, ...]
    what: str


BENCHES = [
    Bench("store", ("--events", "200000", "--baseline-events", "10000"),
          ("--events", "20000", "--baseline-events", "2000"),
          "Store.add throughput and dashboard queries vs connect+INSERT+COMMIT per event and plain GROUP BY"),
    Bench("ingest", ("--seconds", "3"), ("--seconds", "1", "--clients", "2"),
          "POST /v1/events through `llmtray serve` vs a naive per-event commit and SQLite's own ceiling"),
    Bench("hooks", ("--calls", "20000", "--http-calls", "1500", "--chunks", "200000", "--sender-events", "20000"),
          ("--calls", "2000", "--http-calls", "200", "--chunks", "20000", "--sender-events", "2000"),
          "time the SDK hooks add per call vs a seed-style SQLite hook"),
    Bench("proxy", ("--calls", "400", "--seconds", "2"), ("--calls", "100", "--seconds", "0.5"),
          "metering proxy latency and throughput vs going direct"),
    Bench("import", ("--rows", "200000", "--sample", "50000"), ("--rows", "20000", "--sample", "5000"),
          "`llmtray import` rows/s vs sqlite3's .import"),
    Bench("migrate", ("--rows", "1000000"), ("--rows", "50000"),
          "upgrading a big database to the newest schema vs rewriting its events once and copying the file"),
    Bench("dashboard", ("--sizes", "100k,1M", "--repeat", "3"), ("--sizes", "100k", "--repeat", "1"),
          "every dashboard view's query time and the window's first paint vs summing the event table"),
    Bench("budgets", ("--per-day", "1500", "--calls", "20000"), ("--per-day", "300", "--calls", "2000"),
          "enforcement check and monitor pass vs recomputing every budget"),
    Bench("digest", ("--per-day", "1500", "--repeat", "5"), ("--per-day", "300", "--repeat", "2"),
          "building, rendering and mailing the digest vs raw-event sums and a bare smtplib send"),
    Bench("blocks", ("--per-day", "1500", "--calls", "20000"), ("--per-day", "300", "--calls", "2000"),
          "block check per proxied call, guard pass per commit, alias model filter vs naive and exact"),
    Bench("soak", ("--minutes", "5", "--rate", "500"), ("--minutes", "0.5", "--rate", "300", "--sample", "5"),
          "`serve` under steady traffic: RSS, fds, threads, WAL first vs last window"),
    Bench("agents", ("--mb", "200", "--idle", "60"), ("--mb", "20", "--idle", "5", "--files", "100"),
          "coding agents' logs: cold scan, re-scan, RSS, live latency, idle CPU vs a naive pass and ccusage"),
    Bench("team_watch", ("--events", "1000000"), ("--events", "50000", "--repeat", "10"),
          "the team dashboard's 2-s change poll on PostgreSQL vs max(id)+count(*) and a full count+sum"),
    Bench("team", ("--events", "200000", "--dashboard", "1M"),
          ("--events", "40000", "--dashboard", "100k", "--repeat", "1", "--seconds", "1"),
          "team mode: 8 `serve` processes into one PostgreSQL and the dashboard on it vs COPY, the store alone and SQLite"),
]


@dataclass
class Result:
    bench: Bench
    args: tuple[str, ...]
    code: int | None  # None: timed out
    seconds: float
    stdout: str
    stderr: str


def machine() -> str:
    load = "%.2f %.2f %.2f" % os.getloadavg() if hasattr(os, "getloadavg") else "unknown"
    return f"{os.cpu_count()} cores, load average {load}"


def commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}{' (uncommitted changes)' if dirty else ''}" if head else "unknown"


def run(bench: Bench, args: tuple[str, ...], timeout: float) -> Result:
    env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen"),
           "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
    command = [sys.executable, str(ROOT / "bench" / f"{bench.name}.py"), *args]
    print(f"running {bench.name}: {shlex.join(command[1:])}", file=sys.stderr, flush=True)
    started = time.monotonic()
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its servers and upstreams go with it on a timeout
    try:
        out, err = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        code = None
    return Result(bench, args, code, time.monotonic() - started, out, err)


def as_markdown(text: str) -> str:
    """Markdown tables stay tables; every other run of lines becomes a preformatted block."""
    blocks: list[str] = []
    lines = text.rstrip().splitlines()
    i = 0
    while i < len(lines):
        table = lines[i].lstrip().startswith("|")
        j = i
        while j < len(lines) and lines[j].lstrip().startswith("|") == table:
            j += 1
        chunk = "\n".join(lines[i:j]).strip("\n")
        if chunk.strip():
            blocks.append(chunk if table else f"```\n{chunk}\n```")
        i = j
    return "\n\n".join(blocks)


def report(results: list[Result], quick: bool, started: str, at_start: str) -> str:
    parts = [
        "# llmtray benchmarks",
        f"{started} · {'quick' if quick else 'normal'} settings · commit {commit()} · Python "
        f"{platform.python_version()} on {platform.system()} {platform.machine()}",
        f"Machine at start: {at_start}. At the end: {machine()}. Figures are only comparable within one run "
        "(each bench measures its own baseline alongside); a loaded machine slows both sides.",
        "| bench | what it compares | exit | wall time |\n|---|---|---:|---:|",
    ]
    parts[-1] += "".join(f"\n| [{r.bench.name}](#{r.bench.name}) | {r.bench.what} | "
                         f"{'timeout' if r.code is None else r.code} | {r.seconds:.0f} s |" for r in results)
    for r in results:
        parts.append(f"## {r.bench.name}\n\n`python bench/{r.bench.name}.py {shlex.join(r.args)}` — "
                     f"{r.seconds:.0f} s, exit {'timeout' if r.code is None else r.code}")
        parts.append(as_markdown(r.stdout) or "_(no output)_")
        if r.code != 0 and r.stderr.strip():
            tail = "\n".join(r.stderr.rstrip().splitlines()[-25:])
            parts.append(f"stderr (last lines):\n\n```\n{tail}\n```")
    return "\n\n".join(parts) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the shortest meaningful settings (a few minutes in all)")
    parser.add_argument("--only", metavar="NAMES", help="comma-separated benches to run (default: all)")
    parser.add_argument("--skip", metavar="NAMES", default="", help="comma-separated benches to leave out")
    parser.add_argument("--timeout", type=float, help="seconds per bench (default 600 quick, 2400 normal)")
    parser.add_argument("--out", type=Path, default=OUT,
                        help=f"markdown file to write (default {OUT.relative_to(ROOT)})")
    args = parser.parse_args()
    names = [b.name for b in BENCHES]
    chosen = args.only.split(",") if args.only else names
    skipped = [n for n in args.skip.split(",") if n]
    unknown = [n for n in chosen + skipped if n not in names]
    if unknown:
        parser.error(f"unknown bench {unknown[0]!r}; there are {', '.join(names)}")
    timeout = args.timeout or (600.0 if args.quick else 2400.0)
    started, at_start = datetime.now().strftime("%Y-%m-%d %H:%M"), machine()
    results = [run(b, b.quick if args.quick else b.normal, timeout)
               for b in BENCHES if b.name in chosen and b.name not in skipped]
    text = report(results, args.quick, started, at_start)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    print(f"written to {args.out}", file=sys.stderr)
    return 0 if all(r.code == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

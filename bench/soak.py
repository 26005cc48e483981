"""Soak: `llmtray serve` under steady mixed traffic for a long time — does anything grow?

    python bench/soak.py [--minutes 30] [--rate 500] [--sample 10] [--proxy-rate 5] [--no-hostile] [--json PATH]

Traffic, paced per second: `--rate` events/s posted to /v1/events (60 % in batches of 50 over a
keep-alive connection, 20 % one event per request, 20 % in batches of 10 on a new connection
per request), `--proxy-rate` calls/s through the metering proxy to a local upstream
(`bench/proxy.py --upstream`; JSON and SSE alternately, each stored as an event), and once a
second each: /v1/health, /v1/summary, an invalid batch (400), a wrong token (401), a browser
Origin (403) and a client that hangs up mid-request. Unless `--no-hostile`: a slow reader at all
times (an endless proxied download of 1 MiB chunks, read not at all for 5 s, then dropped) and a
big upload every `--upload-every` seconds (64 MiB streamed to an unrecorded endpoint, or 32 MiB
in a recorded call's body, alternately) — the server's memory must stay flat under both.

Every `--sample` seconds the serve process's RSS, open file descriptors, threads and CPU (from
/proc: Linux only) and the sizes of the database and its WAL are printed as a table row; at the
end the first and last windows (5 minutes, or a third of a shorter run) are compared — the
baseline here is the process itself, early on. RSS grows with the database until SQLite's page
caches are full (32 MB per connection), then flattens: its slope within the last window is the
figure that tells a leak from a cache. Also checked at the end: every acknowledged
event is stored, `PRAGMA integrity_check` is ok, `serve` logged no error and exited cleanly on
SIGTERM (exit status 1 otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ingest import connect, cpu_seconds, event, load, read_status, request  # noqa: E402
from bench.proxy import RawClient  # noqa: E402

HEALTH = b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


# --- the processes ----------------------------------------------------------------------------


def start_upstream() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "proxy.py"), "--upstream"],
                            stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline())  # type: ignore[union-attr]


def start_serve(data: Path, upstream_port: int, log: Path) -> tuple[subprocess.Popen[str], int, str]:
    (data / "config.toml").write_text(f'[proxy.upstreams]\nopenai = "http://127.0.0.1:{upstream_port}"\n')
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "llmtray", "--data-dir", str(data), "serve", "--port", "0"],
                                stdout=subprocess.PIPE, stderr=err, env=env, text=True)
    line = proc.stdout.readline()  # type: ignore[union-attr]  # "llmtray serve: ingest API on http://…:PORT"
    if not line:
        raise SystemExit(f"llmtray serve did not start: {log.read_text()}")
    token = json.loads((data / "ingest.json").read_text())["token"]
    return proc, int(line.rsplit(":", 1)[1]), token


# --- traffic ----------------------------------------------------------------------------------


@dataclass
class Counters:
    """What the clients did, since the last sample and in total."""

    acked: int = 0  # events acknowledged with a 200 on /v1/events
    requests: int = 0
    errors: list[str] = field(default_factory=list)  # unexpected answers or failures (first 20 kept)
    error_count: int = 0
    proxied: int = 0
    latencies: list[float] = field(default_factory=list)  # single-event requests, seconds

    def error(self, text: str) -> None:
        self.error_count += 1
        if len(self.errors) < 20:
            self.errors.append(text)


class Traffic:
    """Paced client threads; `take()` hands over (and resets) the interval's counters."""

    def __init__(self, port: int, token: str, rate: float, proxy_rate: float, hostile: bool = False,
                 upload_every: float = 5.0):
        self.port, self.token = port, token
        self.total = Counters()
        self._interval = Counters()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        plan: list[tuple[str, Callable[[], None], float]] = [
            ("batches", self._keep_alive_batches(50), rate * 0.6 / 50),
            ("singles", self._keep_alive_batches(1), rate * 0.2),
            ("churn", self._fresh_connection_batches(10), rate * 0.2 / 10),
            ("noise", self._noise(), 1.0),
        ]
        if proxy_rate > 0:
            plan.append(("proxy", self._proxy(), proxy_rate))
        if hostile:
            plan += [("slow-reader", self._slow_reader(), 1.0), ("upload", self._upload(), 1.0 / upload_every)]
        self._threads = [threading.Thread(target=self._paced, args=(step, per_s), name=f"soak-{name}", daemon=True)
                         for name, step, per_s in plan if per_s > 0]
        for t in self._threads:
            t.start()

    def _paced(self, step: Callable[[], None], per_s: float) -> None:
        interval, next_at = 1.0 / per_s, time.monotonic()
        while not self._stop.is_set():
            try:
                step()
            except (OSError, RuntimeError, ValueError) as exc:
                self._note(error=f"{type(exc).__name__}: {exc}")
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            elif delay < -1.0:  # fell behind by more than a second: don't burst to catch up
                next_at = time.monotonic()

    def _note(self, *, acked: int = 0, requests: int = 1, error: str | None = None, proxied: int = 0,
              latency: float | None = None) -> None:
        with self._lock:
            for c in (self.total, self._interval):
                c.acked += acked
                c.requests += requests
                c.proxied += proxied
                if error is not None:
                    c.error(error)
                if latency is not None:
                    c.latencies.append(latency)

    def take(self) -> Counters:
        with self._lock:
            taken, self._interval = self._interval, Counters()
        return taken

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    # --- the clients ---------------------------------------------------------------------

    def _events(self, tag: str, n: int, counter: list[int]) -> bytes:
        """`n` fresh events (one bare object when n == 1, as a single hook call would post)."""
        start = counter[0]
        counter[0] += n
        if n == 1:
            return json.dumps(event(tag, start)).encode()
        return json.dumps([event(tag, start + i) for i in range(n)]).encode()

    def _post(self, sock: socket.socket, buf: bytearray, body: bytes, n: int) -> None:
        t0 = time.perf_counter()
        sock.sendall(request(body, self.token))
        status = read_status(sock, buf)
        if status == 200:
            self._note(acked=n, latency=time.perf_counter() - t0 if n == 1 else None)
        else:
            self._note(error=f"POST /v1/events answered {status}")

    def _keep_alive_batches(self, size: int) -> Callable[[], None]:
        state: dict[str, Any] = {"sock": None, "buf": bytearray()}
        counter = [0]
        tag = "single" if size == 1 else "batch"

        def step() -> None:
            if state["sock"] is None:
                state["sock"], state["buf"] = connect(self.port), bytearray()
            try:
                self._post(state["sock"], state["buf"], self._events(tag, size, counter), size)
            except OSError:
                state["sock"].close()
                state["sock"] = None
                raise
        return step

    def _fresh_connection_batches(self, size: int) -> Callable[[], None]:
        counter = [0]

        def step() -> None:
            with connect(self.port) as sock:
                self._post(sock, bytearray(), self._events("churn", size, counter), size)
        return step

    def _proxy(self) -> Callable[[], None]:
        state: dict[str, Any] = {"client": None, "n": 0}

        def step() -> None:
            if state["client"] is None:
                state["client"] = RawClient(self.port, "/proxy/openai/v1/chat/completions")
            state["n"] += 1
            try:
                state["client"].call(stream=state["n"] % 2 == 0)
            except (OSError, RuntimeError):
                state["client"].close()
                state["client"] = None
                raise
            self._note(proxied=1)
        return step

    def _slow_reader(self) -> Callable[[], None]:
        def step() -> None:
            with connect(self.port) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
                sock.sendall(b"GET /proxy/openai/endless HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                time.sleep(5)  # reads nothing: the upstream must be held back, not buffered
            self._note()
        return step

    def _upload(self) -> Callable[[], None]:
        state = {"n": 0}
        piece = bytes(1 << 20)

        def step() -> None:
            state["n"] += 1
            recorded = state["n"] % 2 == 0
            if recorded:  # read whole for metering, within the proxy's budget
                body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "' + b"x" * (32 << 20) + b'"}]}'
                target, size = b"/proxy/openai/v1/chat/completions", len(body)
            else:  # streamed through as it arrives
                body, target, size = b"", b"/proxy/openai/v1/files", 64 << 20
            with connect(self.port) as sock:
                sock.sendall(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n" % (target, size))
                if body:
                    sock.sendall(body)
                else:
                    for _ in range(size >> 20):
                        sock.sendall(piece)
                status = read_status(sock, bytearray())
            if status == 200:
                self._note(proxied=int(recorded))  # a recorded call is stored like any proxied one
            elif recorded and status == 503:  # over the metering budget: refused, nothing stored
                self._note()
            else:
                self._note(error=f"upload answered {status}")
        return step

    def _noise(self) -> Callable[[], None]:
        def expect(data: bytes, status: int) -> None:
            with connect(self.port) as sock:
                sock.sendall(data)
                got = read_status(sock, bytearray())
            if got != status:
                self._note(error=f"expected {status}, got {got}")
            else:
                self._note()

        def step() -> None:
            expect(HEALTH, 200)
            expect(b"GET /v1/summary HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n\r\n"
                   % self.token.encode(), 200)
            expect(request(b'[{"provider": "openai"}]', self.token), 400)
            expect(request(b"[]", self.token + "x"), 401)
            expect(request(b"[]", self.token).replace(b"Host: 127.0.0.1\r\n",
                                                      b"Host: 127.0.0.1\r\nOrigin: https://evil.example\r\n"), 403)
            with connect(self.port) as sock:  # hangs up mid-request
                sock.sendall(request(b'[{"provider": "openai", "model": "m"}]', self.token)[:-10])
        return step


# --- sampling ---------------------------------------------------------------------------------


@dataclass
class Sample:
    t: float
    stored_per_s: float
    rss_mb: float
    fds: int
    threads: int
    db_mb: float
    wal_mb: float
    cpu_pct: float
    p50_ms: float | None
    p99_ms: float | None
    errors: int


def proc_status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def stored(db: Path, where: str = "") -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(f"SELECT count(*) FROM event {where}").fetchone()[0]
    finally:
        conn.close()


def pct(values: list[float], q: int) -> float | None:
    if len(values) < 2:
        return None
    return statistics.quantiles(values, n=100)[q - 1] * 1000


def sample(pid: int, db: Path, t: float, dt: float, rows_before: int, cpu_before: float,
           counters: Counters) -> tuple[Sample, int, float]:
    status = proc_status(pid)
    rows, cpu = stored(db), cpu_seconds(pid) or 0.0
    wal = db.with_name(db.name + "-wal")
    return Sample(
        t=round(t, 1), stored_per_s=(rows - rows_before) / dt, rss_mb=int(status["VmRSS"].split()[0]) / 1024,
        fds=len(os.listdir(f"/proc/{pid}/fd")), threads=int(status["Threads"]), db_mb=db.stat().st_size / 1e6,
        wal_mb=(wal.stat().st_size if wal.exists() else 0) / 1e6, cpu_pct=(cpu - cpu_before) / dt * 100,
        p50_ms=pct(counters.latencies, 50), p99_ms=pct(counters.latencies, 99), errors=counters.error_count,
    ), rows, cpu


def row(s: Sample) -> str:
    def ms(v: float | None) -> str:
        return "–" if v is None else f"{v:.1f}"
    return (f"| {s.t:7.0f} | {s.stored_per_s:8.0f} | {s.rss_mb:7.1f} | {s.fds:4d} | {s.threads:3d} | "
            f"{s.db_mb:7.1f} | {s.wal_mb:7.2f} | {s.cpu_pct:5.1f} | {ms(s.p50_ms)} | {ms(s.p99_ms)} | {s.errors} |")


def windows(samples: list[Sample], seconds: float) -> tuple[list[Sample], list[Sample]]:
    end = samples[-1].t
    first = [s for s in samples if s.t <= samples[0].t + seconds]
    last = [s for s in samples if s.t >= end - seconds]
    return first, last


def summarise(samples: list[Sample], window_s: float) -> list[dict[str, Any]]:
    first, last = windows(samples, window_s)

    def mean(xs: list[Sample], f: str) -> float:
        return statistics.fmean(getattr(s, f) for s in xs)

    def peak(xs: list[Sample], f: str) -> float:
        return max(getattr(s, f) for s in xs)

    def slope(xs: list[Sample], f: str) -> float:  # MB/min within the window: ~0 once caches are full
        span = (xs[-1].t - xs[0].t) / 60
        return (getattr(xs[-1], f) - getattr(xs[0], f)) / span if span > 0 else 0.0

    rows = []
    for label, f, how in (("RSS MB (mean)", "rss_mb", mean), ("RSS MB/min within the window", "rss_mb", slope),
                          ("open fds (max)", "fds", peak),
                          ("threads (max)", "threads", peak), ("database MB (max)", "db_mb", peak),
                          ("WAL MB (max)", "wal_mb", peak),
                          ("CPU % (mean)", "cpu_pct", mean), ("stored events/s (mean)", "stored_per_s", mean)):
        a, b = how(first, f), how(last, f)
        rows.append({"figure": label, "first": a, "last": b, "growth": b - a,
                     "growth_pct": (b - a) / a * 100 if a else 0.0})
    return rows


# --- the run ----------------------------------------------------------------------------------


def run(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    duration, window_s = args.minutes * 60, min(args.window * 60, args.minutes * 60 / 3)
    upstream, up_port = start_upstream()
    log = data / "serve.log"
    serve, port, token = start_serve(data, up_port, log)
    db = data / "llmtray.db"
    samples: list[Sample] = []
    hostile = f", a slow reader and an upload every {args.upload_every:g} s" if args.hostile else ""
    print(f"soak: {args.minutes:g} min at {args.rate:g} events/s + {args.proxy_rate:g} proxied calls/s{hostile}, "
          f"serve pid {serve.pid}; {os.cpu_count()} CPUs, {load()} at start", flush=True)
    print("\n| t (s) | stored/s | RSS MB | fds | thr | DB MB | WAL MB | CPU % | p50 ms | p99 ms | errors |\n"
          "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    traffic = Traffic(port, token, args.rate, args.proxy_rate, args.hostile, args.upload_every)
    try:
        t0 = last_t = time.monotonic()
        rows, cpu = stored(db), cpu_seconds(serve.pid) or 0.0
        while (now := time.monotonic()) - t0 < duration:
            time.sleep(min(args.sample, max(0.0, t0 + duration - now)))
            now = time.monotonic()
            s, rows, cpu = sample(serve.pid, db, now - t0, now - last_t, rows, cpu, traffic.take())
            last_t = now
            samples.append(s)
            print(row(s), flush=True)
    finally:
        traffic.stop()
        time.sleep(0.3)  # the proxy hands its last events to the writer every 50 ms
        serve.send_signal(signal.SIGTERM)
        serve.communicate(timeout=120)
        upstream.terminate()
        upstream.communicate(timeout=30)
    api, proxied_stored = stored(db, "WHERE source = 'api'"), stored(db, "WHERE source = 'proxy'")
    conn = sqlite3.connect(db)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()
    errors_logged = [line for line in log.read_text().splitlines() if " ERROR " in line or "Traceback" in line]
    summary = summarise(samples, window_s)
    total = traffic.total
    checks = {
        "acknowledged": total.acked, "stored_api": api, "lost": max(0, total.acked - api),
        "proxied_calls": total.proxied, "proxied_stored": proxied_stored, "client_errors": total.error_count,
        "first_errors": total.errors[:5], "serve_errors_logged": len(errors_logged),
        "serve_exit": serve.returncode, "integrity": integrity, "window_s": window_s,
    }
    span = f"{window_s / 60:.1f} min" if window_s >= 60 else f"{window_s:.0f} s"
    print(f"\nfirst vs last {span} (baseline: the same process at the start of the run)\n")
    print("| figure | first window | last window | growth |\n|---|---:|---:|---:|")
    for r in summary:
        print(f"| {r['figure']} | {r['first']:.1f} | {r['last']:.1f} | {r['growth']:+.1f} ({r['growth_pct']:+.0f} %) |")
    print(f"\n| check | result |\n|---|---|\n"
          f"| events acknowledged / stored | {total.acked:,} / {api:,} (lost {checks['lost']}) |\n"
          f"| proxied calls / their events stored | {total.proxied:,} / {proxied_stored:,} |\n"
          f"| client-side errors | {total.error_count} {total.errors[:3] if total.errors else ''} |\n"
          f"| errors in serve's log | {len(errors_logged)} {errors_logged[:2] if errors_logged else ''} |\n"
          f"| serve exit on SIGTERM | {serve.returncode} |\n| integrity_check | {integrity} |")
    print(f"\nmachine: {load()} at the end", flush=True)
    return {"samples": [asdict(s) for s in samples], "summary": summary, "checks": checks}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the run (default 30)")
    parser.add_argument("--rate", type=float, default=500.0, help="events/s posted to /v1/events (default 500)")
    parser.add_argument("--proxy-rate", type=float, default=5.0, help="proxied calls/s (default 5; 0: none)")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.add_argument("--no-hostile", dest="hostile", action="store_false",
                        help="leave out the slow readers and big uploads")
    parser.add_argument("--upload-every", type=float, default=5.0, help="seconds between big uploads (default 5)")
    parser.add_argument("--window", type=float, default=5.0,
                        help="minutes compared at the start and the end (default 5; at most a third of the run)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write samples and checks as JSON")
    parser.add_argument("--data-dir", type=Path, metavar="DIR",
                        help="serve's data folder, kept afterwards (default: a temporary one, removed)")
    args = parser.parse_args()
    if not Path("/proc/self/status").exists():
        raise SystemExit("bench/soak.py reads /proc: Linux only")
    if args.data_dir is not None:
        args.data_dir.mkdir(parents=True, exist_ok=True)
        result = run(args, args.data_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="llmtray-soak-") as tmp:
            result = run(args, Path(tmp))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    checks = result["checks"]
    ok = checks["lost"] == 0 and checks["integrity"] == "ok" and checks["serve_exit"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

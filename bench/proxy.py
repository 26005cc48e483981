"""Metering proxy overhead, against going direct to the same upstream in the same run.

    python bench/proxy.py [--calls 400] [--seconds 2]

Three processes on loopback: a minimal asyncio upstream (JSON answers, SSE streams), `llmtray
serve` with `[proxy.upstreams] openai` pointed at it, and this client, which speaks raw
HTTP/1.1 over keep-alive sockets so its own overhead stays out of the figures. Prints, direct vs
through the proxy: latency of non-streamed calls (p50/p99, interleaved so drift hits both), time
to first byte of SSE streams, requests/s with 8 concurrent clients, and the serve process's CPU
per proxied call. For scale: one bare call to the upstream through each candidate for the
proxy's own hop (httpx.AsyncClient, which it used first; httpcore's pool directly; a bare
aiohttp.ClientSession; llmtray's UpstreamClient on aiohttp, which it uses now) and a CPU
calibration line. Last, the per-request budget
check (cached, and recomputed after a commit) with 20,000 events and 3 enforced budgets.
Target: under 1 ms added at p50.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

USAGE = {"prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163,
         "prompt_tokens_details": {"cached_tokens": 1024}}
JSON_BODY = json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"},
                                     "finish_reason": "stop"}], "usage": USAGE}).encode()
CHUNK = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o-mini-2024-07-18", "usage": None}
SSE_EVENTS = ([b"data: " + json.dumps({**CHUNK, "choices": [{"index": 0, "delta": {"content": w}}]}).encode()
               + b"\n\n" for w in ("Hel", "lo", "!", " How", " are", " you?")]
              + [b"data: " + json.dumps({**CHUNK, "choices": [], "usage": USAGE}).encode() + b"\n\n",
                 b"data: [DONE]\n\n"])


ENDLESS_CHUNK = b"100000\r\n" + bytes(1 << 20) + b"\r\n"


# --- the upstream (run with --upstream, prints its port) -------------------------------------


async def _upstream_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            body = await reader.readexactly(length)
            if head.startswith(b"GET /endless "):  # bench/soak.py's slow readers: 1 MiB chunks until they leave
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n")
                while True:
                    writer.write(ENDLESS_CHUNK)
                    await writer.drain()
            if b'"stream": true' in body or b'"stream":true' in body:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
                for event in SSE_EVENTS:
                    writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(JSON_BODY), JSON_BODY))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def _serve_upstream() -> None:
    server = await asyncio.start_server(_upstream_conn, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


# --- a raw keep-alive client ----------------------------------------------------------------


class RawClient:
    """One keep-alive connection; `call` returns (seconds to first body byte, seconds total)."""

    def __init__(self, port: int, path: str):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.path = path.encode()
        self.buf = b""

    def call(self, stream: bool) -> tuple[float, float]:
        body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                           **({"stream": True, "stream_options": {"include_usage": True}} if stream else {})}).encode()
        t0 = time.perf_counter()
        self.sock.sendall(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          b"Authorization: Bearer sk-bench\r\nContent-Length: %d\r\n\r\n%s" % (self.path, len(body), body))
        while b"\r\n\r\n" not in self.buf:
            self._recv()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(head.decode("latin-1"))
        first: float | None = None
        if b"chunked" in head.lower():
            while True:
                while b"\r\n" not in self.buf:
                    self._recv()
                size_line, _, rest = self.buf.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                while len(rest) < size + 2:
                    self.buf = rest
                    self._recv()
                    rest = self.buf
                first = first or time.perf_counter()
                self.buf = rest[size + 2:]
                if size == 0:
                    break
        else:
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:")))
            while len(self.buf) < length:
                self._recv()
            first = time.perf_counter()
            self.buf = self.buf[length:]
        end = time.perf_counter()
        return first - t0, end - t0

    def _recv(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        self.buf += data

    def close(self) -> None:
        self.sock.close()


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] * 1000


def latencies(direct: RawClient, proxied: RawClient, n: int, stream: bool) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"direct": [], "proxy": []}
    for client in (direct, proxied):  # warm up both paths (connection pools, first-call imports)
        for _ in range(20):
            client.call(stream)
    for _ in range(n):
        for name, client in (("direct", direct), ("proxy", proxied)):
            first, total = client.call(stream)
            out[name].append(first if stream else total)
    return out


def throughput(port: int, path: str, seconds: float, clients: int = 8) -> float:
    counts = [0] * clients
    stop = time.perf_counter() + seconds

    def run(i: int) -> None:
        c = RawClient(port, path)
        try:
            while time.perf_counter() < stop:
                c.call(False)
                counts[i] += 1
        finally:
            c.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / seconds


def enforcement_cost(rounds: int = 2000) -> tuple[float, float]:
    """µs per budget check: cached, and recomputed (after each commit) — 20,000 events, 3 enforced budgets."""
    import sqlite3
    from datetime import UTC, datetime, timedelta

    from llmtray.core.budgets import Budget, BudgetBook, Scope, exhausted_enforced_budget, invalidate_enforcement_cache
    from llmtray.core.commits import Committed
    from llmtray.core.db import open_db
    from llmtray.core.events import parse_event
    from llmtray.core.queries import Queries
    from llmtray.core.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "llmtray.db"
        store = Store.open(path)
        now = datetime.now(UTC)
        store.add([parse_event({"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 1000, "output_tokens": 50,
                                "feature": f"f{i % 7}", "ts": (now - timedelta(minutes=i)).isoformat()})
                   for i in range(20_000)], "api")
        store.close()
        db = open_db(path)
        book = BudgetBook(db)
        for name, scope in (("all", Scope()), ("openai", Scope(provider="openai")), ("f1", Scope(feature="f1"))):
            book.add(Budget(name, 10**12, "month", scope, enforce=True))
        db.close()
        conn = sqlite3.connect(path)
        queries = Queries(conn)
        values = {"provider": "openai", "model": "gpt-4o-mini", "feature": "f3", "tags": {}}
        exhausted_enforced_budget(queries, values)
        t0 = time.perf_counter()
        for _ in range(rounds):
            exhausted_enforced_budget(queries, values)
        cached = (time.perf_counter() - t0) / rounds * 1e6
        t0 = time.perf_counter()
        for _ in range(rounds // 20):
            invalidate_enforcement_cache(Committed(1, 0, None, None))  # what the proxy's commit listener does
            exhausted_enforced_budget(queries, values)
        fresh = (time.perf_counter() - t0) / (rounds // 20) * 1e6
        conn.close()
        return cached, fresh


def client_floors(port: int, calls: int) -> dict[str, tuple[float, float]]:
    """(p50 ms, CPU µs per call) of one bare call to the upstream through each candidate for the
    proxy's upstream hop: httpx.AsyncClient (what the proxy used first), httpcore's pool directly
    (httpx without its client layers), a bare aiohttp.ClientSession (the floor of what the proxy
    uses now) and llmtray's UpstreamClient on it (the session per origin, headers as sent)."""
    import aiohttp
    import httpcore
    import httpx

    from llmtray.ingest.upstream import Origin, Timeouts, UpstreamClient, body_pieces

    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    headers = [(b"Content-Type", b"application/json"), (b"Authorization", b"Bearer sk-bench")]
    text_headers = [(k.decode(), v.decode()) for k, v in headers]

    async def measure(call: Callable[[], Awaitable[object]]) -> tuple[float, float]:
        for _ in range(20):
            await call()
        times = []
        cpu = time.process_time()
        for _ in range(calls):
            t0 = time.perf_counter()
            await call()
            times.append(time.perf_counter() - t0)
        return pct(times, 50), (time.process_time() - cpu) / calls * 1e6

    async def run() -> dict[str, tuple[float, float]]:
        out = {}
        async with httpx.AsyncClient() as client:
            out["httpx.AsyncClient"] = await measure(lambda: client.post(url, content=body, headers=headers))
        async with httpcore.AsyncConnectionPool() as pool:
            out["httpcore pool"] = await measure(lambda: pool.request("POST", url, headers=headers, content=body))
        async with aiohttp.ClientSession() as session:
            async def bare() -> bytes:
                async with session.post(url, data=body, headers=text_headers) as response:
                    return await response.read()

            out["aiohttp.ClientSession"] = await measure(bare)
        ours = UpstreamClient()
        origin, timeouts = Origin("http", "127.0.0.1", port), Timeouts()

        async def own() -> bytes:
            response = await ours.send("POST", origin, "/v1/chat/completions", text_headers, body, timeouts)
            try:
                return b"".join([piece async for piece in body_pieces(response)])
            finally:
                response.release()

        out["llmtray UpstreamClient"] = await measure(own)
        await ours.aclose()
        return out

    return asyncio.run(run())


def process_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def calibration() -> float:
    """µs for sum(range(1000)): ~10 on a recent laptop; scale the other figures by it."""
    t0 = time.perf_counter()
    for _ in range(2000):
        sum(range(1000))
    return (time.perf_counter() - t0) / 2000 * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400, help="calls per path for the latency figures")
    parser.add_argument("--seconds", type=float, default=2.0, help="duration of each throughput run")
    parser.add_argument("--upstream", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream:
        asyncio.run(_serve_upstream())
        return 0

    upstream = subprocess.Popen([sys.executable, __file__, "--upstream"], stdout=subprocess.PIPE, text=True)
    serve = None
    with tempfile.TemporaryDirectory() as data:
        try:
            up_port = int(upstream.stdout.readline())  # type: ignore[union-attr]
            Path(data, "config.toml").write_text(f'[proxy.upstreams]\nopenai = "http://127.0.0.1:{up_port}"\n')
            env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
            serve = subprocess.Popen([sys.executable, "-m", "llmtray", "--data-dir", data, "serve", "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
            line = serve.stdout.readline()  # type: ignore[union-attr]
            proxy_port = int(line.rsplit(":", 1)[1])
            direct = RawClient(up_port, "/v1/chat/completions")
            proxied = RawClient(proxy_port, "/proxy/openai/v1/chat/completions")
            print(f"metering proxy vs direct, same loopback upstream ({args.calls} interleaved calls each); "
                  f"this machine: sum(range(1000)) = {calibration():.0f} µs (a recent laptop: ~10 µs)")
            for label, stream in (("non-streamed call latency", False), ("SSE time to first byte", True)):
                res = latencies(direct, proxied, args.calls, stream)
                d50, d99, p50, p99 = (pct(res["direct"], 50), pct(res["direct"], 99), pct(res["proxy"], 50),
                                      pct(res["proxy"], 99))
                print(f"  {label:<27} direct p50 {d50:6.3f} ms  p99 {d99:6.3f} ms | proxy p50 {p50:6.3f} ms  "
                      f"p99 {p99:6.3f} ms | added p50 {p50 - d50:6.3f} ms  p99 {p99 - d99:6.3f} ms")
            cpu0 = process_cpu(serve.pid)
            for _ in range(args.calls):
                proxied.call(False)
            time.sleep(0.3)  # the batched events are stored
            per_call = (process_cpu(serve.pid) - cpu0) / args.calls * 1e6
            direct.close()
            proxied.close()
            print(f"  {'CPU per proxied call':<27} serve process {per_call:6.0f} µs (relay, metering, storing)")
            for name, (floor_p50, floor_cpu) in client_floors(up_port, args.calls).items():
                print(f"  {'one bare upstream call':<27} {name:<23} p50 {floor_p50:6.3f} ms  {floor_cpu:5.0f} µs CPU")
            d = throughput(up_port, "/v1/chat/completions", args.seconds)
            p = throughput(proxy_port, "/proxy/openai/v1/chat/completions", args.seconds)
            print(f"  {'requests/s, 8 clients':<27} direct {d:8.0f}          | proxy {p:8.0f}          "
                  f"| {p / d * 100:5.1f} % of direct (every proxied call also stored)")
            cached, fresh = enforcement_cost()
            print(f"  {'budget check per request':<27} cached {cached:6.1f} µs | after a commit {fresh:7.1f} µs "
                  "(20,000 events, 3 enforced budgets)")
        finally:
            for proc in (serve, upstream):
                if proc is not None:
                    proc.terminate()
                    proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())

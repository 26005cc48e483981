"""OTLP receiver throughput: GenAI spans stored per second through the real `llmtray serve`.

Prints, in one run:
  - end to end: requests of 1,000 GenAI spans (protobuf and OTLP/JSON) posted to /v1/traces from one
    keep-alive client, answered after the commit; spans stored per second;
  - the decode-only floor of each encoding (bytes → neutral records), the mapping stage (records →
    validated events), both in this process;
  - the naive baseline: `google.protobuf.json_format.ParseDict` on the JSON (with the hex-id
    fix-up it needs) instead of the hand-written walker;
  - the store's own ceiling for these calls: the same events as llmtray JSON through
    POST /v1/events in batches of 1,000 (what OTLP can at best approach: it ends in the same writer).

    python bench/otel.py [--requests 20] [--spans 1000]
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from ingest import connect, cpu_seconds, load, read_status, start_server  # noqa: E402

TARGET_PB, TARGET_JSON = 20_000, 5_000
T0 = 1_767_350_000_000_000_000


def attr(key: str, value: object) -> dict:
    return {"key": key, "value": {"intValue": value} if isinstance(value, int) else {"stringValue": value}}


def payload(tag: str, n: int) -> dict:
    """One export request of `n` leaf chat spans as opentelemetry-instrumentation-openai-v2 sends them."""
    spans = []
    for i in range(n):
        start = T0 + (hash((tag, i)) % 10**12)
        spans.append({
            "traceId": f"{hash((tag, 't', i)) & (2**128 - 1):032x}", "spanId": f"{(i + 1) * 7919 & (2**64 - 1):016x}",
            "name": "chat gpt-4o-mini", "kind": 3, "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(start + 812_000_000), "status": {},
            "attributes": [attr("gen_ai.operation.name", "chat"), attr("gen_ai.provider.name", "openai"),
                           attr("gen_ai.request.model", "gpt-4o-mini"), attr("gen_ai.response.model", "gpt-4o-mini"),
                           attr("gen_ai.response.id", f"chatcmpl-{tag}-{i}"),
                           attr("gen_ai.usage.input_tokens", 1200 + i % 100),
                           attr("gen_ai.usage.cache_read.input_tokens", 100),
                           attr("gen_ai.usage.output_tokens", 300), attr("server.address", "api.openai.com")]})
    return {"resourceSpans": [{"resource": {"attributes": [attr("service.name", "bench-app"),
                                                           attr("deployment.environment.name", "prod")]},
                               "scopeSpans": [{"scope": {"name": "opentelemetry.instrumentation.openai_v2"},
                                               "spans": spans}]}]}


def hex_to_b64(obj: object) -> object:
    if isinstance(obj, dict):
        return {k: base64.b64encode(bytes.fromhex(v)).decode() if k in ("traceId", "spanId") else hex_to_b64(v)
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [hex_to_b64(v) for v in obj]
    return obj


def to_protobuf(data: dict) -> bytes:
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    return json_format.ParseDict(hex_to_b64(copy.deepcopy(data)), ExportTraceServiceRequest()).SerializeToString()


def http_request(path: str, body: bytes, token: str, media: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: {media}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def post_all(port: int, requests: list[bytes]) -> float:
    """Send each request on one keep-alive connection, waiting for each answer; seconds taken."""
    sock, buf = connect(port), bytearray()
    t0 = time.perf_counter()
    for req in requests:
        sock.sendall(req)
        status = read_status(sock, buf)
        if status != 200:
            raise SystemExit(f"the server answered {status}")
    elapsed = time.perf_counter() - t0
    sock.close()
    return elapsed


def best_of(fn, rounds: int = 3) -> float:  # noqa: ANN001
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def in_process(pb: bytes, js: bytes, n: int) -> dict[str, float]:
    from datetime import UTC, datetime

    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from llmtray.core.events import event_errors
    from llmtray.otel.decode import decode
    from llmtray.otel.emitters import calls

    records = decode("traces", "application/x-protobuf", None, pb).records

    def mapping() -> None:
        now = datetime.now(UTC)
        for m in calls(records)[0]:
            event_errors(m.event, now=now)

    return {
        "decode protobuf": n / best_of(lambda: decode("traces", "application/x-protobuf", None, pb)),
        "decode JSON": n / best_of(lambda: decode("traces", "application/json", None, js)),
        "naive JSON (json_format)": n / best_of(lambda: json_format.ParseDict(
            hex_to_b64(json.loads(js)), ExportTraceServiceRequest())),
        "map + validate": n / best_of(mapping),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--spans", type=int, default=1000)
    args = ap.parse_args()
    n, r = args.spans, args.requests
    print(f"bench/otel.py: {r} requests × {n} GenAI spans per encoding ({load()})")
    sample = payload("sample", n)
    sample_js, sample_pb = json.dumps(sample).encode(), to_protobuf(sample)
    print(f"one request: protobuf {len(sample_pb) / 1024:,.0f} KiB, JSON {len(sample_js) / 1024:,.0f} KiB")
    for label, rate in in_process(sample_pb, sample_js, n).items():
        print(f"  in process, {label + ':':28s} {rate:10,.0f} spans/s")

    tmp = Path(tempfile.mkdtemp(prefix="llmtray-bench-otel-"))
    proc, port, token = start_server(tmp / "serve")
    try:
        results = {}
        for media, encode in (("application/x-protobuf", to_protobuf), ("application/json",
                                                                        lambda d: json.dumps(d).encode())):
            reqs = [http_request("/v1/traces", encode(payload(f"{media[-4:]}{k}", n)), token, media)
                    for k in range(r)]
            cpu0 = cpu_seconds(proc.pid)
            elapsed = post_all(port, reqs)
            cpu1 = cpu_seconds(proc.pid)
            results[media] = (n * r / elapsed, None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) / (n * r))
        from llmtray.core.events import parse_event  # noqa: F401 - same events via /v1/events
        from llmtray.otel.decode import decode
        from llmtray.otel.emitters import calls

        api_reqs = []
        for k in range(r):
            records = decode("traces", "application/json", None, json.dumps(payload(f"api{k}", n)).encode()).records
            body = json.dumps({"events": [m.event for m in calls(records)[0]]}).encode()
            api_reqs.append(http_request("/v1/events", body, token, "application/json"))
        api_eps = n * r / post_all(port, api_reqs)
    finally:
        proc.terminate()
        proc.wait(30)
    for media, (rate, cpu) in results.items():
        target = TARGET_PB if "protobuf" in media else TARGET_JSON
        cpu_text = f"; server CPU {cpu * 1e6:,.0f} µs/span" if cpu is not None else ""
        print(f"end to end, {media:24s} {rate:10,.0f} spans/s stored (target ≥ {target:,}){cpu_text}")
    print(f"store ceiling: the same calls as llmtray JSON via POST /v1/events: {api_eps:10,.0f} events/s")


if __name__ == "__main__":
    main()

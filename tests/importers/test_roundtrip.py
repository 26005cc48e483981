"""`llmtray export` → `llmtray import` is lossless: same events, costs, cost sources, pricing
versions, matched models and sources — for JSON lines and CSV alike."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from llmtray.commands.export import write
from llmtray.core.events import parse_event
from llmtray.core.pricing import Priced, Pricer, PriceOverride
from llmtray.core.store import Batch, Store, event_json, iter_event_rows
from llmtray.importers.engine import Importer

pytestmark = pytest.mark.both_backends  # the same suite on SQLite and PostgreSQL


def _fill(store: Store) -> None:
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    def ev(ts: datetime, **kw: object) -> object:
        return parse_event({"provider": "openai", "model": "gpt-4o-mini", "ts": ts.isoformat(), **kw})

    store.add([
        ev(now, id="h1", input_tokens=1200, output_tokens=80, cache_read_tokens=1000, feature="chat",
           user="u1", project="p", env="prod", tags={"team": "a", "route": "/x, y"}, latency_ms=123.456,
           ttft_ms=7.5, stream=True, request_id="req_1", service_tier="flex"),
        ev(now + timedelta(microseconds=123457), input_tokens=5, output_tokens=5),  # no id
        ev(now + timedelta(seconds=1), id="h3", status="error", error="upstream 500, \"bad\"\nnewline",
           stream=False),
    ], "hook")
    store.add([parse_event({"id": "p1", "ts": now.isoformat(), "provider": "acme", "model": "secret-1",
                            "input_tokens": 10, "operation": "embeddings"})], "proxy")  # unpriced
    store.add([parse_event({"id": "r1", "ts": now.isoformat(), "provider": "openrouter", "model": "x/y",
                            "requests": 40, "cost_usd": "0.123456789", "reasoning_tokens": 3, "output_tokens": 9})],
              "import:openrouter-activity")
    # a cost computed under a user override: the import must keep it, not re-price with defaults
    override = Store(store.db, Pricer([PriceOverride("openai", "gpt-4o", {"input_mtok": Decimal("1"),
                                                                          "output_mtok": Decimal("2")}, None)]))
    override.add([parse_event({"id": "o1", "ts": now.isoformat(), "provider": "openai", "model": "gpt-4o",
                               "input_tokens": 1_000_000})], "api")
    store.add_many([Batch([parse_event({"id": "old", "ts": now.isoformat(), "provider": "openai",
                                        "model": "gpt-4o-mini", "input_tokens": 1})], "api",
                          priced=[Priced(42, "computed", "genai-prices 0.1.0", "gpt-4o-mini")])])


def _events(store: Store) -> list[dict]:
    return [event_json(r) for r in iter_event_rows(store.conn)]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_import_round_trip_is_lossless(store, tmp_path, fmt):
    _fill(store)
    original = _events(store)
    assert {e["cost_source"] for e in original} == {"computed", "unpriced", "reported"}
    path = tmp_path / f"export.{fmt}"
    with open(path, "w", encoding="utf-8", newline="") as f:
        write(store.conn, f, fmt)

    target = Store.open(tmp_path / "restored" / "llmtray.db")
    try:
        result = Importer(target).run(path)
        assert (result.format, result.state, result.error_count, result.imported) == (f"llmtray-{fmt}", "done", 0, 7)
        restored = _events(target)
        # the one event without an id got a deterministic one; everything else is identical
        assert [e.get("id") for e in original].count(None) == 1
        generated = [e["id"] for e in restored if e["id"].startswith("llmtray:")]
        assert len(generated) == 1
        strip = lambda events: [{k: v for k, v in e.items() if not (k == "id" and (v is None or v.startswith("llmtray:")))}  # noqa: E731
                                for e in events]
        assert strip(restored) == strip(original)
        assert Importer(target).run(path).imported == 0  # and a second import adds nothing

        again = io.StringIO()
        write(target.conn, again, fmt)
        reimported = Store.open(tmp_path / "twice" / "llmtray.db")
        try:
            (tmp_path / f"again.{fmt}").write_text(again.getvalue(), encoding="utf-8")
            Importer(reimported).run(tmp_path / f"again.{fmt}")
            assert _events(reimported) == restored  # stable from the second generation on
        finally:
            reimported.close()
    finally:
        target.close()

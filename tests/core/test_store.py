"""The store on a real SQLite file: exact money, idempotence, migrations, concurrent readers."""

from __future__ import annotations

import random
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from llmtray.core import db as dbmod
from llmtray.core.errors import SchemaTooNewError
from llmtray.core.events import UsageEvent, parse_event
from llmtray.core.money import usd_to_nanos
from llmtray.core.pricing import Pricer, load_overrides
from llmtray.core.store import COLUMNS, Store, from_us, to_us

pytestmark = pytest.mark.both_backends  # the same suite on SQLite and PostgreSQL

T0 = datetime(2026, 1, 10, 12, tzinfo=UTC)


def ev(i: int, **kw) -> UsageEvent:
    base = {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 1000 + i, "output_tokens": 10,
            "ts": (T0 + timedelta(minutes=i)).isoformat()}
    base.update(kw)
    return parse_event(base, now=T0 + timedelta(days=400))


def sums(conn: sqlite3.Connection) -> tuple[int, int, int]:
    events = conn.execute("SELECT count(*), coalesce(sum(cost_nanos), 0) FROM event").fetchone()
    rollup = conn.execute("SELECT coalesce(sum(cost_nanos), 0) FROM rollup").fetchone()
    return events[0], events[1], rollup[0]


def test_exact_sums_over_100k_random_costs(store: Store):
    rng = random.Random(7)
    expected = Decimal(0)
    for chunk in range(20):
        batch = []
        for i in range(5000):
            amount = Decimal(rng.randrange(0, 5 * 10**9)) / 10**9  # up to $5 with 9 decimals
            expected += amount
            batch.append(ev(chunk * 5000 + i, cost_usd=str(amount), feature=f"f{i % 7}"))
        store.add(batch, "api")
    n, event_sum, rollup_sum = sums(store.conn)
    assert n == 100_000
    assert event_sum == rollup_sum == usd_to_nanos(expected)
    # the float sum of the same amounts is not exact — which is why money is an integer here
    assert Decimal(event_sum) / 10**9 == expected


def test_duplicate_ids_are_counted_not_stored(store: Store):
    first = store.add([ev(1, id="a"), ev(2, id="b"), ev(3)], "api")
    again = store.add([ev(1, id="a"), ev(4, id="c"), ev(5, id="c")], "api")
    assert (first.accepted, first.duplicates) == (3, 0)
    assert (again.accepted, again.duplicates) == (1, 2)  # "a" stored before, second "c" repeats in-batch
    assert store.conn.execute("SELECT count(*) FROM event").fetchone()[0] == 4


def test_group_commit_returns_one_result_per_batch(store: Store):
    from llmtray.core.store import Batch

    results = store.add_many([Batch([ev(1, id="x")], "api"), Batch([ev(1, id="x"), ev(2)], "hook")])
    assert [(r.accepted, r.duplicates) for r in results] == [(1, 0), (1, 1)]


def test_tags_and_rollups_follow_dataset_removal(store: Store):
    store.add([ev(i, tags={"team": "a"}) for i in range(10)], "api")
    before = (sums(store.conn), store.conn.execute("SELECT sum(events), sum(cost_nanos) FROM tag_rollup").fetchone())
    ds = store.create_dataset("usage.csv", "openai-usage", "/tmp/usage.csv")
    store.add([ev(i, tags={"team": "a"}, model="gpt-4o") for i in range(5)], "import:openai-usage", ds)
    assert sums(store.conn)[0] == 15
    assert store.remove_dataset(ds).removed == 5
    after = (sums(store.conn), store.conn.execute("SELECT sum(events), sum(cost_nanos) FROM tag_rollup").fetchone())
    assert after == before
    assert store.conn.execute("SELECT count(*) FROM event_tag").fetchone()[0] == 10


def test_reprice_after_new_override_updates_rollups(store: Store, data_dir: Path):
    store.add([ev(i, provider="acme", model="big") for i in range(4)], "api")
    assert store.conn.execute("SELECT count(*) FROM event WHERE cost_source = 'unpriced'").fetchone()[0] == 4
    (data_dir / "pricing.toml").write_text("[[model]]\nprovider='acme'\nmodel='big'\ninput_mtok=1\noutput_mtok=2\n")
    store.pricer = Pricer(load_overrides(data_dir / "pricing.toml"))
    examined, changed = store.reprice()
    assert (examined, changed) == (4, 4)
    # 4 × (input (1000..1003) × $1/M + 10 × $2/M)
    expected = sum(usd_to_nanos(Decimal(1000 + i) / 10**6 + Decimal(20) / 10**6) for i in range(4))
    assert sums(store.conn)[1:] == (expected, expected)
    assert store.conn.execute("SELECT sum(unpriced) FROM rollup").fetchone()[0] == 0


def test_reprice_back_to_unpriced_updates_rollups(store: Store, data_dir: Path):
    """An override taken away: the events lose their price (no price-data version, no matched
    model: NULL names in the dictionary's trigger) and the rollups count them unpriced again."""
    (data_dir / "pricing.toml").write_text("[[model]]\nprovider='acme'\nmodel='big'\ninput_mtok=1\noutput_mtok=2\n")
    store.pricer = Pricer(load_overrides(data_dir / "pricing.toml"))
    store.add([ev(i, provider="acme", model="big") for i in range(3)], "api")
    assert sums(store.conn)[1] > 0
    store.pricer = Pricer()
    assert store.reprice() == (3, 3)
    assert sums(store.conn)[1:] == (0, 0)
    assert store.conn.execute("SELECT sum(unpriced) FROM rollup").fetchone()[0] == 3
    assert store.conn.execute("SELECT DISTINCT cost_source, pricing_version, priced_model FROM event").fetchall() == [
        ("unpriced", None, None)]


def test_migration_from_v1_keeps_data_and_backs_up(tmp_path: Path):
    path = tmp_path / "old.db"
    assert dbmod.migrate(path, upto=1) == 1
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO event (event_id, ts, received, provider, model, input_tokens, cost_nanos, cost_source, source)"
        " VALUES ('old-1', ?, ?, 'openai', 'gpt-4o', 100, 250, 'computed', 'api')",
        (to_us(T0), to_us(T0)),
    )
    conn.execute("INSERT INTO event_tag (event, key, value) VALUES (1, 'team', 'a')")
    conn.commit()
    conn.close()
    store = Store.open(path)
    try:
        assert dbmod.schema_version(store.conn) == dbmod.MIGRATIONS[-1].version
        assert store.conn.execute("SELECT event_id, cost_nanos FROM event").fetchall() == [("old-1", 250)]
        assert store.conn.execute("SELECT sum(events), sum(cost_nanos) FROM rollup").fetchone() == (1, 250)
        assert store.conn.execute("SELECT key, value, cost_nanos FROM tag_rollup").fetchall() == [("team", "a", 250)]
        assert (tmp_path / "old.db.before-v2.bak").exists()
        # the new schema keeps working on migrated data
        assert store.add([ev(1, id="old-1"), ev(2)], "api").duplicates == 1
    finally:
        store.close()


def test_replaced_event_mirrors_event_and_its_migration_copies_nothing_aside(tmp_path: Path):
    """`--overlap replace` copies `event` rows into `replaced_event` column for column: a
    migration that changes one table must change the other. Adding that empty table is no
    reason to copy a multi-GB database aside first."""
    path = tmp_path / "v5.db"
    assert dbmod.migrate(path, upto=5) == 5
    assert dbmod.migrate(path, upto=9) == 9  # 6 to 9 add tables only
    assert sorted(p.name for p in tmp_path.iterdir() if ".bak" in p.name) == []
    assert dbmod.migrate(path) == dbmod.MIGRATIONS[-1].version
    conn = sqlite3.connect(path)
    try:
        def columns(table: str) -> list[str]:
            return [name for _, name, *_ in conn.execute(f"PRAGMA table_info({table})")]
        assert columns("replaced_event") == ["replaced_by", *columns("event")] == ["replaced_by", *COLUMNS]
    finally:
        conn.close()


def test_newer_schema_is_refused_untouched(tmp_path: Path):
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE keep (x)")
    conn.execute("PRAGMA user_version = 999")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaTooNewError, match="schema version 999"):
        Store.open(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 999
    conn.close()


def test_writer_and_reader_threads_never_see_partial_batches(data_dir: Path):
    path = data_dir / "llmtray.db"
    writer = Store.open(path)
    seen: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        try:
            reader = Store.open(path)  # its own connection, as every thread must have
            while not done.is_set():
                seen.append(reader.conn.execute("SELECT count(*) FROM event").fetchone()[0])
            reader.close()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    t = threading.Thread(target=read)
    t.start()
    try:
        for b in range(50):
            writer.add([ev(b * 100 + i) for i in range(100)], "api")
    finally:
        done.set()
        t.join()
        writer.close()
    assert not errors
    assert seen and all(n % 100 == 0 for n in seen)  # whole batches only


def test_time_round_trip_is_exact():
    ts = datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert from_us(to_us(ts)) == ts


@pytest.mark.parametrize("padding", [0, 40], ids=["small batches", "large batches"])
def test_every_field_round_trips_whichever_columns_a_batch_leaves_to_defaults(store: Store, padding: int):
    """A large batch binds only the optional columns some row sets; the rest come from the
    schema's DEFAULTs. Rows with every field set, none set, and duplicates with tags (skipped by
    the unique index) must all read back exactly as sent, and the tag rollup must count only
    stored rows — in small batches (every column bound) and large ones alike."""
    from llmtray.core.store import event_json, iter_event_rows

    pad = [ev(1000 + i, id=f"pad{i}") for i in range(padding)]
    full = dict(id="full", operation="responses", input_tokens=900, cache_read_tokens=100, cache_write_tokens=50,
                cache_write_1h_tokens=20, output_tokens=80, reasoning_tokens=30, requests=3, service_tier="flex",
                latency_ms=12.5, ttft_ms=3.0, status="error", error="boom", stream=True, feature="f", user="u",
                project="p", env="prod", tags={"team": "a", "plan": "pro"}, request_id="req-1", cost_usd="0.5")
    bare = [ev(i) for i in range(3)]  # only the required fields: every optional column at its default
    first = store.add(bare + pad, "api")
    second = store.add([ev(10, **full), ev(11, id="t1", tags={"team": "b"}), ev(12, id="t1", tags={"team": "c"}),
                        *pad], "hook")
    third = store.add([ev(10, **full), *pad, ev(13, id="t2", tags={"team": "d"})], "hook")
    assert (first.accepted, second.accepted, second.duplicates, third.accepted, third.duplicates) == (
        3 + padding, 2, 1 + padding, 1, 1 + padding)
    stored = [event_json(row, include_meta=False) for row in iter_event_rows(store.conn)]
    sent = [e.to_json() for e in [*bare, ev(10, **full), ev(11, id="t1", tags={"team": "b"}),
                                  ev(13, id="t2", tags={"team": "d"}), *pad]]
    for s in sent:
        s.pop("cost_usd", None)
    for s in stored:
        s.pop("cost_usd", None)
    assert stored == sent
    tags = store.conn.execute("SELECT key, value, events FROM tag_rollup ORDER BY key, value").fetchall()
    assert tags == [("plan", "pro", 1), ("team", "a", 1), ("team", "b", 1), ("team", "d", 1)]
    assert store.conn.execute("SELECT count(*) FROM event_tag").fetchone()[0] == 4


def test_import_ids_are_never_reused(store: Store):
    """A removed import's id is not handed to the next one: an import of that id still running
    elsewhere then fails on the foreign key instead of writing into the new import."""
    first = store.create_dataset("a.csv", "generic-csv", None)
    second = store.create_dataset("b.csv", "generic-csv", None)
    store.remove_dataset(second)
    third = store.create_dataset("c.csv", "generic-csv", None)
    assert (first, second, third) == (1, 2, 3)
    assert isinstance(store.add([ev(1)], "import:generic-csv", second), sqlite3.IntegrityError)


def test_a_repeated_id_and_one_hashed_alike_in_one_batch(store: Store, monkeypatch: pytest.MonkeyPatch):
    """A 64-bit hash collision (forced): with `a` stored, a batch holding `a` again and `b`,
    hashed like `a`, stores `b` (without a hash) and counts `a` as the duplicate it is."""
    from llmtray.core import compact

    real = compact.key_hash
    monkeypatch.setattr(compact, "key_hash", lambda event_id: real("a" if event_id == "b" else event_id))
    assert store.add([ev(0, id="a")], "api").accepted == 1
    result = store.add([ev(1, id="a"), ev(2, id="b")], "api")
    assert (result.accepted, result.duplicates) == (1, 1)
    assert sorted(r[0] for r in store.conn.execute("SELECT event_id FROM event")) == ["a", "b"]

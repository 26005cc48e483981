"""`llmtray db copy --to URL`: a local history into the team database, exactly, once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from llmtray.cli import main
from llmtray.core import dburl
from llmtray.core.events import parse_event
from llmtray.core.queries import Queries
from llmtray.core.store import Store
from llmtray.team.copy import copy_events

T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)


def seed(store: Store) -> None:
    def ev(i: int, **kw):  # noqa: ANN202
        data = {"ts": (T0 + timedelta(minutes=7 * i)).isoformat(), "provider": "anthropic",
                "model": "claude-sonnet-4-5", "input_tokens": 1000 + i, "output_tokens": 77 * i, "feature": f"f{i % 3}",
                "user": f"u{i % 2}", "tags": {"env": "dev"} if i % 2 else {}, "latency_ms": 100 + i}
        data.update(kw)
        return parse_event(data, now=T0 + timedelta(days=400))

    store.add([ev(i, id=f"call-{i}") for i in range(40)], "hook")
    store.add([ev(i) for i in range(40, 55)], "proxy")  # stored without ids
    store.add([ev(60, cost_usd="1.234567891")], "hook")  # a reported cost: copied as it is


def summary(database) -> tuple:  # noqa: ANN001
    store = Store.open(database)
    try:
        q = Queries(store.conn, None)
        totals = q.totals()
        rows = store.conn.execute("SELECT count(*), sum(cost_nanos), sum(input_tokens), count(DISTINCT cost_source)"
                                  " FROM event").fetchone()
        rollup = store.conn.execute("SELECT sum(events), sum(cost_nanos) FROM rollup_day").fetchone()
        by_feature = sorted(q.by("feature"))
        return (totals.cost_nanos, totals.events, tuple(rows), tuple(rollup), by_feature)
    finally:
        store.close()


def test_copy_moves_every_event_exactly_and_again_adds_nothing(data_dir, team_url, capsys, monkeypatch):
    local = data_dir / "llmtray.db"
    store = Store.open(local)
    seed(store)
    store.close()
    monkeypatch.setenv("LLMTRAY_MACHINE", "laptop-7")
    assert main(["--data-dir", str(data_dir), "db", "copy", "--to", team_url]) == 0
    out = capsys.readouterr()
    assert "56 events copied" in out.out and "0 already there" in out.out
    assert "copied 56 of 56 events (100 %)" in out.err  # progress
    team = dburl.resolve(team_url, None)
    assert summary(team) == summary(local)
    # every copied event says which machine it came from
    copied = Store.open(team)
    assert copied.conn.execute("SELECT count(*) FROM event_tag WHERE key = 'machine' AND value = 'laptop-7'"
                               ).fetchone() == (56,)
    copied.close()
    # again: nothing twice, the id-less events included
    assert main(["--data-dir", str(data_dir), "db", "copy", "--to", team_url]) == 0
    assert "0 events copied" in capsys.readouterr().out
    assert summary(team) == summary(local)


def test_a_copy_cut_short_resumes_without_doubling(data_dir, team_url):
    local = data_dir / "llmtray.db"
    store = Store.open(local)
    seed(store)
    store.close()
    team = dburl.parse(team_url)

    class Interrupted(Exception):
        pass

    def stop_after_first(result, total):  # noqa: ANN001, ANN202
        if result.read < total:
            raise Interrupted

    try:
        copy_events(local, team, progress=stop_after_first, batch=20)
    except Interrupted:
        pass
    partial = Store.open(team)
    assert partial.conn.execute("SELECT count(*) FROM event").fetchone() == (20,)
    partial.close()
    result = copy_events(local, team, batch=20)
    assert (result.copied, result.already) == (36, 20)
    assert summary(team) == summary(local)


def test_copy_to_a_bad_url_says_what_is_wrong_and_writes_nothing(data_dir, capsys):
    assert main(["--data-dir", str(data_dir), "db", "copy", "--to", "mysql://x@y/z"]) == 2
    assert "unknown database URL scheme 'mysql'" in capsys.readouterr().err

"""A file read in a second process imports exactly as one read in this process: the same
counts, the same errors in the same order, the same stored rows — and cancelling, a file that
turns unreadable midway, or an overlap refusal behave the same and leave no reader behind."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from llmtray.core.events import parse_event
from llmtray.core.store import Store
from llmtray.importers.base import ImportFileError, Options
from llmtray.importers.engine import Importer
from llmtray.importers.mapping import ColumnMapping
from tests.importers.conftest import DATA, MALFORMED, rows, totals
from tests.importers.generate import generic_rows, openrouter_generations

pytestmark = pytest.mark.both_backends  # the same suite on SQLite and PostgreSQL

FILES = sorted(p for p in (*DATA.iterdir(), *MALFORMED.iterdir()) if p.is_file() and "generic" not in p.name)
SKIP_COLUMNS = {"id", "received", "dataset_id"}


def _readers() -> list[int]:
    """Our child processes that are import readers."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and b"read_for_parent" in cmdline:
            found.append(int(pid))
    return found


def _import(tmp_path: Path, name: str, path: Path, parallel: bool, **kw) -> tuple:
    store = Store.open(tmp_path / name / "llmtray.db")
    try:
        r = Importer(store, parallel=parallel).run(path, **kw)
        outcome = (r.state, r.format, r.rows_read, r.imported, r.duplicates, r.skipped, r.error_count,
                   [(e.line, e.where, e.message) for e in r.errors], r.overlap)
        stored = [{k: v for k, v in row.items() if k not in SKIP_COLUMNS} for row in rows(store)]
        return outcome, stored
    finally:
        store.close()


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.name}" for p in FILES])
def test_every_fixture_imports_the_same_in_a_reader_process(tmp_path, path):
    here = _import(tmp_path, "here", path, parallel=False)
    there = _import(tmp_path, "there", path, parallel=True)
    assert there == here
    assert here[0][3] == len(here[1])
    assert _readers() == []


def test_big_generated_files_import_the_same(tmp_path):
    mapping = ColumnMapping({"ts": "When", "provider": "Vendor", "model": "Model", "input_tokens": "Prompt",
                             "output_tokens": "Completion", "cost_usd": "Spend"})
    generic = {"format_name": "generic-csv", "mapping": mapping}
    for path, kw in ((openrouter_generations(tmp_path / "gen.csv", 7_000), {}),
                     (generic_rows(tmp_path / "generic.csv", 7_000), generic)):
        here = _import(tmp_path, f"here-{path.stem}", path, parallel=False, **kw)
        there = _import(tmp_path, f"there-{path.stem}", path, parallel=True, **kw)
        assert there == here and here[0][3] == 7_000


def test_cancel_stops_the_reader_and_leaves_nothing(store, tmp_path):
    path = openrouter_generations(tmp_path / "gen.csv", 30_000)
    importer = Importer(store, chunk_size=1000, parallel=True)
    cancel = threading.Event()

    def on_progress(p):
        if p.rows_read >= 3000 and not cancel.is_set():
            assert len(_readers()) == 1  # it really is read elsewhere
            cancel.set()

    result = importer.run(path, progress=on_progress, cancel=cancel)
    assert (result.state, result.imported, result.dataset_id) == ("cancelled", 0, None)
    assert totals(store)["events"] == 0 and store.list_datasets() == []
    assert _readers() == []
    rest = importer.run(path)
    assert (rest.state, rest.imported + rest.duplicates, totals(store)["events"]) == ("done", 30_000, 30_000)


def test_unreadable_text_midway_is_reported_from_the_reader(store, tmp_path):
    header = (DATA / "litellm_ui_team.csv").read_text(encoding="utf-8").splitlines()[0]
    good = "2026-05-{d:02d},team{n},t{n},0.75,3,3,0,300,200,100\n"
    body = "".join(good.format(d=1 + n % 28, n=n) for n in range(2000))
    path = tmp_path / "cut.csv"
    path.write_bytes((header + "\n" + body).encode() + b"2026-05-01,\xff\xfe,x,1,1,1,0,1,1,1\n")
    with pytest.raises(ImportFileError, match="not valid utf-8-sig text"):
        Importer(store, chunk_size=500, parallel=True).run(path)
    assert totals(store)["events"] == 0 and store.list_datasets() == []
    assert _readers() == []


def test_a_wrong_header_fails_the_file_before_anything_is_stored(store):
    from llmtray.importers import ImportFileError

    with pytest.raises(ImportFileError, match=r"line 1: not a OpenAI cost export \(CSV\) header"):
        Importer(store, parallel=True).run(DATA / "anthropic_usage.csv", format_name="openai-cost")
    assert store.list_datasets() == [] and _readers() == []


def test_overlap_pass_reads_in_the_reader_too(store, tmp_path):
    store.add([parse_event({"ts": "2026-04-01T10:00:00Z", "provider": "openrouter", "model": "openai/gpt-4o-mini",
                            "input_tokens": 5})], "hook")
    path = openrouter_generations(tmp_path / "gen.csv", 3_000)
    importer = Importer(store, parallel=True)
    refused = importer.run(path)
    assert (refused.state, [p for p, _ in refused.overlap]) == ("refused", ["openrouter"])
    skipped = importer.run(path, overlap="skip")
    here = Importer(Store.open(tmp_path / "other.db"), parallel=False)
    try:
        here.store.add([parse_event({"ts": "2026-04-01T10:00:00Z", "provider": "openrouter",
                                     "model": "openai/gpt-4o-mini", "input_tokens": 5})], "hook")
        expected = here.run(path, overlap="skip")
    finally:
        here.store.close()
    assert (skipped.imported, skipped.overlap_skipped, skipped.overlap) == \
        (expected.imported, expected.overlap_skipped, expected.overlap)
    assert skipped.overlap_skipped > 0 and _readers() == []


def test_pack_keeps_order_and_values(tmp_path):
    import pickle
    from decimal import Decimal

    from llmtray.importers.base import RowError, Skipped
    from llmtray.importers.pipeline import pack, unpack

    def ev(n: int, cost: str) -> object:
        return parse_event({"ts": f"2026-05-01T10:00:{n:02d}Z", "provider": "openai", "model": "gpt-4o",
                            "input_tokens": n, "cost_usd": cost, "tags": {"n": str(n)} if n % 2 else {}})

    events = [ev(n, "0.10" if n % 2 else "0.1") for n in range(6)]
    assert events[0].cost_usd == events[1].cost_usd  # equal, yet written differently: not one constant
    skip, error = Skipped(3, "blank line"), RowError(5, "line 5", "bad")
    for chunk in ([], [skip], [events[0]], events, [skip, *events[:2], error, error, *events[2:], skip],
                  [events[0], skip, events[1]]):
        back = list(unpack(pickle.loads(pickle.dumps(pack(chunk)))))
        assert back == chunk
        assert [str(e.cost_usd) for e in back if hasattr(e, "cost_usd")] == \
            [str(e.cost_usd) for e in chunk if hasattr(e, "cost_usd")]
    assert isinstance(events[0].cost_usd, Decimal)


def test_the_reader_reports_a_crash_after_the_rows_before_it(tmp_path):
    from datetime import UTC, datetime

    from llmtray.importers.base import Format, Parsed, Skipped
    from llmtray.importers.pipeline import _read_and_send

    class Breaks(Format):
        name, label = "breaks", "breaks"

        def items(self, path, options):
            yield Parsed(2, {"ts": "2026-05-01T10:00:00Z", "provider": "openai", "model": "gpt-4o"})
            yield Skipped(3, "blank line")
            raise ZeroDivisionError("boom")

    sent = []
    _read_and_send(Breaks(), tmp_path / "x", Options(), datetime.now(UTC),
                   lambda kind, payload: sent.append((kind, payload)))
    assert [kind for kind, _ in sent] == ["rows", "crash"]
    assert [type(e).__name__ for e in sent[0][1]] == ["UsageEvent", "Skipped"]
    assert "ZeroDivisionError: boom" in sent[1][1]

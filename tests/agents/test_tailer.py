"""The shared tailer and bad input: partial lines, truncation, replacement, huge lines, binary
files, unreadable folders, unknown formats. Each: the reason is recorded, nothing else is lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.agents.kit import FIXTURES, events, make_home, scan, scanner

SESSION = "7f3c2a9e-1b4d-4c8e-9a2f-5d6e7f8a9b0c"
MAIN = f"projects/-home-dev-work-shop-api/{SESSION}.jsonl"
LINES = (FIXTURES / "claude" / MAIN).read_bytes().splitlines(keepends=True)
FINAL = LINES[4]  # the streamed call's last line (output 159)
SINGLE = LINES[6]  # msg_01GhIjKl


def project(home: Path) -> Path:
    d = home / ".claude" / "projects" / "p"
    d.mkdir(parents=True, exist_ok=True)
    return d


def skipped(store, path: Path) -> dict:
    (text,) = store.conn.execute("SELECT skipped FROM agent_file WHERE path = ?", (str(path),)).fetchone()
    return json.loads(text) if text else {}


def test_a_partial_last_line_waits_for_its_newline(store, tmp_path: Path):
    home = tmp_path / "home"
    log = project(home) / "s.jsonl"
    log.write_bytes(SINGLE + FINAL[:200])  # the writer is mid-line
    live = scanner(store, home)
    assert live.scan()[0].added == 1
    assert live.scan(discover=False)[0].files_read == 0  # unchanged: one stat, no read
    with log.open("ab") as f:
        f.write(FINAL[200:])
    report = live.scan(discover=False)[0]
    assert (report.added, report.skipped) == (1, 0)
    assert events(store)["anthropic:msg_01AbCdEf"]["output_tokens"] == 159


def test_a_truncated_or_replaced_file_is_read_again_without_double_billing(store, tmp_path: Path):
    home = tmp_path / "home"
    log = project(home) / "s.jsonl"
    log.write_bytes(SINGLE + FINAL)
    live = scanner(store, home)
    live.scan()
    log.write_bytes(SINGLE)  # truncated (shorter than the offset)
    assert live.scan(discover=False)[0].added == 0
    log.write_bytes(FINAL + SINGLE)  # replaced in place: same size as before, other first bytes
    report = live.scan(discover=False)[0]
    assert (report.files_read, report.added, report.duplicates) == (1, 0, 2)
    assert len(events(store)) == 2


def test_a_50_mb_line_is_skipped_with_the_reason_and_the_lines_around_it_are_read(store, tmp_path: Path):
    home = tmp_path / "home"
    log = project(home) / "s.jsonl"
    huge = b'{"type":"file-history-snapshot","snapshot":"' + b"x" * (50 << 20) + b'"}\n'
    log.write_bytes(SINGLE + huge + FINAL)
    report = scan(store, home)["claude-code"]
    assert report.added == 2 and report.skipped == 1
    assert skipped(store, log) == {"line longer than 16 MB (50 MB)": [1, 2]}


def test_a_binary_file_is_skipped_and_other_files_are_read(store, tmp_path: Path):
    home = tmp_path / "home"
    (project(home) / "core.jsonl").write_bytes(os.urandom(100_000).replace(b"\n", b"\x00") + b"\x00")
    (project(home) / "s.jsonl").write_bytes(SINGLE)
    report = scan(store, home)["claude-code"]
    assert report.added == 1 and report.skipped == 1
    assert skipped(store, project(home) / "core.jsonl") == {"binary file (NUL bytes): not a JSON-lines log": [1, 1]}


def test_lines_of_an_unknown_newer_format_are_counted_not_priced_at_zero(store, tmp_path: Path):
    home = tmp_path / "home"
    record = json.loads(SINGLE)
    moved = {**record, "message": {k: v for k, v in record["message"].items() if k != "usage"},
             "usageV2": record["message"]["usage"]}
    bad_count = json.loads(FINAL)
    bad_count["message"]["usage"]["output_tokens"] = "159"
    future = {**record, "timestamp": "2999-01-01T00:00:00.000Z"}
    future["message"] = {**record["message"], "id": "msg_future"}
    renamed = {**record, "type": "assistant_turn"}
    log = project(home) / "s.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in (moved, bad_count, future)) + '["assistant"]\n'
                   + json.dumps(renamed) + "\n")
    report = scan(store, home)["claude-code"]
    assert report.added == 0 and report.skipped == 5
    assert skipped(store, log)["a 'assistant_turn' record with message.usage (unknown format?)"] == [1, 5]
    reasons = skipped(store, log)
    assert reasons["assistant record without message.usage (unknown format?)"] == [1, 1]
    assert reasons["usage.output_tokens is not a token count ('159')"] == [1, 2]
    assert reasons["not a JSON object"] == [1, 4]
    (future_reason,) = [r for r in reasons if r.startswith("ts:")]
    assert "in the future" in future_reason and reasons[future_reason] == [1, 3]
    assert events(store) == {}


def test_a_codex_token_count_of_an_unknown_shape_is_skipped_with_the_reason(store, tmp_path: Path):
    home = tmp_path / "home"
    folder = home / ".codex" / "sessions" / "2026" / "11" / "03"
    folder.mkdir(parents=True)
    log = folder / "rollout-2026-11-03T10-00-00-x.jsonl"
    log.write_text(json.dumps({"timestamp": "2026-11-03T09:00:00Z", "type": "event_msg",
                               "payload": {"type": "token_count", "info": {"total": {"in": 5}}}}) + "\n")
    report = scan(store, home)["codex"]
    assert report.skipped == 1
    assert skipped(store, log) == {"total_token_usage is not an object (unknown token_count format?)": [1, 1]}


def test_an_unreadable_folder_is_reported_and_the_rest_is_read(tmp_path: Path):
    """Through the real CLI. Root reads everything, so as root the CLI runs without the two
    capabilities that let it (not as another user: CI's venv is in a folder only root may read)."""
    base = Path(tempfile.mkdtemp(prefix="llmtray-agents-"))
    os.chmod(base, 0o777)
    home = make_home(base, "claude")
    locked = home / ".claude" / "projects" / "-home-dev-work-shop-api"
    data = base / "data"
    data.mkdir()
    for d, _, files in os.walk(base):
        os.chmod(d, 0o777)
        for f in files:
            os.chmod(Path(d, f), 0o666)
    os.chmod(locked, 0o000)
    command = [sys.executable, "-m", "llmtray", "--data-dir", str(data), "agents", "scan", "--json"]
    if os.geteuid() == 0:
        unprivileged = "-dac_override,-dac_read_search"
        command = ["setpriv", f"--bounding-set={unprivileged}", f"--inh-caps={unprivileged}", *command]
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(Path(__file__).parents[2]),
           "CODEX_HOME": str(base / "none"), "GEMINI_CLI_HOME": str(base / "none"), "XDG_DATA_HOME": str(base / "none")}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    os.chmod(locked, 0o777)
    assert done.returncode == 0, done.stderr
    (claude,) = [r for r in json.loads(done.stdout)["agents"] if r["agent"] == "claude-code"]
    assert claude["errors"] == [f"{locked}: Permission denied"]
    assert claude["added"] == 1  # the 1.0.8 transcript in the readable folder


def test_reading_in_a_reader_process_stores_the_same_as_reading_here(tmp_path: Path):
    """The CLI's big cold scans read in a second process: same events, same file states."""
    from llmtray.core.store import Store
    from tests.agents.kit import make_home

    results = []
    for parallel in (False, True):
        store = Store.open(tmp_path / f"{parallel}.db")
        (tmp_path / str(parallel)).mkdir()
        live = scanner(store, make_home(tmp_path / str(parallel)))
        live.parallel, live.parallel_min_bytes = parallel, 0
        reports = [r.as_json() | {"roots": None} for r in live.scan()]
        stored = {k: {c: v for c, v in e.items() if c not in ("id", "received")} for k, e in events(store).items()}
        states = store.conn.execute("SELECT replace(path, ?, ''), offset, state, skipped, events FROM agent_file "
                                    "ORDER BY 1", (str(tmp_path / str(parallel)),)).fetchall()
        again = live.scan()
        assert sum(r.added + r.updated for r in again) == 0
        results.append((reports, stored, states))
        store.close()
    assert results[0] == results[1]


def test_files_untouched_for_an_hour_are_polled_on_discovery_passes_only(store, tmp_path: Path):
    """A long history costs the idle watcher nothing per second; a resumed old session is found
    by the next walk of the roots (30 s) and polled every second from then on."""
    home = tmp_path / "home"
    log = project(home) / "s.jsonl"
    log.write_bytes(SINGLE)
    two_days_ago = time.time() - 2 * 86400
    os.utime(log, (two_days_ago, two_days_ago))
    live = scanner(store, home)
    assert live.scan()[0].added == 1
    second = json.loads(FINAL)
    second["message"]["id"] = "msg_resumed"
    with log.open("a") as f:
        f.write(json.dumps(second) + "\n")
    assert live.scan(discover=False)[0].files_read == 0  # cold: not even a stat
    assert live.scan(discover=True)[0].added == 1
    third = {**second, "message": {**second["message"], "id": "msg_resumed_2"}}
    with log.open("a") as f:
        f.write(json.dumps(third) + "\n")
    assert live.scan(discover=False)[0].added == 1  # hot again

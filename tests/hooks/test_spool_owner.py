"""The data dir's owner delivers the hooks' spool (#17 item 2), spool files are never followed
through symlinks nor claimed from another user (#26 item 9), `ingest.json` exists before the
first answer (#17 item 14), and a wrong token is said once (#17 item 11) — real processes, the
real openai SDK against the stub upstream, the real ingest service and SQLite file."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import llmtray.hooks as lt
from llmtray.hooks.spool import Spool
from llmtray.ingest import service as service_module
from llmtray.ingest.service import probe_health
from tests.hooks.conftest import plant, start_tray, stored
from tests.hooks.test_delivery import dead_letters, event, run_script, spool_lines

SHORT_SCRIPT = (
    "import os, openai, llmtray.hooks as lt\n"
    "client = lt.instrument(openai.OpenAI(api_key='k', base_url=os.environ['STUB'] + '/v1', max_retries=0))\n"
    "client.chat.completions.create(model='gpt-4o-mini', messages=[{'role': 'user', 'content': 'hi'}])\n")


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_serve_delivers_what_short_scripts_spooled_while_it_was_down(hook_env: Path, upstream):
    for _ in range(3):
        proc = run_script(hook_env, SHORT_SCRIPT, STUB=upstream.url)
        assert proc.returncode == 0, proc.stderr
    assert len(spool_lines(hook_env)) == 3 and stored(hook_env) == []
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
    serve = subprocess.Popen([sys.executable, "-m", "llmtray", "--data-dir", str(hook_env), "serve", "--port", "0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert serve.stdout is not None and serve.stdout.readline().startswith("llmtray serve")
        # no other hooked process runs: only serve itself can deliver these
        assert wait_for(lambda: len(stored(hook_env)) >= 3, 5.0), stored(hook_env)
        time.sleep(1.5)  # a second (wrong) delivery would have had time to happen
        events = stored(hook_env)
        assert len(events) == 3 and len({e["id"] for e in events}) == 3
        assert {e["model"] for e in events} == {"gpt-4o-mini-2024-07-18"} and {e["source"] for e in events} == {"hook"}
        assert spool_lines(hook_env) == [] and dead_letters(hook_env) == []
    finally:
        serve.send_signal(signal.SIGTERM)
        _, err = serve.communicate(timeout=30)
    assert serve.returncode == 0, err


def test_a_file_appearing_while_the_tray_runs_is_delivered_exactly_once(hook_env: Path, tray):
    folder = hook_env / "spool"
    # a process that died with these spooled
    plant(folder, "hook-999999-feedface.jsonl", "".join(json.dumps(event(i)) + "\n" for i in range(4)))
    assert wait_for(lambda: len(stored(hook_env)) == 4, 5.0), stored(hook_env)
    assert not (folder / "hook-999999-feedface.jsonl").exists()
    assert tray.api.activity_snapshot().duplicates == 0


def test_a_short_script_claims_orphans_before_it_exits(hook_env: Path, tray):
    folder = hook_env / "spool"
    tray._drain.stop()  # only the script may deliver (the owner's drain has its own test)
    plant(folder, "hook-888888-0badf00d.jsonl", "".join(json.dumps(event(i)) + "\n" for i in range(3)))
    code = "import llmtray.hooks as lt\nlt.record(provider='openai', model='gpt-4o-mini', input_tokens=7, id='mine')\n"
    proc = run_script(hook_env, code)
    assert proc.returncode == 0, proc.stderr
    assert sorted(e["id"] for e in stored(hook_env)) == ["e000", "e001", "e002", "mine"]
    assert not (folder / "hook-888888-0badf00d.jsonl").exists()


def test_symlinks_and_other_users_files_are_never_claimed(hook_env: Path, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture):
    folder = hook_env / "spool"
    folder.mkdir(exist_ok=True)
    target = tmp_path / "victim.jsonl"
    victim = "".join(json.dumps(event(i)) + "\n" for i in range(2))
    target.write_text(victim)
    (folder / "hook-1-aaaaaaaa.jsonl").symlink_to(target)
    foreign = folder / "hook-2-bbbbbbbb.jsonl"
    foreign.write_text(json.dumps(event(5)) + "\n")
    if os.getuid() == 0:
        os.chown(foreign, 65534, 65534)  # as root the test can plant another user's file
    (folder / "dead-letter.jsonl").symlink_to(tmp_path / "bashrc")
    (tmp_path / "bashrc").write_text("keep me\n")
    s = Spool(folder)
    try:
        with caplog.at_level(logging.WARNING, logger="llmtray.hooks"):
            assert s.claim_orphan() is (os.getuid() != 0)  # as non-root the plain file is one's own
            assert s.claim_orphan() is (os.getuid() != 0)
            s.dead_letter([{"error": "test", "line": "x"}])
        assert "symbolic link" in caplog.text
        if os.getuid() == 0:
            assert "owned by uid 65534" in caplog.text and foreign.exists()
        assert caplog.text.count("hook-1-aaaaaaaa.jsonl") == 1  # warned once, not on every scan
        assert target.read_text() == victim and (folder / "hook-1-aaaaaaaa.jsonl").is_symlink()
        assert (tmp_path / "bashrc").read_text() == "keep me\n"  # the dead letter did not follow the link
        assert s.dead_lettered == 0 and "could not write the dead-letter file" in caplog.text
    finally:
        s.close()


def test_ingest_json_is_written_before_the_server_answers(hook_env: Path, monkeypatch: pytest.MonkeyPatch):
    answered_first: list[str] = []
    real_write = service_module.discovery.write

    def write_and_check(path: Path, url: str, token: str, pid: int | None = None) -> None:
        if probe_health(url, timeout=0.3) is not None:  # the server answered before announcing itself
            answered_first.append(url)
        real_write(path, url, token, pid)

    monkeypatch.setattr(service_module.discovery, "write", write_and_check)
    tray = start_tray(hook_env)
    try:
        assert answered_first == []
        assert probe_health(tray.url) is not None
        assert json.loads((hook_env / "ingest.json").read_text())["url"] == tray.url
    finally:
        tray.stop()


def test_a_wrong_token_is_warned_about_once(hook_env: Path, tray, monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture):
    monkeypatch.setenv("LLMTRAY_URL", tray.url)
    monkeypatch.setenv("LLMTRAY_TOKEN", "not-the-token")
    with caplog.at_level(logging.WARNING, logger="llmtray.hooks"):
        for i in range(3):
            lt.record(provider="openai", model="gpt-4o-mini", input_tokens=i + 1)
            assert lt.flush(5) is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "401" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert "LLMTRAY_TOKEN" in warnings[0].getMessage() and tray.url in warnings[0].getMessage()
    assert len(spool_lines(hook_env)) == 3  # nothing lost

"""The public surface of `llmtray.hooks` is pinned, and importing it stays light (it runs in users' apps)."""

from __future__ import annotations

import subprocess
import sys
import threading

import llmtray.hooks as lt

PUBLIC = ["Blocked", "BudgetExceeded", "flush", "httpx_hooks", "instrument", "propagate", "record", "stats", "tags"]


def test_all_is_pinned_and_every_name_exists():
    assert sorted(lt.__all__) == PUBLIC
    for name in lt.__all__:
        assert getattr(lt, name) is not None, name
    assert issubclass(lt.BudgetExceeded, Exception)
    assert issubclass(lt.Blocked, lt.BudgetExceeded)  # code that handles hard caps handles blocks


def test_public_callables_have_docstrings():
    for name in lt.__all__:
        assert (getattr(lt, name).__doc__ or "").strip(), f"{name} has no docstring"


def test_import_in_a_fresh_interpreter_leaves_qt_peewee_and_sdks_out():
    code = (
        "import sys, llmtray.hooks as lt\n"
        "heavy = ('PySide6', 'pyqtgraph', 'peewee', 'openai', 'anthropic', 'httpx', 'httpx2', 'asyncio')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "print(','.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"llmtray.hooks imported: {proc.stdout} {proc.stderr}"


def test_import_starts_no_thread():
    code = "import threading, llmtray.hooks; print(threading.active_count())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1"


def test_stats_before_any_event_start_nothing(hook_env):
    before = threading.active_count()
    assert lt.stats()["sent"] == 0 and lt.stats()["queued"] == 0
    assert threading.active_count() == before

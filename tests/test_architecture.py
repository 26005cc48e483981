"""Layering enforced by a machine: the headless parts never drag in Qt (or, for hooks, Peewee)."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEADLESS = ["llmtray.core.events", "llmtray.core.pricing", "llmtray.core.store", "llmtray.core.queries",
            "llmtray.core.budgets", "llmtray.core.monitor", "llmtray.core.alerts", "llmtray.core.anomalies",
            "llmtray.ingest.service", "llmtray.ingest.proxy", "llmtray.importers.engine", "llmtray.hooks",
            "llmtray.demo", "llmtray.autostart", "llmtray.cli", "llmtray.commands.serve",
            "llmtray.commands.import_", "llmtray.commands.budgets", "llmtray.commands.status",
            "llmtray.commands.report", "llmtray.commands.export", "llmtray.commands.digest",
            "llmtray.mail.service", "llmtray.mail.digest", "llmtray.mail.smtp", "llmtray.mail.chart",
            "llmtray.billing.sync", "llmtray.billing.reconcile", "llmtray.commands.billing", "llmtray.commands.reconcile"]


@pytest.mark.parametrize("module", HEADLESS)
def test_headless_modules_import_no_qt(module):
    code = (f"import sys, {module}; bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph')];"
            "print(','.join(bad)); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{module} imported Qt: {proc.stdout} {proc.stderr}"


def test_hooks_stay_light_inside_users_apps():
    """`llmtray.hooks` runs inside users' programs: no Qt, no Peewee, no SDK until instrumenting."""
    code = ("import sys, llmtray.hooks; bad = [m for m in ('PySide6', 'peewee', 'openai', 'anthropic')"
            " if m in sys.modules]; print(','.join(bad)); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"llmtray.hooks imported {proc.stdout}"

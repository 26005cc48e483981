"""The Windows AppUserModelID setter, and the headless modules staying headless."""

from __future__ import annotations

import subprocess
import sys

import pytest

from llmtray.platform_setup import APP_ID, set_app_user_model_id


@pytest.mark.skipif(sys.platform == "win32", reason="off Windows only")
def test_app_user_model_id_is_a_no_op_off_windows():
    assert set_app_user_model_id() is False


@pytest.mark.skipif(sys.platform != "win32", reason="Windows only (not verified on this Linux CI)")
def test_app_user_model_id_is_set_on_windows():
    import ctypes

    assert set_app_user_model_id() is True
    getter = ctypes.windll.shell32.GetCurrentProcessExplicitAppUserModelID
    out = ctypes.c_wchar_p()
    getter(ctypes.byref(out))
    assert out.value == APP_ID


@pytest.mark.parametrize("module", ["llmtray.autostart", "llmtray.platform_setup"])
def test_imports_no_qt(module: str):
    """run_app calls these before QApplication exists, and the CLI may use them headless."""
    code = (f"import sys, {module}; bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph')];"
            "print(','.join(bad)); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{module} imported Qt: {proc.stdout} {proc.stderr}"

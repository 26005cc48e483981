"""Process-wide OS setup that must happen before the first window or tray icon exists.

No Qt here: `run_app` calls it first thing, before `QApplication` is built.
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger(__name__)

# One reverse-DNS id names the app everywhere the OS asks: the AppStream component, the macOS
# bundle (CFBundleIdentifier) and LaunchAgent label, the Windows AppUserModelID.
APP_ID = "io.github.llmtray.llmtray"


def set_app_user_model_id(app_id: str = APP_ID) -> bool:
    """Give this process its own Windows AppUserModelID; True when it was set.

    Windows attributes toast notifications and groups taskbar buttons by this id. A Python process
    otherwise runs under python.exe's identity, so its notifications show as "Python" or are
    dropped (DESKTOP.md, Notifications). It only takes effect for windows and tray icons created
    afterwards, hence: call it before `QApplication`. Elsewhere a no-op that returns False.
    """
    if sys.platform != "win32":
        return False
    import ctypes

    setter = ctypes.windll.shell32.SetCurrentProcessExplicitAppUserModelID
    setter.argtypes = [ctypes.c_wchar_p]
    setter.restype = ctypes.HRESULT  # a failing HRESULT raises OSError
    try:
        setter(app_id)
    except OSError as exc:
        log.warning("could not set the AppUserModelID %s: %s", app_id, exc)
        return False
    return True

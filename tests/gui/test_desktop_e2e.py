"""The real desktop, end to end: Xvfb + a tray host (trayer) + a session D-Bus with a real
notification daemon (dunst), and `llmtray` as a user starts it.

A data dir holds a $1/day budget; events posted over its thresholds produce notifications that
name the budget — once per threshold, and not again after a restart. Screenshots of the tray and
of a notification are saved under the test's tmp dir (and to $LLMTRAY_E2E_SHOTS if set) so a
person can look at them. Skipped, with the reason, where the desktop packages are missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

NEEDED = ("Xvfb", "dbus-launch", "trayer", "dunst", "dunstctl", "import")
pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in NEEDED),
    reason="needs Debian packages xvfb dbus-x11 trayer dunst imagemagick (installed by .ci/run)",
)


def wait_for(condition, timeout: float = 30.0, what: str = "condition"):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Desktop:
    """Xvfb, a session bus, trayer and dunst, each stopped by PID at the end."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = dict(os.environ)

    def start(self) -> None:
        display = f":{90 + os.getpid() % 9}"
        self._spawn(["Xvfb", display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"])
        self.env.update(DISPLAY=display, QT_QPA_PLATFORM="xcb")
        wait_for(lambda: subprocess.run(["xwininfo", "-root"], env=self.env, capture_output=True).returncode == 0,
                 what="Xvfb")
        out = subprocess.run(["dbus-launch", "--sh-syntax"], env=self.env, capture_output=True, text=True, check=True)
        for line in out.stdout.splitlines():
            if "=" in line and line.startswith("DBUS_SESSION_BUS"):
                key, value = line.split("=", 1)
                self.env[key] = value.strip().rstrip(";").strip("'")
        self._bus_pid = int(self.env["DBUS_SESSION_BUS_PID"])
        self._spawn(["trayer", "--edge", "top", "--align", "right", "--widthtype", "pixel", "--width", "120",
                     "--height", "24", "--transparent", "false", "--tint", "0x333333"])
        self._spawn(["dunst"])
        wait_for(lambda: subprocess.run(["dunstctl", "count"], env=self.env, capture_output=True).returncode == 0,
                 what="dunst")

    def _spawn(self, cmd: list[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def displayed(self) -> int:
        out = subprocess.run(["dunstctl", "count", "displayed"], env=self.env, capture_output=True, text=True)
        return int(out.stdout.strip() or 0)

    def notifications(self) -> list[dict[str, str]]:
        """Every notification dunst has shown, as {summary, body, appname} (newest first): the
        ones on screen are closed first so that its history holds them all."""
        subprocess.run(["dunstctl", "close-all"], env=self.env, capture_output=True)
        shown = subprocess.run(["dunstctl", "history"], env=self.env, capture_output=True, text=True).stdout
        items = json.loads(shown)["data"][0] if shown.strip() else []
        out = [{k: item[k]["data"] for k in ("summary", "body", "appname")} for item in items]
        return out

    def screenshot(self, path: Path) -> None:
        subprocess.run(["import", "-window", "root", str(path)], env=self.env, check=True, timeout=30)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
        try:
            os.kill(self._bus_pid, signal.SIGTERM)
        except (AttributeError, ProcessLookupError):
            pass


@pytest.fixture
def desktop(tmp_path: Path) -> Iterator[Desktop]:
    d = Desktop(tmp_path)
    try:
        d.start()
    except Exception as exc:  # a machine without a working X server or bus: say so
        d.stop()
        pytest.skip(f"could not start the test desktop: {exc}")
    yield d
    d.stop()


def start_llmtray(desktop: Desktop, data: Path) -> subprocess.Popen[str]:
    env = {**desktop.env, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring", "LLMTRAY_PORT": "0"}
    return subprocess.Popen([sys.executable, "-m", "llmtray", "--data-dir", str(data)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def post(data: Path, cost: str, n: int, prefix: str, feature: str = "e2e") -> None:
    info = wait_for(lambda: (data / "ingest.json").exists() and json.loads((data / "ingest.json").read_text()),
                    what="ingest.json")
    with httpx.Client(base_url=info["url"], headers={"Authorization": f"Bearer {info['token']}"}, timeout=10) as c:
        for i in range(n):
            r = c.post("/v1/events", json={"id": f"{prefix}{i}", "provider": "openai", "model": "gpt-4o",
                                           "cost_usd": cost, "feature": feature})
            assert r.status_code == 200, r.text


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stderr.close()
    return err


def test_tray_icon_and_one_notification_per_threshold_across_restarts(desktop: Desktop, tmp_path: Path):
    data = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "llmtray", "--data-dir", str(data), "budgets", "add", "--name",
                    "e2e-daily", "--limit", "1", "--period", "day"], check=True, capture_output=True, timeout=60)
    app = start_llmtray(desktop, data)
    try:
        post(data, "0.30", 2, "a")  # $0.60 → 50 % crossed
        wait_for(desktop.displayed, timeout=40, what="a notification on screen")
        time.sleep(0.5)
        shots = Path(os.environ.get("LLMTRAY_E2E_SHOTS", tmp_path))
        shots.mkdir(parents=True, exist_ok=True)
        desktop.screenshot(shots / "tray-and-notification.png")
        time.sleep(2)  # time for a wrong second notification to show up
        ours = [n for n in desktop.notifications() if "e2e-daily" in n["summary"] + n["body"]]
        assert len(ours) == 1, ours
        assert ours[0]["appname"] == "llmtray"
        # the tray host embedded an icon: trayer's window has a child of llmtray's
        tree = subprocess.run(["xwininfo", "-root", "-tree"], env=desktop.env, capture_output=True, text=True).stdout
        assert "llmtray" in tree.lower() or "qt" in tree.lower(), "no llmtray window in the X tree"
    finally:
        err = stop(app)
    assert "Traceback" not in err, err

    app = start_llmtray(desktop, data)  # a restart: the 50 % crossing is not announced again
    try:
        post(data, "0.30", 1, "b")  # $0.90: 80 % crossed — one new notification
        wait_for(lambda: len([n for n in desktop.notifications() if "e2e-daily" in n["summary"] + n["body"]]) >= 2,
                 timeout=40, what="the 80 % notification")
        time.sleep(2)  # time for a wrong repeat to show up
        ours = [n for n in desktop.notifications() if "e2e-daily" in n["summary"] + n["body"]]
        assert len(ours) == 2, ours
        assert "80" in ours[0]["summary"] + ours[0]["body"]  # dunst lists newest first
    finally:
        err = stop(app)
    assert "Traceback" not in err, err


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024


def _has_numpy(pid: int) -> bool:
    """numpy's core extension mapped into the process: pyqtgraph (the charts) was imported."""
    return "_multiarray_umath" in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc")
def test_an_idle_tray_builds_no_window_until_it_is_asked_for(desktop: Desktop, tmp_path: Path):
    """Started at login with history (not a first start): tray only, no charts loaded; a second
    `llmtray` asks the running one for its window, which is built then (DESKTOP.md: idle RSS)."""
    data = tmp_path / "data"
    _record_one_event(data)
    app = start_llmtray(desktop, data)
    try:
        wait_for(lambda: (data / "ingest.json").exists(), what="ingest.json")
        time.sleep(2)  # the tray's first summary refresh
        assert not _has_numpy(app.pid)
        idle = _rss_mb(app.pid)
        env = {**desktop.env, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring", "LLMTRAY_PORT": "0"}
        second = subprocess.run([sys.executable, "-m", "llmtray", "--data-dir", str(data)], env=env,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 0, second.stderr
        wait_for(lambda: _has_numpy(app.pid), timeout=30, what="the window to be built")
        wait_for(lambda: "llmtray" in subprocess.run(["xwininfo", "-root", "-tree"], env=desktop.env,
                                                     capture_output=True, text=True).stdout, what="the window")
        time.sleep(2)
        opened = _rss_mb(app.pid)
        print(f"\nRSS: idle tray {idle:.0f} MB; after opening the window {opened:.0f} MB")
        assert idle < opened
    finally:
        err = stop(app)
    assert "Traceback" not in err, err


def _record_one_event(data: Path) -> None:
    from llmtray.core.events import parse_event
    from llmtray.core.store import Store

    data.mkdir(parents=True, exist_ok=True)
    store = Store.open(data / "llmtray.db")
    store.add([parse_event({"provider": "openai", "model": "gpt-4o", "input_tokens": 10})], "hook")
    store.close()


def _tray_icon_centre(env: dict[str, str]) -> tuple[int, int] | None:
    """Where the embedded icon is on screen: llmtray's window inside trayer's panel, from
    `xwininfo -tree` ("0x… "llmtray": (…)  22x22+0+0  +1257+1")."""
    tree = subprocess.run(["xwininfo", "-root", "-tree"], env=env, capture_output=True, text=True).stdout
    for line in tree.splitlines():
        fields = line.split()
        nested = len(line) - len(line.lstrip()) > 5  # top-level windows are indented by 5
        if nested and '"llmtray":' in fields:
            w, h = (int(v) for v in fields[-2].split("+")[0].split("x"))
            x, y = (int(v) for v in fields[-1].lstrip("+").split("+"))
            return x + w // 2, y + h // 2
    return None


def _mapped_menus(env: dict[str, str]) -> list[str]:
    """llmtray's viewable top-level windows big enough to be its menu (the icon is 22 px)."""
    tree = subprocess.run(["xwininfo", "-root", "-children"], env=env, capture_output=True, text=True).stdout
    out = []
    for line in tree.splitlines():
        fields = line.split()
        if len(fields) < 3 or '"llmtray":' not in fields:
            continue
        w, h = (int(v) for v in fields[-2].split("+")[0].split("x"))
        if w < 100 or h < 100:
            continue
        info = subprocess.run(["xwininfo", "-id", fields[0]], env=env, capture_output=True, text=True).stdout
        if "IsViewable" in info:
            out.append(fields[0])
    return out


@pytest.mark.skipif(shutil.which("xdotool") is None, reason="needs the Debian package xdotool")
def test_the_tray_menu_opens_in_a_tray_only_start(desktop: Desktop, tmp_path: Path):
    """The login case (issue #17): history recorded, so no window opens; a right-click on the icon
    shows the menu and it stays open after the summary refresh that opening it asks for."""
    data = tmp_path / "data"
    _record_one_event(data)
    app = start_llmtray(desktop, data)
    try:
        x, y = wait_for(lambda: _tray_icon_centre(desktop.env), what="the icon in trayer")
        wait_for(lambda: (data / "ingest.json").exists(), what="the app to finish starting")
        time.sleep(2)  # the tray's first summary refresh

        def right_click_opens_the_menu() -> bool:
            # On a loaded machine one click can land before the app handles input (seen with two
            # CPU hogs on one core): click again, as a user would. A menu that opens and closes at
            # once (the bug) still fails the check below.
            subprocess.run(["xdotool", "mousemove", str(x), str(y), "click", "3"], env=desktop.env, check=True)
            try:
                return bool(wait_for(lambda: _mapped_menus(desktop.env), timeout=8, what="the menu to be mapped"))
            except AssertionError:
                return False

        assert any(right_click_opens_the_menu() for _ in range(3)), "no right-click mapped the menu"
        time.sleep(1.5)  # the refresh lands ~100 ms after the menu opens; it used to close it
        assert _mapped_menus(desktop.env), "the menu closed again"
        shots = Path(os.environ.get("LLMTRAY_E2E_SHOTS", tmp_path))
        shots.mkdir(parents=True, exist_ok=True)
        desktop.screenshot(shots / "tray-menu.png")
        subprocess.run(["xdotool", "key", "Escape"], env=desktop.env, check=True)
    finally:
        err = stop(app)
    assert "Traceback" not in err, err


def _history_ids(desktop: Desktop) -> list[tuple[int, str]]:
    """(id, summary) of every notification dunst has shown, newest first."""
    subprocess.run(["dunstctl", "close-all"], env=desktop.env, capture_output=True)
    shown = subprocess.run(["dunstctl", "history"], env=desktop.env, capture_output=True, text=True).stdout
    items = json.loads(shown)["data"][0] if shown.strip() else []
    return [(int(item["id"]["data"]), item["summary"]["data"]) for item in items]


@pytest.mark.skipif(shutil.which("dbus-send") is None, reason="needs dbus-send (Debian package dbus)")
def test_the_block_action_of_a_runaway_notification_blocks_the_feature(desktop: Desktop, tmp_path: Path):
    """Issue #24's "done when": a looping feature raises a runaway notification; its "Block loop for
    1 h" action (the daemon's `ActionInvoked` signal, as dunst sends it when the button is pressed)
    creates the block, and the next call through the proxy is refused and counted."""
    data = tmp_path / "data"
    app = start_llmtray(desktop, data)
    try:
        info = wait_for(lambda: (data / "ingest.json").exists() and json.loads((data / "ingest.json").read_text()),
                        what="ingest.json")
        post(data, "0.001", 12, "loop", feature="loop")  # 12 calls in a minute, none the week before
        runaway = wait_for(lambda: [i for i, s in _history_ids(desktop) if s.startswith("Runaway calls")],
                           timeout=40, what="the runaway notification")
        subprocess.run(["dbus-send", "--session", "--type=signal", "/org/freedesktop/Notifications",
                        "org.freedesktop.Notifications.ActionInvoked", f"uint32:{runaway[0]}", "string:block"],
                       env=desktop.env, check=True, timeout=10)

        def blocks() -> list[dict]:
            out = subprocess.run([sys.executable, "-m", "llmtray", "--data-dir", str(data), "blocks", "--json"],
                                 capture_output=True, text=True, timeout=60, check=True).stdout
            return json.loads(out)["blocks"]

        [block] = wait_for(blocks, timeout=20, what="the block")
        assert block["scope"] == {"feature": "loop"} and block["created_by"] == "alert" and block["until"]
        r = httpx.post(f"{info['url']}/proxy/openai/v1/chat/completions", headers={"X-LLMTray-Feature": "loop"},
                       json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "again"}]}, timeout=10)
        assert r.status_code == 429 and f"block #{block['id']}" in r.json()["error"]["message"]
        wait_for(lambda: blocks()[0]["refused"] == 1, timeout=20, what="the refused call to be counted")
    finally:
        err = stop(app)
    assert "Traceback" not in err, err

"""`llmtray` without a command: the one place that builds the app's object graph.

Parts written elsewhere (the ingest service, budgets, the alert log, the import dialog) are used
when they are installed, so the window runs in every build; each is looked up once, here, and
passed in — no module reaches for a global.
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QProcess, QSize, QSocketNotifier, QTimer, Signal, Slot
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QMessageBox, QSystemTrayIcon

from llmtray import autostart
from llmtray import paths as pathsmod
from llmtray.core.alerts import WebhookSink, load_webhook_url
from llmtray.core.dburl import Database, is_team
from llmtray.core.errors import LLMTrayError
from llmtray.core.monitor import BudgetMonitor
from llmtray.core.pricing import Pricer, load_overrides
from llmtray.agents.status import with_subscription_value
from llmtray.core.status import summary
from llmtray.gui.block_actions import BlockActions
from llmtray.gui.bridge import CommitBridge
from llmtray.gui.demo_feed import DemoFeed
from llmtray.gui.ipc import InstanceError, SingleInstance
from llmtray.gui.lazy_window import LazyWindow
from llmtray.gui.prepare_db import prepare_database
from llmtray.gui.notify import DesktopSink, NotificationRelay
from llmtray.gui.onboarding import UNSAFE_PORT, hook_snippet
from llmtray.otel.setup import settings as otel_settings
from llmtray.gui.query_worker import Sources
from llmtray.ingest import discovery
from llmtray.gui.team_watch import TeamWatch
from llmtray.gui.tray import SummaryWorker, Tray, TrayActions
from llmtray.mail.service import MailService
from llmtray.platform_setup import set_app_user_model_id

if TYPE_CHECKING:
    from llmtray.gui.dashboard import Dashboard

log = logging.getLogger(__name__)

SCREENSHOT_TIMEOUT_MS = 180_000  # a failure guard only; the shot is taken when the data has loaded


def optional(module: str, name: str) -> Any:
    """`module.name` if that part of llmtray is installed, else None (a missing module only;
    a broken one still raises)."""
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            return None
        raise


def cannot_start(message: str) -> None:
    """Tell a user who started llmtray from a launcher (no terminal) why nothing appears: on
    stderr for logs and terminals, and in a dialog."""
    print(f"llmtray: error: {message}", file=sys.stderr, flush=True)
    box = QMessageBox(QMessageBox.Icon.Critical, "llmtray cannot start", message)
    box.setInformativeText("Nothing is recorded until this is fixed.")
    box.exec()


def run_app(ctx: Any, demo: bool = False, screenshot: str | None = None) -> int:
    """The tray app: ingest service, budget monitor, notifications, tray icon and dashboard.
    With `screenshot`, only the window: save it as a PNG once the data has loaded and exit 0.

    An error that stops it (a corrupt config.toml) is also shown in a dialog: started from a
    launcher or at login, nobody reads stderr. The caller still prints it and exits 2."""
    try:
        return _run_app(ctx, demo, screenshot)
    except LLMTrayError as exc:
        if not screenshot:
            tell_why_not_started(exc)
        raise


def tell_why_not_started(exc: LLMTrayError) -> None:
    """A modal dialog with the error (what is wrong and where, e.g. config.toml's line)."""
    from PySide6.QtWidgets import QMessageBox

    QApplication.instance() or QApplication(sys.argv[:1])
    box = QMessageBox(QMessageBox.Icon.Critical, "llmtray could not start", str(exc))
    box.setInformativeText("Correct it and start llmtray again.")
    box.exec()


def _run_app(ctx: Any, demo: bool, screenshot: str | None) -> int:
    set_app_user_model_id()  # Windows: before any window or tray icon, or toasts are dropped
    paths = pathsmod.demo_paths(ctx.paths) if demo else ctx.paths
    paths.ensure()
    config = ctx.config
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("llmtray")
    app.setDesktopFileName("llmtray")  # Wayland app_id → llmtray.desktop and its icon
    app.setWindowIcon(app_icon())
    instance = None
    if not screenshot:
        instance = SingleInstance(paths.runtime_dir, paths.data)
        try:
            claimed = instance.claim()
        except InstanceError as exc:  # another user's socket or folder: never a quiet exit 0
            cannot_start(str(exc))
            return 1
        if not claimed:
            log.info("llmtray is already running on %s: asked it to show its window", paths.data)
            return 0
        repair_autostart()
    # The window may close while the tray keeps running; without a tray, closing it quits.
    app.setQuitOnLastWindowClosed(screenshot is not None or not QSystemTrayIcon.isSystemTrayAvailable())
    quit_on_signals(app)

    bridge = CommitBridge()
    # Before anything opens the file: a damaged database is set aside and salvaged, and an old
    # one upgraded, so no reader holds the old file or waits on the upgrade (DESKTOP.md).
    # Never under another llmtray (`llmtray serve`) that has this data dir open: starting ingest
    # below tells the user about it instead.
    served_elsewhere = discovery.live_owner(paths.ingest_file) is not None
    recovered = None if screenshot or served_elsewhere else prepare_database(app, paths.db)
    budgets = optional("llmtray.core.budgets", "budget_entries")
    budget_entries = (lambda q, now: budgets(q, now, config.week_start)) if budgets else None
    ingest, ingest_error, squatted = None, None, False
    if not screenshot:  # a screenshot must not take the port from a running llmtray
        try:
            ingest = start_ingest(paths, config, bridge, budget_entries, port=0 if demo else None,
                                  sync_bills=not demo,  # the demo never pulls the real bill into its data
                                  watch_agents=not demo)  # the demo's database gets no real agents' calls
        except LLMTrayError as exc:  # port taken, another instance on this data dir, bad port setting
            log.error("not recording: %s", exc)
            ingest_error = str(exc)
            squatted = getattr(exc, "foreign_uid", None) is not None
    sources = Sources(paths.db, config.tz, make_pricer=lambda: Pricer(load_overrides(paths.pricing_file)),
                      budget_entries=budget_entries, alert_log=optional("llmtray.core.alerts", "AlertLog"))
    import_dialog = optional("llmtray.gui.import_dialog", "ImportDialog")
    # Never point clients at another user's program on our port: it would get their API keys.
    base_url = served_url(paths, config, ingest, squatted)
    hook_data_dir = paths.data if paths.data == paths.config_dir else None  # --data-dir, env or demo

    def build_window() -> Dashboard:
        from llmtray.gui.dashboard import Dashboard  # pyqtgraph and numpy: only once it is opened

        built = Dashboard(sources, base_url=base_url, can_import=import_dialog is not None,
                          title_note="demo data" if demo else "", hook_data_dir=hook_data_dir)
        built.import_requested.connect(actions.open_import)
        built.demo_requested.connect(actions.open_demo)
        built.blocks.lift_requested.connect(blocks.lift)
        built.blocks.block_requested.connect(blocks.block_feature)
        return built

    blocks = BlockActions(paths.db)
    window = LazyWindow(build_window)
    actions = WindowActions(window, paths, import_dialog)
    for warning in paths.exposed():  # also logged by ensure(); a launcher user sees only this
        window.show_notice(warning)
    if recovered is not None:
        window.show_notice(recovered.message())
    if ingest_error:
        window.show_notice(f"Not recording new calls: {ingest_error}")
    bridge.committed.connect(window.on_committed)
    bridge.ingest_failed.connect(window.on_ingest_failed)
    bridge.notice.connect(window.show_notice)
    if ingest is not None:
        ingest.when_ready(bridge.ingest_started)

    shot = Screenshot(app, window.get(), Path(screenshot)) if screenshot else None
    feed = None
    if demo:
        feed = DemoFeed(paths.db, bridge.notify, tz=config.tz, pricer=sources.make_pricer, ingest=ingest,
                        live=shot is None, on_loaded=shot.loaded.emit if shot else None)
        feed.start()
    if shot is not None:
        try:
            return shot.take(wait_for_demo=demo)
        finally:
            if feed is not None:
                feed.stop()
            window.shutdown()
            blocks.close()

    desk = Desktop(app, window, actions, paths, config, base_url, ingest, blocks, hook_data_dir)
    bridge.committed.connect(desk.tray.request_refresh)
    if instance is not None:
        instance.show_requested.connect(actions.open_dashboard)
    watch = watch_team_database(paths.db, window, desk.tray)
    try:
        desk.start(show_window=demo or ingest_error is not None or recovered is not None or is_first_start(paths))
        return app.exec()
    finally:
        if feed is not None:
            feed.stop()
        if ingest is not None:
            ingest.stop()  # the writer's last commits still reach the monitor
        if watch is not None:
            watch.stop()
        desk.stop()
        window.shutdown()
        if instance is not None:
            instance.release()


def watch_team_database(database: Database, window: LazyWindow, tray: Tray) -> TeamWatch | None:
    """On a team database, other machines' writes and the server's reachability reach the
    window and the tray through one `TeamWatch`; on SQLite the writer's commits suffice."""
    if not is_team(database):
        return None
    watch = TeamWatch(database, parent=window)
    watch.changed.connect(window.on_remote_change)
    watch.changed.connect(tray.request_refresh)
    watch.state_changed.connect(window.set_connection_state)
    watch.state_changed.connect(tray.set_connection_state)
    watch.start()
    return watch


def served_url(paths: pathsmod.Paths, config: Any, ingest: Any, squatted: bool = False) -> str | None:
    """Where this data dir is served: by our ingest service, else by the llmtray that already
    serves it (`llmtray serve --port 8801`), else (nothing serves it) the configured port. The
    configured port alone sent one user's proxy calls to another llmtray's database (issue #17).
    None when another user's program holds that port: clients sent there would hand it their keys."""
    if ingest is not None:
        return ingest.url
    owner = discovery.live_owner(paths.ingest_file)
    if owner is not None:
        return owner.url
    return None if squatted else f"http://127.0.0.1:{config.port}"


def is_first_start(paths: pathsmod.Paths) -> bool:
    """No event stored yet: open the dashboard, whose onboarding panel says how to begin."""
    import sqlite3

    from llmtray.core import db as dbmod

    try:
        conn = dbmod.connect(paths.db, read_only=True)
        try:
            return conn.execute("SELECT 1 FROM event LIMIT 1").fetchone() is None
        finally:
            conn.close()
    except sqlite3.Error:
        return True


def app_icon() -> QIcon:
    """Window/taskbar icon from the bundled PNGs (each size drawn for it; no SVG plugin needed)."""
    icon = QIcon()
    for size in (16, 22, 24, 32, 48, 64, 128, 256, 512):
        icon.addFile(str(pathsmod.resource(f"icons/llmtray-{size}.png")), QSize(size, size))
    return icon


def repair_autostart() -> None:
    try:
        if fixed := autostart.repair():
            log.info("start-at-login entry repaired: %s", fixed)
    except OSError as exc:
        log.warning("could not check the start-at-login entry: %s", exc)


class Desktop(QObject):
    """The parts that live beside the window: tray icon, budget monitor, notifications, dialogs.

    The monitor's alerts go to the alert history (the window's Alerts tab), to native
    notifications through `NotificationRelay`, to the webhook when one is set, and by mail when
    [email] alerts is on (`MailService`, which also sends the digest).

    Signals: alerted() — the monitor stored an alert (emitted from its thread);
    budgets_changed() — a budget was added, changed or removed by any process (from its thread)."""

    alerted = Signal()
    budgets_changed = Signal()

    def __init__(self, app: QApplication, window: LazyWindow, actions: WindowActions, paths: pathsmod.Paths,
                 config: Any, base_url: str | None, ingest: Any, blocks: BlockActions,
                 hook_data_dir: Path | None = None):
        super().__init__(window)
        self.app, self.window, self.actions, self.paths, self.config = app, window, actions, paths, config
        self.proxy_url = f"{base_url}/proxy/openai/v1" if base_url else None
        self.tray = Tray(TrayActions(
            open_dashboard=actions.open_dashboard,
            import_usage=actions.open_import,
            budgets=self.open_budgets,
            settings=self.open_settings,
            snooze=self.snooze,
            copy_proxy_url=self.copy_proxy_url,
            copy_hook_snippet=lambda: app.clipboard().setText(hook_snippet(hook_data_dir)),
            quit=app.quit,
            unblock=blocks.lift,
            copy_otel_settings=self.copy_otel_settings,
        ), SummaryWorker(paths.db, config.tz, lambda q, now: with_subscription_value(
            summary(q, now, week_start=config.week_start), q, now)))
        self.tray.unavailable.connect(self._no_tray)
        icon_path = str(pathsmod.resource("icons/llmtray-128.png"))
        self.relay = NotificationRelay(self.tray.icon, icon_path, parent=self)
        self.relay.clicked.connect(actions.open_dashboard)
        self.blocks = blocks
        self.relay.block_requested.connect(blocks.block_feature)  # "Block <feature> for 1 h" pressed
        self.relay.block_offered.connect(self.offer_block)  # a balloon clicked: the offer in the window
        blocks.changed.connect(self.tray.request_refresh)
        blocks.changed.connect(window.refresh)
        blocks.failed.connect(window.show_notice)
        self.webhook = WebhookSink(url_loader=lambda: load_webhook_url(paths.webhook_file))
        # alert mails ([email] alerts) and the digest; a failure it records shows in the Alerts tab
        self.mail = MailService.for_paths(paths, on_result=lambda *_: self.alerted.emit())
        self.monitor = BudgetMonitor(paths.db, config, [DesktopSink(self.relay), self.webhook, self.mail],
                                     on_alert=lambda _alert: self.alerted.emit(),
                                     on_budgets_changed=self.budgets_changed.emit)
        self.alerted.connect(window.refresh)  # the Alerts tab shows it within the second
        self.budgets_changed.connect(self.tray.request_refresh)  # e.g. `llmtray budgets add` elsewhere
        self.budgets_changed.connect(window.refresh)
        if ingest is not None:
            ingest.add_listener(self.monitor.on_commit)
            if ingest.billing is not None:
                ingest.billing.add_alert_listener(self.monitor.deliver)  # the bill's drift alerts notify too
        self.agents = ingest.agents if ingest is not None else None  # the coding-agents watcher, if reading
        self._dialogs: list[QObject] = []

    @Slot()
    def copy_proxy_url(self) -> None:
        if self.proxy_url is None:  # the port is another user's: copying it would hand them API keys
            self.window.show_notice(f"No proxy URL to copy: {UNSAFE_PORT}")
            self.actions.open_dashboard()
            return
        self.app.clipboard().setText(self.proxy_url)

    @Slot(str)
    def copy_otel_settings(self, tool: str) -> None:
        """The lines that point `tool`'s OTLP exporter here (what `llmtray otel-env` prints), with
        the URL and token this data dir's llmtray announced in ingest.json (a small local file)."""
        running = discovery.live_owner(self.paths.ingest_file)
        if running is None:
            self.window.show_notice("No OpenTelemetry settings to copy: nothing is receiving calls for this "
                                    "data folder (see the message above, or start `llmtray serve`).")
            self.actions.open_dashboard()
            return
        self.app.clipboard().setText(otel_settings(tool, running.url, running.token))

    def start(self, *, show_window: bool) -> None:
        self.mail.start()
        self.monitor.start()
        self.tray.show()
        if show_window:
            self.actions.open_dashboard()

    def stop(self) -> None:
        self.monitor.stop()
        self.webhook.close()
        self.mail.close()
        self.relay.close()
        self.tray.close()
        self.blocks.close()

    @Slot()
    def _no_tray(self) -> None:
        self.app.setQuitOnLastWindowClosed(True)
        self.window.show_notice("No system tray found (on GNOME, install the AppIndicator extension): "
                                "alerts are shown in this window.")
        self.actions.open_dashboard()

    def snooze(self, until: Any) -> None:
        self.monitor.snooze(until)

    @Slot(str)
    def offer_block(self, feature: str) -> None:
        self.actions.open_dashboard()
        self.window.get().offer_block(feature)

    def open_budgets(self) -> None:
        from llmtray.gui.budgets_dialog import BudgetsDialog

        dialog = BudgetsDialog(self.paths.db, self.config.tz, self.config.week_start, self.window.dialog_parent())
        dialog.changed.connect(self.tray.request_refresh)
        dialog.changed.connect(self.window.refresh)
        dialog.show()
        dialog.raise_()

    def open_settings(self) -> None:
        from llmtray.gui.settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.paths, self.window.dialog_parent())
        dialog.saved.connect(lambda _config: self.mail.wake())  # new [email] settings apply at once
        dialog.saved.connect(lambda _config: self.window.show_notice(
            "Settings saved; a new port or time zone applies after restarting llmtray."))
        if self.agents is not None:  # agents on/off and billing apply from the next pass
            dialog.saved.connect(lambda config: self.agents.reconfigure(config.agents))
        dialog.show()
        dialog.raise_()


def start_ingest(paths: pathsmod.Paths, config: Any, bridge: CommitBridge, budget_entries: Any,
                 port: int | None, sync_bills: bool = True, watch_agents: bool = False) -> Any:
    """The embedded ingest service (API, proxy, writer), when this build has it; its writer
    announces each commit through the bridge. `port=None`: LLMTRAY_PORT or config.toml;
    the demo uses a free port so it never takes a real instance's."""
    service_cls = optional("llmtray.ingest.service", "IngestService")
    if service_cls is None:
        log.info("no ingest service in this build: the window shows the database only")
        return None
    service = service_cls(paths, config, port=port, budget_entries=budget_entries,
                          repair_database=False,  # prepare_database did, before anything opened the file
                          sync_bills=sync_bills, watch_agents=watch_agents)
    service.add_listener(bridge.notify)
    if service.agents is not None:  # coding agents' logs: "reading them" and clean-up notices
        service.agents.on_notice = bridge.notice.emit
    service.start()
    return service


class WindowActions(QObject):
    """What the onboarding buttons do (slots, so they run on the GUI thread)."""

    def __init__(self, window: LazyWindow, paths: pathsmod.Paths, import_dialog: Any):
        super().__init__(window)
        self._window, self._paths, self._import_dialog = window, paths, import_dialog

    @Slot()
    @Slot(object)
    def open_dashboard(self, *_: object) -> None:
        """Show, raise and focus the window (from the tray, a notification or a second start);
        the first time, this builds it."""
        window = self._window.get()
        window.showNormal()
        window.raise_()
        window.activateWindow()

    @Slot()
    def open_import(self) -> None:
        if self._import_dialog is not None:
            dialog = self._import_dialog(self._paths, self._window.dialog_parent())
            dialog.imported.connect(self._window.on_imported)  # imports write through their own Store
            dialog.import_removed.connect(self._window.on_import_removed)
            dialog.show()

    @Slot()
    def open_demo(self) -> None:
        """The demo opens as its own instance on its own database, so demo numbers never mix
        with real spend (DESIGN §7)."""
        QProcess.startDetached(sys.executable, demo_arguments(self._paths))


def demo_arguments(paths: pathsmod.Paths) -> list[str]:
    """The arguments for `sys.executable` that start the demo: `-m llmtray` first (the options
    after it are llmtray's; before it Python rejected `--data-dir`), then an explicit data dir
    (`--data-dir` or LLMTRAY_DATA_DIR), whose `demo/` folder the demo uses."""
    args = [] if getattr(sys, "frozen", False) else ["-m", "llmtray"]
    if paths.data == paths.config_dir:  # an explicit data dir: keep it
        args += ["--data-dir", str(paths.data)]
    return [*args, "--demo"]


class Screenshot(QObject):
    """Saves the window as a PNG after the first full refresh that follows the data being loaded
    (not after a fixed sleep: 90 demo days take longer on a slow machine).

    Signals: loaded() — emit it (from any thread) when the demo history is in the database."""

    loaded = Signal()

    def __init__(self, app: QApplication, window: Dashboard, path: Path):
        super().__init__(window)
        self._app, self._window, self._path = app, window, path
        self._armed = False
        self.saved = False
        window.settled.connect(self._settled)
        self.loaded.connect(self._arm)

    def take(self, *, wait_for_demo: bool) -> int:
        self._window.resize(1400, 900)
        self._window.show()
        if not wait_for_demo:
            self._arm()
        QTimer.singleShot(SCREENSHOT_TIMEOUT_MS, self._app.quit)
        self._app.exec()
        if not self.saved:
            print(f"llmtray: error: could not save a screenshot to {self._path}", file=sys.stderr)
            return 1
        return 0

    @Slot()
    def _arm(self) -> None:
        self._armed = True
        self._window.refresh()

    @Slot()
    def _settled(self) -> None:
        if not self._armed or self.saved:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self.saved = self._window.grab().save(str(self._path), "PNG")
        self._app.quit()


def quit_on_signals(app: QApplication) -> None:
    """Ctrl-C and SIGTERM quit cleanly (the ingest writer commits and checkpoints): the signal
    wakes Qt's loop through a socket, no polling timer (as qutebrowser's `misc/crashsignal.py`)."""
    if sys.platform == "win32":
        return
    import socket

    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno())
    notifier = QSocketNotifier(reader.fileno(), QSocketNotifier.Type.Read, app)

    def wake() -> None:
        try:
            reader.recv(64)
        except OSError:
            pass

    notifier.activated.connect(wake)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: app.quit())
    app._llmtray_wakeup = (reader, writer, notifier)  # keep the sockets alive with the app

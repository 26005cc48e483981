"""The Import dialog: pick or drop usage files, see what each one is and what it will add,
map the columns of an unknown CSV, choose what happens on overlapping days, import with a
progress bar and a cancel button, and read the result with every error's line.

Everything that touches a file or the database runs on a worker thread with its own `Store`
(DESIGN: the GUI never blocks); the dialog and the worker only talk through queued signals.
A file imports whole or not at all: Cancel stops at the next chunk and removes what the file
had stored, and a file with bad rows stores nothing (every error is still listed) unless
"Skip bad rows" is ticked, which imports its good rows. The "Previous imports" tab lists every
import and removes one, with its events, restoring the observed events it replaced.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication, QMetaObject, QObject, Qt, Signal, Slot
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QTextCursor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from llmtray.core.events import event_errors
from llmtray.core.wording import plural
from llmtray.importers import GENERIC, ImportFileError
from llmtray.importers.base import Options, Parsed, RowError
from llmtray.importers.datasets import HEADERS as DATASET_HEADERS
from llmtray.importers.datasets import NUMERIC
from llmtray.importers.datasets import cells as dataset_cells
from llmtray.importers.engine import Importer, ImportResult, Progress
from llmtray.importers.mapping import ColumnMapping, MappingStore, guess
from llmtray.importers.overlap import describe, describe_imports
from llmtray.importers.textfile import CsvReader, open_text
from llmtray.gui.qt_workarounds import WorkerThread
from llmtray.paths import Paths

PREVIEW_ROWS = 8
PREVIEW_SCAN = PREVIEW_ROWS * 50  # rows a preview reads at most, looking for events and bad rows
OVERLAP_CHOICES = (
    ("refuse", "Don't import; tell me which days overlap"),
    ("keep", "Keep both (I know they are different calls)"),
    ("skip", "Skip imported rows on those days"),
    ("replace", "Replace the observed events of those days"),
)
PREVIEW_FIELDS = ("ts", "provider", "model", "requests", "input_tokens", "output_tokens", "cost_usd")
_NOT_REPORTED = "(priced by llmtray)"
_NONE = "(none)"
# "No mapping" across an `object` signal: not None (PySide6 has mis-counted references to None
# sent through object signals between threads; see settings_dialog).
_NO_MAPPING: dict[str, str] = {}
_PREVIEW_MIN_HEIGHT = 430  # with the column-mapping form beside the preview
_PLAIN_PREVIEW_MIN_HEIGHT = 160
_READING = "reading…"
OUTCOME_COLORS = {"cancelled": "#9ca3af", "failed": "#dc3b3b"}


@dataclass
class FileInfo:
    """What the worker found out about one file (sent to the GUI thread; never None)."""

    path: str
    format_name: str = ""
    label: str = ""
    header: tuple[str, ...] = ()
    mapping: ColumnMapping | None = None
    preview_header: tuple[str, ...] = ()
    preview: list[tuple[str, ...]] = field(default_factory=list)
    bad_rows: int = 0  # among the rows the preview read (`read_rows`); the import names each one
    read_rows: int = 0
    error: str = ""


class ImportWorker(QObject):
    """Lives on its own QThread and opens its own Store there.

    Signals: inspected(FileInfo); started(index); progressed(index, Progress);
    file_done(index, ImportResult | str error); all_done(); datasets_listed(list of dataset
    dicts | str error); dataset_removed(id, Removal | str error)."""

    inspected = Signal(object)
    started = Signal(int)
    progressed = Signal(int, object)
    file_done = Signal(int, object)
    all_done = Signal()
    datasets_listed = Signal(object)
    dataset_removed = Signal(int, object)

    def __init__(self, paths: Paths, cancel: threading.Event):
        super().__init__()
        self._paths = paths
        self._cancel = cancel
        self._importer: Importer | None = None

    def _get_importer(self) -> Importer:
        if self._importer is None:
            from llmtray.core.pricing import Pricer, load_overrides
            from llmtray.core.store import Store

            self._paths.ensure()
            store = Store.open(self._paths.db, Pricer(load_overrides(self._paths.pricing_file)))
            self._importer = Importer(store, MappingStore(self._paths.config_dir))
        return self._importer

    @Slot(str, str, object)
    def inspect(self, path: str, format_name: str, mapping: object) -> None:
        """Detect the format (or take `format_name`) and read the first rows for the preview."""
        info = FileInfo(path)
        try:
            importer = self._get_importer()
            detection = importer.detect(Path(path), format_name or None)
            info.format_name, info.label = detection.format.name, detection.format.label
            info.header = detection.head.header or ()
            info.mapping = mapping if isinstance(mapping, ColumnMapping) else detection.mapping
            if detection.format is GENERIC and info.mapping is None:
                info.mapping = guess(info.header)
            if detection.format is GENERIC and info.mapping.problems(info.header):
                info.preview_header, info.preview = info.header, _raw_rows(Path(path))
            else:
                info.preview_header = PREVIEW_FIELDS
                info.preview, info.bad_rows, info.read_rows = _event_rows(detection.format, Path(path), info.mapping)
        except ImportFileError as exc:
            info.error = str(exc)
            if not info.format_name:
                self._fallback_to_generic(info)
        except Exception as exc:  # shown in the dialog; the worker must survive a bad file
            info.error = f"{type(exc).__name__}: {exc}"
        self.inspected.emit(info)

    def _fallback_to_generic(self, info: FileInfo) -> None:
        """An unknown CSV can still be imported through a column mapping: offer one."""
        try:
            with open_text(Path(info.path)) as text:
                header = CsvReader(text).header
        except ImportFileError:
            return
        if len(header) > 1:
            info.format_name, info.label, info.header = GENERIC.name, GENERIC.label, header
            info.mapping = guess(header)
            info.preview_header, info.preview = header, _raw_rows(Path(info.path))
            info.error = ""

    @Slot(object, str, bool)
    def run(self, jobs: list[tuple[str, str, object]], overlap: str, skip_bad_rows: bool) -> None:
        """Import each (path, format name, mapping) in turn until done or cancelled."""
        for index, (path, format_name, mapping) in enumerate(jobs):
            if self._cancel.is_set():
                break
            self.started.emit(index)
            try:
                result = self._get_importer().run(
                    Path(path), format_name=format_name or None, overlap=overlap,
                    mapping=mapping if isinstance(mapping, ColumnMapping) else None,
                    progress=lambda p, i=index: self.progressed.emit(i, p), cancel=self._cancel,
                    skip_bad_rows=skip_bad_rows,
                )
                self.file_done.emit(index, result)
            except Exception as exc:  # ImportFileError, a database error: reported per file
                self.file_done.emit(index, f"{exc}")
        self.all_done.emit()

    @Slot()
    def list_datasets(self) -> None:
        try:
            datasets: list[dict[str, Any]] | str = self._get_importer().store.list_datasets()
        except Exception as exc:  # a locked or broken database: said in the tab
            datasets = f"{type(exc).__name__}: {exc}"
        self.datasets_listed.emit(datasets)

    @Slot(int)
    def remove_dataset(self, dataset_id: int) -> None:
        """Remove one import (its events; the observed events it replaced come back)."""
        try:
            result: object = self._get_importer().remove(dataset_id)
        except Exception as exc:  # e.g. the database is locked: said in the tab, nothing removed
            result = f"{type(exc).__name__}: {exc}"
        self.dataset_removed.emit(dataset_id, result)

    @Slot()
    def release(self) -> None:
        """Close the worker's database connection — on the worker's thread, which owns it."""
        if self._importer is not None:
            self._importer.store.close()
            self._importer = None


def _raw_rows(path: Path) -> list[tuple[str, ...]]:
    with open_text(path) as text:
        out = []
        for record in CsvReader(text):
            out.append(tuple(record.cells))
            if len(out) >= PREVIEW_ROWS:
                break
    return out


def _event_rows(fmt: Any, path: Path, mapping: ColumnMapping | None) -> tuple[list[tuple[str, ...]], int, int]:
    """The first rows as events, and how many of the first few hundred rows the import would
    refuse (validated as the import does), of how many read: the preview said "ready" for a
    file with five bad rows. Never the whole file (a preview of a 40 MB file must be quick)."""
    out: list[tuple[str, ...]] = []
    bad = read = 0
    now = datetime.now(UTC)
    for item in fmt.items(path, Options(mapping=mapping)):
        if read >= PREVIEW_SCAN:
            break
        read += 1
        if isinstance(item, RowError) or isinstance(item, Parsed) and event_errors(item.data, now=now)[0] is None:
            bad += 1
        elif isinstance(item, Parsed) and len(out) < PREVIEW_ROWS:
            data = {"requests": 1, "input_tokens": 0, "output_tokens": 0, **item.data}
            data["cost_usd"] = _NOT_REPORTED if data.get("cost_usd") is None else _amount(data["cost_usd"])
            out.append(tuple("" if data.get(f) is None else str(data[f]) for f in PREVIEW_FIELDS))
    return out, bad, read


def _amount(value: object) -> str:
    """A cost as the user would write it: OpenAI's cost export pads amounts to 36 decimals."""
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return str(value)  # the import will name the row's error; the preview shows what is there
    return format(amount.normalize(), "f") if amount.is_finite() else str(value)


class MappingEditor(QGroupBox):
    """Which column fills each event field, for a CSV llmtray has no importer for.

    Signals: changed() whenever a choice changes."""

    changed = Signal()
    SHOWN = ("ts", "provider", "model", "input_tokens", "output_tokens", "cache_read_tokens", "requests",
             "cost_usd", "cost_cents", "feature", "user", "project")

    def __init__(self) -> None:
        super().__init__("Column mapping")
        self._combos: dict[str, QComboBox] = {}
        form = QFormLayout(self)
        form.setVerticalSpacing(4)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for target in self.SHOWN:
            combo = QComboBox()
            combo.currentIndexChanged.connect(self.changed)
            self._combos[target] = combo
            form.addRow(f"{target}:", combo)
        self.provider_constant = QLineEdit()
        self.provider_constant.setPlaceholderText("e.g. openai, when no column names the provider")
        self.provider_constant.textChanged.connect(self.changed)
        form.addRow("provider (fixed):", self.provider_constant)
        self.note = QLabel("Input tokens include cache tokens. Remembered for files with these columns.")
        self.note.setWordWrap(True)
        form.addRow(self.note)

    def load(self, header: tuple[str, ...], mapping: ColumnMapping | None) -> None:
        mapping = mapping or ColumnMapping()
        for target, combo in self._combos.items():
            combo.blockSignals(True)
            combo.clear()
            combo.addItems([_NONE, *header])
            column = mapping.columns.get(target)
            combo.setCurrentIndex(header.index(column) + 1 if column in header else 0)
            combo.blockSignals(False)
        self.provider_constant.blockSignals(True)
        self.provider_constant.setText(mapping.constants.get("provider", ""))
        self.provider_constant.blockSignals(False)

    def mapping(self) -> ColumnMapping:
        columns = {t: c.currentText() for t, c in self._combos.items() if c.currentIndex() > 0}
        constant = self.provider_constant.text().strip()
        return ColumnMapping(columns, {"provider": constant} if constant and "provider" not in columns else {})

    def set_combo(self, target: str, column: str) -> None:
        """Choose `column` for `target` (what a user does with the mouse)."""
        self._combos[target].setCurrentText(column)


class ImportDialog(QDialog):
    """Signals: imported(ImportResult) after each file that stored rows, and import_removed(Removal)
    after an import was removed, so the window can refresh."""

    imported = Signal(object)
    import_removed = Signal(object)
    _inspect = Signal(str, str, object)
    _run = Signal(object, str, bool)
    _list_datasets = Signal()
    _remove_dataset = Signal(int)

    def __init__(self, paths: Paths, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Import usage files")
        self.setAcceptDrops(True)
        self.resize(1000, 780)
        self._infos: list[FileInfo] = []
        self._results: dict[int, ImportResult | str] = {}
        self._job_rows: list[int] = []
        self._running = False
        self._cancel = threading.Event()

        self._thread = WorkerThread()
        self._thread.setObjectName("llmtray-import")
        self._worker = ImportWorker(paths, self._cancel)
        self._worker.moveToThread(self._thread)
        self._inspect.connect(self._worker.inspect)
        self._run.connect(self._worker.run)
        self._worker.inspected.connect(self._on_inspected)
        self._worker.started.connect(self._on_started)
        self._worker.progressed.connect(self._on_progress)
        self._worker.file_done.connect(self._on_file_done)
        self._worker.all_done.connect(self._on_all_done)
        self._list_datasets.connect(self._worker.list_datasets)
        self._remove_dataset.connect(self._worker.remove_dataset)
        self._worker.datasets_listed.connect(self._on_datasets_listed)
        self._worker.dataset_removed.connect(self._on_dataset_removed)
        self._datasets: list[dict[str, Any]] = []
        self._removing: int | None = None
        self._thread.start()
        app = QCoreApplication.instance()
        if app is not None:  # a parent window closed with the app must not leave the thread running
            app.aboutToQuit.connect(self.shutdown)

        self._build()
        self._update_buttons()

    # --- layout ----------------------------------------------------------------------

    def _build(self) -> None:
        intro = QLabel("Add provider exports (OpenAI, Anthropic, OpenRouter, LiteLLM), saved usage/cost API "
                       "pages, an llmtray export or any usage CSV — drop them here or use Add files. "
                       "Rows already imported are skipped, so importing a file again is safe.")
        intro.setWordWrap(True)

        self.files = QTableWidget(0, 3)
        self.files.setHorizontalHeaderLabels(["File", "Format", "Status"])
        self.files.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.files.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.files.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.files.verticalHeader().setVisible(False)
        header = self.files.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.files.itemSelectionChanged.connect(self._show_selected)

        self.add_button = QPushButton("Add files…")
        self.add_button.clicked.connect(self._pick_files)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self._remove_selected)
        file_buttons = QHBoxLayout()
        file_buttons.addWidget(self.add_button)
        file_buttons.addWidget(self.remove_button)
        file_buttons.addStretch(1)

        self.preview_label = QLabel("Preview")
        self.preview = QTableWidget(0, 0)
        self.preview.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.preview.verticalHeader().setVisible(False)
        self.preview.horizontalHeader().setStretchLastSection(True)
        self.mapping_editor = MappingEditor()
        self.mapping_editor.changed.connect(self._mapping_changed)
        self.mapping_editor.hide()
        preview_box = QWidget()
        preview_layout = QHBoxLayout(preview_box)
        preview_layout.setContentsMargins(0, 0, 0, 0)
        left = QVBoxLayout()
        left.addWidget(self.preview_label)
        left.addWidget(self.preview)
        preview_layout.addLayout(left, 3)
        preview_layout.addWidget(self.mapping_editor, 2)

        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.files)
        top_layout.addLayout(file_buttons)

        self.overlap = QComboBox()
        for key, text in OVERLAP_CHOICES:
            self.overlap.addItem(text, key)
        overlap_row = QHBoxLayout()
        overlap_label = QLabel("When imported days already have events recorded by hooks or the proxy:")
        overlap_label.setWordWrap(True)
        overlap_row.addWidget(overlap_label, 1)
        overlap_row.addWidget(self.overlap)
        self.skip_bad_rows = QCheckBox("Skip bad rows (import the good ones)")
        self.skip_bad_rows.setToolTip("Off: a file with any row that can't be read imports nothing, and every "
                                      "bad row is listed so you can fix the file.")

        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.progress.setFormat("")
        self.progress.hide()  # until there is something to show: an idle bar looks like an input field
        self.summary = QPlainTextEdit()
        self.summary.setReadOnly(True)
        self.summary.setPlaceholderText("The result of each import, with any rows that could not be read, shows here.")
        self.summary.setMaximumBlockCount(2000)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.setChildrenCollapsible(False)
        for pane, minimum in ((top, 130), (preview_box, _PREVIEW_MIN_HEIGHT), (self.summary, 80)):
            pane.setMinimumHeight(minimum)
            splitter.addWidget(pane)
        splitter.setSizes([160, 450, 100])
        self._splitter, self._preview_box = splitter, preview_box

        self.import_button = QPushButton("Import")
        self.import_button.setDefault(True)
        self.import_button.clicked.connect(self.start_import)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addStretch(0)  # holds the buttons right while the progress bar is hidden
        buttons.addWidget(self.progress, 1)
        buttons.addWidget(self.import_button)
        buttons.addWidget(self.cancel_button)

        import_tab = QWidget()
        import_layout = QVBoxLayout(import_tab)
        import_layout.addWidget(intro)
        import_layout.addWidget(splitter, 1)
        import_layout.addLayout(overlap_row)
        import_layout.addWidget(self.skip_bad_rows)
        import_layout.addLayout(buttons)

        self.tabs = QTabWidget()
        self.tabs.addTab(import_tab, "Import files")
        self.tabs.addTab(self._build_datasets_tab(), "Previous imports")
        self.tabs.currentChanged.connect(self._tab_changed)
        close_row = QHBoxLayout()
        close_row.addStretch(1)
        close_row.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs, 1)
        layout.addLayout(close_row)

    def _build_datasets_tab(self) -> QWidget:
        intro = QLabel("Every file imported so far. Removing an import deletes its events from llmtray; "
                       "events recorded by hooks or the proxy that it replaced (--overlap replace) come back. "
                       "The file itself is not touched.")
        intro.setWordWrap(True)
        self.datasets = QTableWidget(0, len(DATASET_HEADERS))
        self.datasets.setHorizontalHeaderLabels([h.capitalize() for h in DATASET_HEADERS])
        self.datasets.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.datasets.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.datasets.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.datasets.verticalHeader().setVisible(False)
        header = self.datasets.horizontalHeader()
        for column in range(len(DATASET_HEADERS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(DATASET_HEADERS.index("file"), QHeaderView.ResizeMode.Stretch)
        self.datasets.itemSelectionChanged.connect(self._update_buttons)
        self.datasets_status = QLabel("")
        self.datasets_status.setWordWrap(True)
        self.remove_import_button = QPushButton("Remove import…")
        self.remove_import_button.clicked.connect(self.remove_selected_import)
        row = QHBoxLayout()
        row.addWidget(self.datasets_status, 1)
        row.addWidget(self.remove_import_button)
        tab = QWidget()
        layout = QVBoxLayout(tab)
        layout.addWidget(intro)
        layout.addWidget(self.datasets, 1)
        layout.addLayout(row)
        return tab

    # --- files -----------------------------------------------------------------------

    def add_files(self, paths: list[str | Path]) -> None:
        """Queue files (from the picker, a drop, or a test) and inspect them on the worker."""
        for path in paths:
            path = str(Path(path).resolve())
            if any(info.path == path for info in self._infos):
                continue
            self._infos.append(FileInfo(path))
            row = self.files.rowCount()
            self.files.insertRow(row)
            self.files.setItem(row, 0, QTableWidgetItem(Path(path).name))
            self.files.setItem(row, 1, QTableWidgetItem("detecting…"))
            self.files.setItem(row, 2, QTableWidgetItem(""))
            self.files.item(row, 0).setToolTip(path)
            self._inspect.emit(path, "", _NO_MAPPING)
        if self.files.currentRow() < 0 and self._infos:
            self.files.selectRow(0)
        self._update_buttons()

    def _pick_files(self) -> None:
        chosen, _ = QFileDialog.getOpenFileNames(self, "Import usage files", "",
                                                 "Usage files (*.csv *.json *.jsonl *.txt);;All files (*)")
        self.add_files(chosen)

    def _remove_selected(self) -> None:
        row = self.files.currentRow()
        if row >= 0 and not self._running:
            del self._infos[row]
            self.files.removeRow(row)
            self._show_selected()
            self._update_buttons()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        self.add_files([u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()])
        event.acceptProposedAction()

    @Slot(object)
    def _on_inspected(self, info: FileInfo) -> None:
        row = next((i for i, known in enumerate(self._infos) if known.path == info.path), None)
        if row is None:
            return  # removed meanwhile
        self._infos[row] = info
        self.files.item(row, 1).setText(info.label or "not recognised")
        status = info.error or (self._mapping_status(info) if info.format_name == GENERIC.name else "ready")
        if status == "ready" and info.bad_rows:
            among = f"of {info.read_rows:,}" if info.read_rows < PREVIEW_SCAN else f"in the first {info.read_rows:,}"
            status = f"{plural(info.bad_rows, 'bad row')} {among}: fix the file, or tick \"Skip bad rows\""
        self._set_status(row, status, error=bool(info.error or info.bad_rows))
        if row == self.files.currentRow():
            self._show_selected()
        self._update_buttons()

    @staticmethod
    def _mapping_status(info: FileInfo) -> str:
        problems = info.mapping.problems(info.header) if info.mapping else ["no mapping"]
        return "ready" if not problems else "map columns: " + "; ".join(problems)

    def _set_status(self, row: int, text: str, *, error: bool = False) -> None:
        item = self.files.item(row, 2)
        item.setText(text if len(text) < 90 else text[:87] + "…")
        item.setToolTip(text)
        item.setForeground(Qt.GlobalColor.darkRed if error else self.palette().text())

    def _show_selected(self) -> None:
        row = self.files.currentRow()
        info = self._infos[row] if 0 <= row < len(self._infos) else None
        if info is None:
            self.preview.clear()
            self.preview.setRowCount(0)
            self.preview.setColumnCount(0)
            self.mapping_editor.hide()
            return
        self.preview_label.setText(f"Preview of {Path(info.path).name}" +
                                   (" (rows as they will be imported)" if info.preview_header == PREVIEW_FIELDS
                                    else " (raw rows)"))
        self.preview.clear()
        self.preview.setColumnCount(len(info.preview_header))
        self.preview.setHorizontalHeaderLabels(list(info.preview_header))
        self.preview.setRowCount(len(info.preview))
        for r, cells in enumerate(info.preview):
            for c, value in enumerate(cells):
                self.preview.setItem(r, c, QTableWidgetItem(value))
        self.preview.resizeColumnsToContents()
        generic = info.format_name == GENERIC.name
        self.mapping_editor.setVisible(generic)
        # The mapping form needs its height; a plain preview can give room to the results.
        self._preview_box.setMinimumHeight(_PREVIEW_MIN_HEIGHT if generic else _PLAIN_PREVIEW_MIN_HEIGHT)
        if generic:
            self.mapping_editor.load(info.header, info.mapping)

    def _mapping_changed(self) -> None:
        row = self.files.currentRow()
        if not (0 <= row < len(self._infos)) or self._infos[row].format_name != GENERIC.name:
            return
        info = self._infos[row]
        info.mapping = self.mapping_editor.mapping()
        self._set_status(row, self._mapping_status(info))
        self._inspect.emit(info.path, GENERIC.name, info.mapping)
        self._update_buttons()

    # --- importing ---------------------------------------------------------------------

    def _importable(self) -> list[int]:
        return [i for i, info in enumerate(self._infos) if info.format_name and not info.error
                and (info.format_name != GENERIC.name or self._mapping_status(info) == "ready")]

    def start_import(self) -> None:
        rows = self._importable()
        if not rows or self._running:
            return
        self._running = True
        self._cancel.clear()
        self._results.clear()
        self._job_rows = rows
        self.summary.clear()
        self._show_outcome("")
        self.progress.setRange(0, 0)  # busy until the first report: a first pass (overlap) reports none
        self.progress.show()
        jobs = [(self._infos[i].path, self._infos[i].format_name, self._infos[i].mapping or _NO_MAPPING)
                for i in rows]
        for i in rows:
            self._set_status(i, "waiting")
        self._run.emit(jobs, self.overlap.currentData(), self.skip_bad_rows.isChecked())
        self._update_buttons()

    def cancel(self) -> None:
        """Stop after the current chunk; the file being imported leaves nothing stored."""
        if self._running:
            self._cancel.set()
            self.progress.setFormat("cancelling…")

    @Slot(int)
    def _on_started(self, index: int) -> None:
        row = self._job_rows[index]
        self._set_status(row, "importing…")
        self.progress.setFormat(f"{Path(self._infos[row].path).name}: %p%")

    @Slot(int, object)
    def _on_progress(self, index: int, progress: Progress) -> None:
        if progress.fraction <= 0 and index == 0:
            return  # still busy: a bar at 0 % for seconds looked stuck
        self.progress.setRange(0, 1000)
        done = (index + progress.fraction) / len(self._job_rows)
        self.progress.setValue(int(done * 1000))
        self._set_status(self._job_rows[index], f"{progress.rows_read:,} rows read, {progress.imported:,} imported")

    @Slot(int, object)
    def _on_file_done(self, index: int, result: ImportResult | str) -> None:
        row = self._job_rows[index]
        self._results[index] = result
        name = Path(self._infos[row].path).name
        if isinstance(result, str):
            self._set_status(row, f"failed: {result}", error=True)
            self.summary.appendPlainText(f"{name}: failed: {result}\n")
            return
        self._set_status(row, _status(result), error=not result.ok)
        self.summary.appendPlainText(_summary(name, result))
        if result.imported:
            self.imported.emit(result)

    @Slot()
    def _on_all_done(self) -> None:
        self._running = False
        cancelled = self._cancel.is_set()
        troubled = sum(1 for r in self._results.values() if isinstance(r, str) or not r.ok)
        self.progress.setRange(0, 1000)
        if cancelled:
            self.progress.setFormat("cancelled")
            self._show_outcome("cancelled")
        else:
            self.progress.setFormat(f"done — {troubled} of {len(self._results)} file(s) with problems (below)"
                                    if troubled else "done")
            self.progress.setValue(1000)
            self._show_outcome("failed" if troubled else "")
        if troubled:
            self._make_room_for_summary()
        self.summary.moveCursor(QTextCursor.MoveOperation.Start)  # first file's result first
        if self.tabs.currentIndex() == 1:  # watched the list meanwhile: show the new import
            self.refresh_datasets()
        self._update_buttons()

    def _show_outcome(self, outcome: str) -> None:
        """The bar's colour says how it ended: grey when cancelled, red with problems (it stayed
        the accent blue of a success either way)."""
        color = OUTCOME_COLORS.get(outcome)
        self.progress.setStyleSheet(
            "QProgressBar { border: 1px solid #c4c8cf; border-radius: 3px; background: white; text-align: center; }"
            f"QProgressBar::chunk {{ background-color: {color}; }}" if color else "")

    def _make_room_for_summary(self) -> None:
        """Errors are what the user reads now: grow the results pane, up to its text or half of
        what the preview and it share, at the preview's expense."""
        top, preview, summary = self._splitter.sizes()
        text = self.summary.document().blockCount() * self.summary.fontMetrics().lineSpacing() + 16
        wanted = min(text, (preview + summary) // 2)
        give = min(wanted - summary, preview - self._preview_box.minimumHeight())
        if give > 0:
            self._splitter.setSizes([top, preview - give, summary + give])

    # --- previous imports -------------------------------------------------------------------

    def _tab_changed(self, index: int) -> None:
        if index == 1:
            self.refresh_datasets()

    def refresh_datasets(self) -> None:
        """Read the list again, on the worker (after an import it waits its turn there)."""
        self.datasets_status.setText(_READING)
        self._list_datasets.emit()

    @Slot(object)
    def _on_datasets_listed(self, datasets: list[dict[str, Any]] | str) -> None:
        if isinstance(datasets, str):
            self.datasets_status.setText(f"Could not read the imports: {datasets}")
            return
        self._datasets = list(reversed(datasets))  # newest first
        self.datasets.clearSelection()  # a row index now may be another import than before
        self.datasets.setCurrentCell(-1, -1)
        self.datasets.setRowCount(len(self._datasets))
        for r, dataset in enumerate(self._datasets):
            for c, text in enumerate(dataset_cells(dataset)):
                item = QTableWidgetItem(text)
                if DATASET_HEADERS[c] in NUMERIC:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if c == DATASET_HEADERS.index("file") and dataset.get("path"):
                    item.setToolTip(dataset["path"])
                self.datasets.setItem(r, c, item)
        if self.datasets_status.text() == _READING:  # not a removal's outcome, which stays
            self.datasets_status.setText(f"{len(self._datasets)} import(s)" if self._datasets else "No imports yet.")
        self._update_buttons()

    def _selected_dataset(self) -> dict[str, Any] | None:
        row = self.datasets.currentRow()
        return self._datasets[row] if 0 <= row < len(self._datasets) and self.datasets.selectedItems() else None

    def confirm_removal(self, dataset: dict[str, Any]) -> bool:
        """Ask before deleting (a separate method, so tests can answer for the user)."""
        restores = (f" The {dataset['replaced']:,} observed events it replaced come back."
                    if dataset["replaced"] else "")
        answer = QMessageBox.question(
            self, "Remove import",
            f"Remove import {dataset['id']} ({dataset['name']})?\n\nIts {dataset['events']:,} events are deleted "
            f"from llmtray.{restores} You can import the file again later.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Cancel)
        return answer == QMessageBox.StandardButton.Yes

    def remove_selected_import(self) -> None:
        dataset = self._selected_dataset()
        if dataset is None or self._running or self._removing is not None or not self.confirm_removal(dataset):
            return
        self._removing = dataset["id"]
        self.datasets_status.setText(f"Removing import {dataset['id']} ({dataset['name']})…")
        self._remove_dataset.emit(dataset["id"])
        self._update_buttons()

    @Slot(int, object)
    def _on_dataset_removed(self, dataset_id: int, result: object) -> None:
        self._removing = None
        if isinstance(result, str):
            self.datasets_status.setText(f"Import {dataset_id} was not removed: {result}")
        else:
            restored = getattr(result, "restored", 0)
            self.datasets_status.setText(
                f"Removed import {dataset_id}: {getattr(result, 'removed', 0):,} events deleted"
                + (f", {restored:,} observed events it had replaced restored." if restored else "."))
            self.import_removed.emit(result)
        self._list_datasets.emit()
        self._update_buttons()

    def _update_buttons(self) -> None:
        self.remove_import_button.setEnabled(not self._running and self._removing is None
                                             and self._selected_dataset() is not None)
        self.import_button.setEnabled(not self._running and bool(self._importable()))
        self.cancel_button.setEnabled(self._running)
        self.add_button.setEnabled(not self._running)
        self.remove_button.setEnabled(not self._running and self.files.currentRow() >= 0)
        self.overlap.setEnabled(not self._running)
        self.skip_bad_rows.setEnabled(not self._running)

    @property
    def running(self) -> bool:
        return self._running

    def results(self) -> list[ImportResult | str]:
        return [self._results[i] for i in sorted(self._results)]

    # --- shutting down -----------------------------------------------------------------

    def done(self, code: int) -> None:  # QDialog.close/reject/accept end here
        self.shutdown()
        super().done(code)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        self.shutdown()
        super().closeEvent(event)

    @Slot()
    def shutdown(self) -> None:
        """Cancel a running import, close the worker's database and stop its thread."""
        if not self._thread.isRunning():
            return
        self._cancel.set()
        QMetaObject.invokeMethod(self._worker, "release", Qt.ConnectionType.BlockingQueuedConnection)
        self._thread.quit()
        self._thread.wait()


def _status(r: ImportResult) -> str:
    if r.state == "refused":
        return "refused: overlapping days"
    if r.state == "rejected":
        return f"not imported: {r.error_count:,} bad rows"
    if r.state == "cancelled":
        return "cancelled: nothing imported"
    text = f"{r.state}: {r.imported:,} imported, {r.duplicates:,} duplicates"
    return text + (f", {r.error_count:,} errors" if r.error_count else "")


def _summary(name: str, r: ImportResult) -> str:
    lines = [f"{name} — {r.label}" + (f" (dataset {r.dataset_id})" if r.dataset_id is not None else "")]
    if r.state == "refused":
        lines.append(f"  Not imported: these days already have events recorded by hooks or the proxy: "
                     f"{describe(r.overlap)}.")
        lines.append("  Choose keep, skip or replace above and import again.")
        return "\n".join(lines) + "\n"
    lines.append(f"  {r.rows_read:,} rows read, {r.imported:,} imported, {r.duplicates:,} already there, "
                 f"{r.skipped:,} without usage, {r.error_count:,} errors")
    if r.overlap:
        action = (f"{r.overlap_skipped:,} rows skipped" if r.overlap_skipped else
                  f"{r.replaced:,} observed events replaced" if r.replaced else "kept both")
        lines.append(f"  Overlapping days {describe(r.overlap)}: {action}.")
    if r.other_imports:
        lines.append(f"  Note: other imports cover the same days: {describe_imports(r.other_imports)}. A provider's "
                     "usage and cost exports describe the same spend: keep one of them.")
    if r.state == "rejected":
        lines.append(f"  Nothing was imported from this file: {r.error_count:,} bad row{'s' if r.error_count != 1 else ''} "
                     "(below). Fix them, or tick \"Skip bad rows\" to import the good ones.")
    elif r.state == "cancelled":
        lines.append("  Cancelled: nothing was imported from this file.")
    lines.extend(f"  {e}" for e in r.errors)
    if r.error_count > len(r.errors):
        lines.append(f"  … and {r.error_count - len(r.errors):,} more errors")
    return "\n".join(lines) + "\n"

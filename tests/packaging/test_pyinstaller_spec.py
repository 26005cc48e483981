"""The PyInstaller spec's module lists against the code they describe (the bundle itself is built
and smoke-tested by packaging/pyinstaller/build.sh, outside the test suite: it takes minutes)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pyqtgraph

from .packaging_kit import PACKAGING, ROOT

SPEC = PACKAGING / "pyinstaller" / "llmtray.spec"


def spec_list(name: str) -> list[str]:
    for node in ast.parse(SPEC.read_text()).body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == [name]:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{SPEC.name} has no {name} list")


def qt_modules_imported_by_llmtray() -> set[str]:
    found = set()
    for path in (ROOT / "llmtray").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            found |= {n.split(".")[1] for n in names if n.startswith("PySide6.Qt")}
    return found


def test_no_excluded_qt_module_is_imported_by_llmtray():
    used = qt_modules_imported_by_llmtray()
    assert {"QtCore", "QtGui", "QtWidgets"} <= used  # the scan sees imports at all
    assert used.isdisjoint(spec_list("QT_EXCLUDES"))


def test_pyqtgraphs_importlib_qt_modules_are_hidden_imports():
    pattern = re.compile(r"""^\s*\w+\s*=\s*importlib\.import_module\(f["']\{QT_LIB\}\.(Qt\w+)["']\)""", re.M)
    root = Path(pyqtgraph.__file__).parent
    needed = {m for path in root.rglob("*.py") if not {"examples", "opengl"} & set(path.relative_to(root).parts)
              for m in pattern.findall(path.read_text(encoding="utf-8"))}
    assert needed, "the pattern no longer matches pyqtgraph's imports: check the spec's QT_HIDDEN by hand"
    hidden = set(spec_list("QT_HIDDEN"))
    assert needed <= hidden
    assert hidden.isdisjoint(spec_list("QT_EXCLUDES"))


def test_spec_is_valid_python():
    compile(SPEC.read_text(), str(SPEC), "exec")

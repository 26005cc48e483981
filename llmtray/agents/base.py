"""The shape of one agent's adapter, and the directory walk they share.

An adapter knows where its agent keeps logs (`roots`, following `HOME` and the agent's own
variables so tests point them anywhere), which files are logs, which cheap byte markers a line
must contain to be worth `json.loads`, and how to turn records into calls (`Reader`, one per file,
whose running state is persisted with the file's offset).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from llmtray.agents.calls import Call

OnError = Callable[[str, str], None]  # (where, why)


class Reader(Protocol):
    """Parses one file's records in order; `state()` is saved with the file's offset and handed
    back on the next run, so resuming mid-file continues exactly (Codex's running totals)."""

    def feed(self, record: dict[str, Any], line: int) -> Call | list[Call] | None:
        """The call(s) in one record: usually one or none; a checkpoint of a whole list, several."""

    def state(self) -> dict[str, Any] | None: ...


class Agent(Protocol):
    source: str
    markers: tuple[bytes, ...]

    def roots(self, env: Mapping[str, str]) -> list[Path]: ...

    def files(self, root: Path, on_error: OnError) -> Iterator[Path]: ...

    def reader(self, path: Path, state: dict[str, Any] | None) -> Reader: ...

    def mode(self, path: Path) -> str:
        """`lines` (appended JSON lines), `document` (one JSON document, rewritten whole) or
        `sqlite` (a database the agent writes)."""


def home(env: Mapping[str, str]) -> Path:
    """`HOME` (or `USERPROFILE` on Windows) from `env`, so a test's environment decides."""
    value = env.get("HOME") or env.get("USERPROFILE")
    return Path(value) if value else Path.home()


def walk(root: Path, pattern: str, on_error: OnError) -> Iterator[Path]:
    """Files under `root` (any depth) whose name matches `pattern`. An unreadable directory is
    reported through `on_error` and skipped; the rest of the tree is still read."""
    def report(exc: OSError) -> None:
        on_error(str(exc.filename or root), exc.strerror or str(exc))

    for folder, dirs, names in os.walk(root, onerror=report):
        dirs.sort()
        for name in sorted(names):
            if fnmatch.fnmatchcase(name, pattern):
                yield Path(folder, name)


def unique(paths: list[Path]) -> list[Path]:
    """Existing directories, each once (two variables may name the same folder)."""
    seen: set[str] = set()
    out: list[Path] = []
    for p in paths:
        try:
            key = str(p.resolve())
        except OSError:
            continue
        if key not in seen and p.is_dir():
            seen.add(key)
            out.append(p)
    return out

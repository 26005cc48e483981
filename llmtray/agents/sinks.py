"""Where the scanner stores calls: straight into a `Store` (the CLI), or through the ingest
`Writer` (inside the app and `serve`, so the budget monitor, tray and dashboard hear of every
commit, and there is one writer for the database)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from llmtray.core.events import UsageEvent

if TYPE_CHECKING:
    from llmtray.core.store import AddResult, Store
    from llmtray.ingest.writer import Writer


class StoreSink:
    """Opens the store on the first write: a scan with nothing new never loads the price data."""

    def __init__(self, open_store: Callable[[], Store]):
        self._open = open_store
        self.store: Store | None = None

    def opened(self) -> Store:
        if self.store is None:
            self.store = self._open()
        return self.store

    def write(self, events: list[UsageEvent], source: str, replace: bool) -> AddResult:
        from llmtray.core.store import Batch

        result = self.opened().add_many([Batch(events, source, replace=replace)])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


class WriterSink:
    def __init__(self, writer: Writer):
        self.writer = writer

    def write(self, events: list[UsageEvent], source: str, replace: bool) -> AddResult:
        return self.writer.submit(events, source, replace=replace).result()

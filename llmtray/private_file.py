"""Files only their owner may read (the webhook URL, `ingest.json`): written whole or not at all.

Standard library only: the SDK hooks import `llmtray.ingest.discovery`, which uses this."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """Replace `path` atomically with `text`, in a file created with mode 0600 from the start
    (mkstemp), so neither a half-written file nor a world-readable instant is ever seen."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

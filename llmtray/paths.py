"""Where llmtray keeps things: data, config, runtime files and bundled resources, in one place.

With `--data-dir` (or `LLMTRAY_DATA_DIR`) everything — database, config, spool, `ingest.json` —
lives in that folder, so tests and the demo never meet a real installation.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from llmtray.core.dburl import Database, PostgresUrl

APP = "llmtray"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Paths:
    data: Path
    config_dir: Path
    runtime_dir: Path
    # `--database` (DESIGN §16): a team's PostgreSQL, or a SQLite file elsewhere; then `db` is
    # that. In team mode the data dir's own file (`local_db`) keeps this machine's own state.
    database: Database | None = None

    @property
    def db(self) -> Database:
        return self.database if self.database is not None else self.local_db

    @property
    def team(self) -> bool:
        """Whether the events go to a team's PostgreSQL."""
        return isinstance(self.database, PostgresUrl)

    @property
    def local_db(self) -> Path:
        return self.data / "llmtray.db"

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def pricing_file(self) -> Path:
        return self.config_dir / "pricing.toml"

    @property
    def ingest_file(self) -> Path:
        return self.runtime_dir / "ingest.json"

    @property
    def token_file(self) -> Path:
        return self.config_dir / "token"

    @property
    def webhook_file(self) -> Path:
        """The webhook URL where no keyring works (0600); see `core.alerts.save_webhook_url`."""
        return self.config_dir / "webhook_url"

    @property
    def spool_dir(self) -> Path:
        return self.data / "spool"

    def ensure(self) -> Paths:
        """Create the folders (0700), and log a warning for each one another user could write."""
        for d in self._folders():
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        for warning in self.exposed():
            log.warning("%s", warning)
        return self

    def exposed(self) -> list[str]:
        """Why another user could write one of these folders (empty: nobody else can)."""
        from llmtray.core.trust import exposure

        return [w for d in self._folders() if (w := exposure(d)) is not None]

    def _folders(self) -> tuple[Path, ...]:
        return tuple(dict.fromkeys((self.data, self.config_dir, self.runtime_dir)))


def resolve(data_dir: str | os.PathLike[str] | None = None) -> Paths:
    """The folders for this run: an explicit data dir wins, then `LLMTRAY_DATA_DIR`, then the
    platform's user folders (XDG on Linux, Application Support on macOS, AppData on Windows)."""
    explicit = data_dir or os.environ.get("LLMTRAY_DATA_DIR")
    if explicit:
        root = Path(explicit).expanduser().resolve()
        return Paths(root, root, root)
    runtime = platformdirs.user_runtime_dir(APP) if sys.platform.startswith("linux") else None
    return Paths(
        Path(platformdirs.user_data_dir(APP)),
        Path(platformdirs.user_config_dir(APP)),
        Path(runtime or platformdirs.user_state_dir(APP)),
    )


def demo_paths(base: Paths) -> Paths:
    """`--demo` runs on its own database so demo data never mixes with real spend."""
    demo = base.data / "demo"
    return Paths(demo, demo, demo)


def resource(name: str) -> Path:
    """A bundled file from `resources/`: inside the wheel (llmtray/resources), a source
    checkout (../resources) or a PyInstaller bundle (sys._MEIPASS/resources)."""
    here = Path(__file__).resolve().parent
    candidates = [here / "resources" / name, here.parent / "resources" / name]
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        candidates.insert(0, Path(bundle) / "resources" / name)
    for path in candidates:
        if path.exists():
            return path
    raise FileNotFoundError(f"resource {name!r} not found (looked in {', '.join(str(c.parent) for c in candidates)})")

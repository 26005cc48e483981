"""Who listens on a local TCP port: the owning uid from `/proc/net/tcp` (Linux).

A port on 127.0.0.1 is first come, first served for every user of the machine. When ours is
taken, whether the holder answers `/v1/health` like llmtray says nothing about whose it is: a
squatter can answer the same, and the user's proxy clients would then send it their API keys.
The kernel knows the listener's uid; where it doesn't tell (macOS, Windows), None.
"""

from __future__ import annotations

from pathlib import Path

LISTEN = "0A"
_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))


def listener_uid(port: int, tables: tuple[Path, ...] = _TABLES) -> int | None:
    """The uid of a process listening on `port` (any local address), or None if unknown."""
    for table in tables:
        try:
            lines = table.read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 8 or fields[3] != LISTEN:
                continue
            local_port = fields[1].rsplit(":", 1)[-1]
            if int(local_port, 16) == port:
                return int(fields[7])
    return None

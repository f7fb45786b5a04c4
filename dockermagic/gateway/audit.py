"""The audit log: one JSON line per run, append-only, rotated daily.

``<audit_dir>/audit.jsonl`` holds today's records; at the first record after
midnight it is renamed ``audit.jsonl.YYYY-MM-DD`` (the naming of the other
logs, :mod:`dockermagic.logs`) and a new one begins. The folder is created
``0750`` and the files ``0640``, owned by whoever runs the gateway: students,
whose kernels run as other users, can neither write nor (outside the
gateway's group) read it. Only the gateway process writes it, from its event
loop, so lines never interleave.

A record::

    {"time": "2026-11-26T10:00:00.123+00:00", "user": "alice", "kind": "run",
     "session": null, "language": "python", "image": "dockermagic/python:offline",
     "image_digest": "sha256:...", "code_sha256": "...", "limits": {...},
     "status": "ok", "exit_code": 0, "duration": 0.21, "cpu_seconds": 0.02,
     "peak_memory_bytes": 9437184}

Pure file logic, no Docker calls.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["AUDIT_FILE", "AuditLog", "read_audit"]

AUDIT_FILE = "audit.jsonl"
_DIR_MODE = 0o750
_FILE_MODE = 0o640
#: Longest record line read back (a longer line is skipped, not loaded).
_MAX_LINE = 1024**2


class AuditLog:
    """Appends audit records to a daily-rotated JSON-lines file.

    Args:
        directory: The audit folder (created ``0750`` when missing).
        clock: Returns the current time (tests pass a fake one).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        clock: Any = None,
    ) -> None:
        self.directory = Path(directory)
        self._clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self.directory.mkdir(parents=True, exist_ok=True, mode=_DIR_MODE)
        os.chmod(self.directory, _DIR_MODE)
        self.path = self.directory / AUDIT_FILE
        self._fd: int | None = None
        self._day: dt.date | None = None
        # Records come from the gateway's worker threads; rotation must not race.
        self._lock = threading.Lock()

    def write(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Append one record (its ``time`` is added).

        Args:
            record: The record's fields (JSON-encodable).

        Returns:
            The record as written.
        """
        with self._lock:
            now = self._clock()
            line = {"time": now.isoformat(timespec="milliseconds"), **record}
            self._rotate(now.date())
            data = (json.dumps(line, ensure_ascii=False, default=str) + "\n").encode("utf-8")
            assert self._fd is not None
            # One write() of an O_APPEND file: the line lands whole, at the end.
            os.write(self._fd, data)
            return line

    def close(self) -> None:
        """Close the file (a later record opens it again)."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _rotate(self, today: dt.date) -> None:
        if self._day is None and self.path.exists():
            # A gateway restarted on a later day: yesterday's file moves aside first.
            self._day = dt.datetime.fromtimestamp(self.path.stat().st_mtime, dt.timezone.utc).date()
        if self._day is not None and self._day != today and self.path.exists():
            self._close()
            target = self.path.with_name(f"{AUDIT_FILE}.{self._day.isoformat()}")
            if not target.exists():
                self.path.rename(target)
        self._day = today
        if self._fd is None:
            self._fd = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE
            )
            os.fchmod(self._fd, _FILE_MODE)


def read_audit(
    directory: str | os.PathLike[str], *, user: str | None = None
) -> Iterator[dict[str, Any]]:
    """The records of an audit folder, oldest first (rotated files included).

    Args:
        directory: The audit folder.
        user: Only this user's records.

    Yields:
        Records; a line that is not a JSON object is skipped.
    """
    folder = Path(directory)
    rotated = sorted(folder.glob(f"{AUDIT_FILE}.*"))
    for path in [*rotated, folder / AUDIT_FILE]:
        if not path.is_file():
            continue
        with path.open("rb") as handle:
            while raw := handle.readline(_MAX_LINE + 1):
                if len(raw) > _MAX_LINE:
                    # A line longer than any record the gateway writes: skip the rest of it.
                    while raw and not raw.endswith(b"\n"):
                        raw = handle.readline(_MAX_LINE + 1)
                    continue
                record: Any = None
                with contextlib.suppress(ValueError):
                    record = json.loads(raw)
                if not isinstance(record, dict):
                    continue
                if user is None or record.get("user") == user:
                    yield record

"""One writer per store: a lock file naming its holder, and temporary folders per run.

`ingest` and `features` write into a store version folder. Two runs writing the same
folder at once would delete or overwrite each other's half-written participants, so each
run holds ``<folder>/.mmhe.lock`` (created atomically, holding the holder's pid, host,
command and start time) while it writes. A second run waits up to `wait_s` seconds and
then refuses with one line naming the holder. A lock left by a process that is gone
(same host, pid no longer alive) is taken over, and said so.

Temporary folders carry the run's id (``.tmp-<run id>-<name>``); a run removes leftovers
of other runs only while it holds the lock, i.e. when no other writer can own them.

>>> with StoreLock(version_dir, command="ingest") as lock:   # doctest: +SKIP
...     tmp = lock.temp_name("sub-001")
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from mmhe.errors import MMHEError

LOCK_NAME = ".mmhe.lock"
TEMP_PREFIX = ".tmp-"


class StoreBusyError(MMHEError):
    """Another process is writing the same store folder."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _describe(holder: dict[str, Any]) -> str:
    return (
        f"pid {holder.get('pid')} on {holder.get('host')} "
        f"(mmhe {holder.get('command', '?')}, since {holder.get('started', '?')})"
    )


class StoreLock:
    """Exclusive writer lock on a store folder (a context manager).

    folder : the folder written (a store version folder); created if missing.
    command : what the holder does (``ingest``, ``features``), shown to a waiting run.
    wait_s : seconds to wait for another holder before `StoreBusyError` (0: refuse now).
    poll_s : how often a waiting run looks again.
    """

    def __init__(
        self, folder: str | Path, *, command: str, wait_s: float = 0.0, poll_s: float = 0.5
    ) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.command = command
        self.wait_s = max(0.0, float(wait_s))
        self.poll_s = poll_s
        self.run_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.took_over: dict[str, Any] | None = None
        self._held = False

    def temp_name(self, name: str) -> str:
        """Name of this run's temporary folder for `name` (rename it into place when done)."""
        return f"{TEMP_PREFIX}{self.run_id}-{name}"

    def clean_leftovers(self, parent: str | Path) -> list[Path]:
        """Remove temporary folders of other (dead) runs under `parent`; needs the lock."""
        if not self._held:
            raise RuntimeError("clean_leftovers needs the lock")
        removed = []
        for leftover in Path(parent).glob(f"{TEMP_PREFIX}*"):
            if not leftover.name.startswith(f"{TEMP_PREFIX}{self.run_id}-"):
                shutil.rmtree(leftover, ignore_errors=True)
                removed.append(leftover)
        return removed

    def _holder(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"pid": None, "host": "?", "command": "?", "started": "?"}

    def acquire(self) -> StoreLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.wait_s
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": self.command,
            "run_id": self.run_id,
            "started": dt.datetime.now().isoformat(timespec="seconds"),
        }
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None:
                    continue  # released between our two looks
                pid = holder.get("pid")
                if (
                    holder.get("host") == me["host"]
                    and isinstance(pid, int)
                    and pid != os.getpid()
                    and not _alive(pid)
                ):
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()  # the holder is gone: a stale lock
                    self.took_over = holder
                    continue
                if time.monotonic() >= deadline:
                    raise StoreBusyError(
                        f"{self.folder}: another mmhe run is writing this store: "
                        f"{_describe(holder)}; wait for it to finish (or pass --wait SECONDS), "
                        f"or delete {self.path} if that process no longer exists"
                    ) from None
                time.sleep(self.poll_s)
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(me, handle)
            self._held = True
            return self

    def release(self) -> None:
        if not self._held:
            return
        holder = self._holder()
        if holder is not None and holder.get("run_id") == self.run_id:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self._held = False

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

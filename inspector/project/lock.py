"""The owner lock of a project: one process at a time writes ``inspector.db``.

The lock is ``PROJECT/inspector.lock``, a file of its own that nothing else opens, locked with
``flock`` (Linux, macOS) or ``LockFileEx`` (Windows) through the ``filelock`` package.  Unlike
SQLite's POSIX record locks, which belong to the process and all vanish when the process closes
*any* descriptor of the same file (a file dialog sniffing the folder is enough), an ``flock``
belongs to the open file description: only closing this lock's own descriptor, or the end of the
process, releases it.  A process killed by the system releases it too, so a crash never leaves a
project locked.

The holder writes who it is (pid, host, since) after the first byte (the byte Windows locks), so
that a second application can say where the project is open.  On network file systems where
``flock`` is emulated by record locks, this process never opens the lock file a second time
(:data:`_HELD`), so the emulation cannot drop it either.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
from datetime import datetime
from pathlib import Path
from typing import Dict, Optional

from filelock import lock_descriptor, unlock_descriptor

LOCK_NAME = "inspector.lock"

# Folders whose lock this process holds (resolved path -> lock), so that a second open of the same
# project in this process is read-only without touching the lock file.
_HELD: Dict[str, "OwnerLock"] = {}
_HELD_LOCK = threading.Lock()

# errno values that mean "this folder cannot be written" rather than "something is wrong"
READ_ONLY_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM}


class LockedElsewhere(Exception):
    """The project's lock is held by another application (``holder`` says which, when known)."""

    def __init__(self, holder: str):
        super().__init__(holder)
        self.holder = holder


def holder_text(info: Dict) -> str:
    """``pid 123 on host``, from what a holder wrote (or "unknown" pieces)."""
    pid = info.get("pid", "?")
    host = info.get("host") or "?"
    return f"pid {pid} on {host}"


class OwnerLock:
    """An exclusive, non-blocking lock on ``folder/inspector.lock``."""

    def __init__(self, folder) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: Optional[int] = None
        self.about: Dict = {}               # what this holder wrote about itself

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`LockedElsewhere`; ``OSError`` when the file cannot be made
        (a read-only folder: see :data:`READ_ONLY_ERRNOS`)."""
        key = str(self.folder.resolve())
        with _HELD_LOCK:
            mine = _HELD.get(key)
            if mine is not None:
                raise LockedElsewhere(f"{holder_text(mine.about)}, this application")
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                got = lock_descriptor(fd, blocking=False)
            except OSError:
                os.close(fd)
                raise
            if not got:
                os.close(fd)
                raise LockedElsewhere(holder_text(read_holder(self.path)))
            self._fd = fd
            _HELD[key] = self
        try:
            self._write_info()
        except OSError:
            pass            # who holds it is a courtesy for the other window; the lock is what counts

    def _write_info(self) -> None:
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "since": datetime.now().astimezone().isoformat(timespec="seconds")}
        self.about = info
        data = b"\n" + json.dumps(info).encode("utf-8") + b"\n"
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        os.write(self._fd, data)

    def release(self) -> None:
        with _HELD_LOCK:
            if self._fd is None:
                return
            fd, self._fd = self._fd, None
            for k, v in list(_HELD.items()):
                if v is self:
                    del _HELD[k]
            try:
                unlock_descriptor(fd)
            finally:
                os.close(fd)


def read_holder(path) -> Dict:
    """What the holder of a lock file wrote about itself ({} when nothing readable)."""
    try:
        with open(path, "rb") as f:
            f.seek(1)                       # byte 0 is the one Windows locks
            return json.loads(f.read(4096).decode("utf-8") or "{}")
    except (OSError, ValueError):
        return {}

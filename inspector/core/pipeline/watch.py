"""Watch a folder: every image that lands in it (sub-folders too) is handed on once it is complete.

:class:`FolderWatcher` turns file-system events into a stream of complete image files, for
:func:`inspect_stream` (``inspector watch`` and the application's station view; Qt-free).

- **Events** come from ``watchdog``: inotify on Linux, FSEvents on macOS, ReadDirectoryChangesW on
  Windows.  Where they cannot work (network shares, where another machine's writes send no event,
  or when the system's watch limit is reached) it polls instead (``watchdog``'s polling observer);
  ``poll=True`` asks for that.
- **Complete**: a file is complete when its writer closes it (Linux reports the close) or when it
  is moved into the folder (a rename is atomic); otherwise when its size and modification time
  have not changed for ``settle`` seconds (``max(settle, 2 s)`` under Linux's events, which
  normally report the close).  A file that fails to decode is tried again later, a bounded number
  of times (``max_tries``, waiting longer each time), then handed on with its error; a file that
  never stops changing is handed on with an error after ``max_wait`` seconds.  Nothing is
  retried forever.
- **Backlog**: on start, images already in the folder that are not ``done`` (a result from an
  earlier run) are handed on first, oldest first; a full rescan every ``rescan`` seconds catches
  anything whose event was lost.  The observer starts before the scan, so no file that lands
  meanwhile is missed.
- Each path is handed on once per run (plus retries); ``pause()`` holds new files back (they keep
  being collected), ``stop()`` ends the stream.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, Optional, Set, Union

from ..datasets import Input
from ..images import IMAGE_EXTENSIONS

# Linux reports when a writer closes a file: under those events a file without a close event
# (an event lost, a writer that keeps it open) still counts as complete once quiet this long.
NATIVE_QUIET = 2.0
# File systems whose changes made by other machines send no local event: polled.
NETWORK_FILESYSTEMS = {"nfs", "nfs4", "cifs", "smbfs", "smb3", "9p", "fuse.sshfs", "afs", "ncpfs", "davfs",
                       "fuse.davfs2", "glusterfs", "ceph", "lustre"}


def is_watched_image(path: Path) -> bool:
    """An image file by its name (as ``images.is_image_file``, without touching the disk)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def network_filesystem(folder: Path) -> Optional[str]:
    """The file-system type of ``folder`` when it is a network share (Linux only), else None."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    best, kind = "", None
    target = str(folder)
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
            best, kind = point, parts[2]
    return kind if kind in NETWORK_FILESYSTEMS else None


@dataclass
class _Pending:
    seen: float                      # when it was first noticed (monotonic)
    size: int = -1
    mtime: int = -1
    changed: float = 0.0             # when size/mtime last changed (monotonic)
    closed: bool = False             # its writer closed it, or it was moved in: complete
    tries: int = 0                   # reads that failed
    not_before: float = 0.0          # a retry waits until then


class FolderWatcher:
    """A stream of complete image files landing in ``folder`` (see the module's docstring).

    ``done``: paths that already have a result (a set, or a callable ``path -> bool``): never
    handed on.  ``exclude``: folders inside ``folder`` not to watch (the results folder...).
    """

    def __init__(self, folder, settle: float = 1.0, poll: bool = False,
                 done: Union[Set[Path], Callable[[Path], bool], None] = None, exclude: Iterable = (),
                 max_tries: int = 4, max_wait: float = 120.0, rescan: float = 30.0):
        self.folder = Path(os.path.abspath(folder))
        self.settle = max(0.0, float(settle))
        self.want_poll = poll
        self._done = done if callable(done) else (set(done) if done else set()).__contains__
        self.exclude = [Path(os.path.abspath(e)) for e in exclude]
        self.max_tries = max(1, int(max_tries))
        self.max_wait = max_wait
        self.rescan_every = rescan
        self.mode = ""                   # "native" or "polling (REASON)", once started
        self.close_events = False        # the observer reports a writer closing a file
        self._cond = threading.Condition()
        self._pending: Dict[Path, _Pending] = {}
        self._taken: Set[Path] = set()    # handed on (in flight or finished) this run
        self._failed: Dict[Path, int] = {}   # tries so far of files handed back by retry()
        self._stopped = False
        self._paused = False
        self._observer = None
        self._last_scan = 0.0

    # -- control ---------------------------------------------------------------------------
    def start(self) -> str:
        """Start watching, then queue the backlog. Returns how it watches ("native" / "polling ...")."""
        if not self.folder.is_dir():
            from ..errors import DatasetError
            raise DatasetError(f"folder not found: {self.folder}")
        reason = "asked for" if self.want_poll else None
        if reason is None:
            fs = network_filesystem(self.folder)
            if fs:
                reason = f"{fs} network share: other machines' writes send no events"
        if reason is None:
            try:
                self._observer = self._start_observer(native=True)
                self.close_events = type(self._observer).__name__ == "InotifyObserver"
                self.mode = "native"
            except OSError as exc:          # e.g. the system's inotify watch limit
                reason = f"no file-system events ({exc.strerror or exc})"
        if self._observer is None:
            self._observer = self._start_observer(native=False)
            self.mode = f"polling ({reason})"
        self._scan()
        return self.mode

    def _start_observer(self, native: bool):
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver
        observer = Observer() if native else PollingObserver(timeout=max(0.1, min(1.0, self.settle)))
        observer.schedule(_Handler(self), str(self.folder), recursive=True)
        observer.daemon = True
        observer.start()
        return observer

    def stop(self) -> None:
        """End the stream (from any thread; a signal handler too)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def close(self) -> None:
        """Stop, and stop the observer's thread."""
        self.stop()
        if self._observer is not None:
            try:
                self._observer.stop()
                self._observer.join(2.0)
            except Exception:  # noqa: BLE001 - shutting down: nothing left to report to
                pass
            self._observer = None

    def pause(self) -> None:
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def stopped(self) -> bool:
        return self._stopped

    def waiting(self) -> int:
        """Files noticed and not yet handed on."""
        with self._cond:
            return len(self._pending)

    # -- events ----------------------------------------------------------------------------
    def _wanted(self, path: Path) -> bool:
        """An image file under the folder, outside hidden and excluded folders."""
        if not is_watched_image(path):
            return False
        try:
            rel = path.relative_to(self.folder)
        except ValueError:
            return False
        if any(part.startswith(".") for part in rel.parts[:-1]):
            return False
        return not any(e == path or e in path.parents for e in self.exclude)

    def notice(self, path, closed: bool = False) -> None:
        """A file was created, written, closed (``closed``) or moved in (``closed``)."""
        p = Path(path)
        if not self._wanted(p):
            return
        with self._cond:
            if p in self._taken or self._done(p):
                return
            entry = self._pending.get(p)
            if entry is None:
                entry = self._pending[p] = _Pending(seen=time.monotonic())
            entry.closed = closed            # written again after a close: not complete any more
            self._cond.notify_all()

    def forget(self, path) -> None:
        """A file was deleted (or moved away) before it was handed on."""
        with self._cond:
            self._pending.pop(Path(path), None)

    def _scan(self) -> None:
        """Queue every image in the folder that is neither done, taken nor pending (oldest first).

        A file unchanged for the settle time already (by its modification time) is complete at once."""
        self._last_scan = time.monotonic()
        paths = []
        for root, dirs, files in os.walk(self.folder):
            rp = Path(root)
            dirs[:] = [d for d in dirs if not d.startswith(".") and self._wanted_dir(rp / d)]
            paths.extend(rp / name for name in files if self._wanted(rp / name))
        with self._cond:
            paths = [p for p in paths if p not in self._taken and p not in self._pending and not self._done(p)]
        found = []
        for p in paths:
            try:
                st = p.stat()
            except OSError:
                continue
            found.append((st.st_mtime_ns, st.st_size, p))
        found.sort()
        quiet = self._quiet()
        with self._cond:
            now, wall = time.monotonic(), time.time()
            for mtime, size, p in found:
                if p in self._taken or p in self._pending:
                    continue
                age = max(0.0, wall - mtime / 1e9)
                self._pending[p] = _Pending(seen=now, size=size, mtime=mtime, changed=now - min(age, quiet))
            self._cond.notify_all()

    def _quiet(self) -> float:
        """How long a file without a close event must stay unchanged to count as complete."""
        return max(self.settle, NATIVE_QUIET) if self.close_events else self.settle

    def _wanted_dir(self, d: Path) -> bool:
        return not any(e == d or e in d.parents for e in self.exclude)

    # -- the stream ------------------------------------------------------------------------
    def stream(self) -> Iterator[Union[Path, Input]]:
        """Complete files as they come (an :class:`Input` with an error for one that never
        settles), until :meth:`stop`.  Runs in the consumer's thread (the inspect loop's reader)."""
        while True:
            with self._cond:
                if self._stopped:
                    return
                if self.rescan_every and time.monotonic() - self._last_scan > self.rescan_every:
                    self._cond.release()
                    try:
                        self._scan()
                    finally:
                        self._cond.acquire()
                item, wait = (None, 0.1) if self._paused else self._next_ready()
                if item is None:
                    self._cond.wait(wait)
                    continue
                path = item.path if isinstance(item, Input) else item
                self._pending.pop(path, None)
                self._taken.add(path)
            yield item

    def _next_ready(self):
        """The oldest complete pending file (or one given up on), else ``(None, seconds to wait)``."""
        now = time.monotonic()
        quiet = self._quiet()
        wait = 0.5
        gone = []
        ready = None
        for p, e in self._pending.items():          # in the order noticed (the backlog oldest first)
            if now < e.not_before:
                wait = min(wait, e.not_before - now)
                continue
            try:
                st = p.stat()
            except FileNotFoundError:
                gone.append(p)                      # deleted before it was complete: nothing to do
                continue
            except OSError:
                continue
            if (st.st_size, st.st_mtime_ns) != (e.size, e.mtime):
                e.size, e.mtime, e.changed = st.st_size, st.st_mtime_ns, now
            if (e.closed and st.st_size > 0) or now - e.changed >= quiet:
                ready = p
                break
            if self.max_wait and now - e.seen > self.max_wait:
                ready = Input(p, f"still being written after {self.max_wait:.0f} s")
                break
            wait = min(wait, quiet - (now - e.changed))
        for p in gone:
            del self._pending[p]
        if ready is not None:
            return ready, 0.0
        # events wake the stream at once; polling for stability needs a finer tick
        return None, max(0.01, min(wait, 0.25 if self.close_events else max(0.02, self.settle / 4)))

    def retry(self, path, reason: str) -> bool:
        """A handed-on file could not be read: try it again later (True), or not any more (False:
        report ``reason``).  Waits settle × 2^tries (at least 0.25 s) before each new try."""
        p = Path(path)
        with self._cond:
            tries = self._failed.get(p, 0) + 1
            self._failed[p] = tries
            if self._stopped or tries >= self.max_tries or not p.exists():
                return False
            self._taken.discard(p)
            delay = max(self.settle, 0.25) * 2 ** (tries - 1)
            self._pending[p] = _Pending(seen=time.monotonic(), tries=tries, changed=time.monotonic(),
                                        not_before=time.monotonic() + delay)
            self._cond.notify_all()
            return True


class _Handler:
    """watchdog's event handler, forwarding to the watcher (events arrive in the observer's thread)."""

    def __init__(self, watcher: FolderWatcher):
        self.watcher = watcher

    def dispatch(self, event) -> None:
        if event.is_directory:
            return
        kind = event.event_type
        if kind in ("created", "modified"):
            self.watcher.notice(_text(event.src_path))
        elif kind == "closed":                          # closed after writing (not "closed_no_write")
            self.watcher.notice(_text(event.src_path), closed=True)
        elif kind == "moved":
            self.watcher.forget(_text(event.src_path))
            self.watcher.notice(_text(event.dest_path), closed=True)
        elif kind == "deleted":
            self.watcher.forget(_text(event.src_path))


def _text(path) -> str:
    return os.fsdecode(path)


def watch_inspect(model, watcher: FolderWatcher, job=None, batch_size: Optional[int] = None):
    """Inspect every file ``watcher`` hands on (:func:`inspect_stream`), giving failed reads their
    retries: yields one final :class:`InspectResult` per file, until the watcher stops."""
    from .inspect import DEFAULT_BATCH_SIZE, inspect_stream
    for r in inspect_stream(model, watcher.stream(), job, batch_size or DEFAULT_BATCH_SIZE, stage="watching"):
        if not r.ok and watcher.retry(r.path, r.reason):
            continue
        yield r


__all__ = ["FolderWatcher", "watch_inspect", "is_watched_image", "network_filesystem", "NATIVE_QUIET"]

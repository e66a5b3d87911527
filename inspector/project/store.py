"""A project: a folder with a SQLite database, the model files and the anomaly maps.

::

    PROJECT/inspector.db          images, labels, models, results (the single source of truth)
    PROJECT/models/*.inspector    model files written by training
    PROJECT/maps/<model>/<image>.npy   anomaly maps (float16), so the viewer can show them later
    PROJECT/masks/<image>.png     defect masks painted by the operator (white = defect); dataset
                                  ground-truth masks stay where they are (labels.mask_path is absolute)
    PROJECT/cache/                thumbnails and other things that can be rebuilt

Every change is committed at once (one transaction per call); the database runs in WAL mode.
The store is Qt-free and thread-safe (one connection behind a lock), so a worker thread can write
results while the window reads.

One owner: only the process that holds the project's owner lock (:mod:`.lock`) opens
``inspector.db`` for writing.  Worker processes never open it; they hand their results to the
owner (:mod:`.handoff`).  A second application on the same project, or a project on read-only
media, gets a read-only view (:attr:`Project.read_only_reason` says why; every write refuses with
that reason).  A full disk or a read-only folder is a :class:`StorageError`: one sentence, and
nothing half-written (the transaction rolled back, no temporary file left).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..core.datasets import ANOMALOUS, GOOD, folder_samples, load_mvtec_category, is_mvtec_category
from ..core.errors import DatasetError, InspectorError
from . import schema
from .lock import READ_ONLY_ERRNOS, LockedElsewhere, OwnerLock

DB_NAME = "inspector.db"
LABELS = (GOOD, ANOMALOUS)
VERDICTS = ("normal", "anomalous")


class ProjectError(InspectorError):
    """A folder is not a usable project (missing, damaged, or made by a newer version)."""


class StorageError(ProjectError):
    """The disk refused a write: full, read-only, or no permission. Nothing was half-written."""


_FULL, _READ_ONLY, _OTHER = "free some space and try again", "choose a place that can be written", "try again"
_STORAGE_REASONS = {errno.ENOSPC: ("the disk is full", _FULL), getattr(errno, "EDQUOT", -1): ("the disk quota is used up", _FULL),
                    errno.EFBIG: ("the file would be too large for the disk", _FULL),
                    errno.EROFS: ("the disk is read-only", _READ_ONLY),
                    errno.EACCES: ("permission denied", _READ_ONLY), errno.EPERM: ("permission denied", _READ_ONLY),
                    errno.EIO: ("the disk reported an input/output error", _OTHER)}


def storage_error(exc: BaseException, what: str, unchanged: bool = True) -> StorageError:
    """One sentence for a failed write of ``what`` (a file, or the project database)."""
    reason, hint = str(exc), _OTHER
    if isinstance(exc, OSError):
        reason, hint = _STORAGE_REASONS.get(exc.errno, (exc.strerror or str(exc), _OTHER))
    elif isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", "") or ""
        text = str(exc).lower()
        if name.startswith("SQLITE_FULL") or "disk is full" in text:
            reason, hint = "the disk is full", _FULL
        elif name.startswith("SQLITE_READONLY") or "readonly database" in text:
            reason, hint = "the project folder is read-only", _READ_ONLY
        elif name.startswith("SQLITE_IOERR") or "disk i/o error" in text:
            reason = "the disk reported an input/output error"
        elif name.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
            reason, hint = "the database file cannot be opened for writing", _READ_ONLY
    done = "nothing was changed" if unchanged else "the rest was saved"
    return StorageError(f"cannot write {what}: {reason}; {done}. {hint[:1].upper()}{hint[1:]}.")


def _is_storage_failure(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name:
        return name.startswith(("SQLITE_FULL", "SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_CANTOPEN"))
    text = str(exc).lower()
    return any(t in text for t in ("disk is full", "readonly database", "disk i/o error", "unable to open"))


def write_file(path: Path, data: bytes, durable: bool = False, what: Optional[str] = None) -> None:
    """Write ``path`` whole or not at all: a temporary file beside it (``.NAME.PID.tmp``), renamed
    over it. On failure the temporary file is removed and a :class:`StorageError` raised (naming
    ``what``, default the path)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise storage_error(exc, what or str(path)) from None


def write_map(folder: Path, rel: str, amap) -> str:
    """Save an anomaly map (float16 ``.npy``) at ``folder/rel``; returns ``rel``. For workers too."""
    import io

    f = Path(folder) / rel
    try:
        f.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(exc, str(f.parent)) from None
    buf = io.BytesIO()
    np.save(buf, np.asarray(amap, dtype=np.float16), allow_pickle=False)
    write_file(f, buf.getvalue())
    return rel


def read_map(folder: Path, rel: Optional[str]) -> Optional[np.ndarray]:
    """An anomaly map saved by :func:`write_map` as float32, or None (none, or gone)."""
    if not rel:
        return None
    try:
        return np.load(Path(folder) / rel, allow_pickle=False).astype(np.float32)
    except (OSError, ValueError):
        return None


def map_rel(model_id, image_id: int) -> str:
    """Where the map of ``image_id`` by ``model_id`` is kept, relative to the project folder."""
    return f"maps/{model_id}/{image_id}.npy"


def now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def is_project(folder) -> bool:
    return (Path(folder) / DB_NAME).is_file()


PENDING_MAPS = ".pending-"     # maps/.pending-XXXX/: a training's maps before its model is registered


class _Snapshot:
    """A copy of the database and its WAL in a temporary folder, for reading a project on read-only
    media that a crash left with a WAL (SQLite needs a writable ``-shm`` to read one)."""

    def __init__(self, db: Path):
        self.dir = tempfile.mkdtemp(prefix="inspector-ro-")
        self.db = Path(self.dir) / DB_NAME
        shutil.copyfile(db, self.db)
        shutil.copyfile(f"{db}-wal", f"{self.db}-wal")

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _connect_read_only(db: Path):
    """A read-only connection (and the snapshot it reads, or None).

    ``mode=ro&readonly_shm=1``: this process never writes the database, its WAL or its ``-shm``
    (it cannot truncate a live owner's wal-index, nor checkpoint and delete its WAL on close).
    Where SQLite cannot open it so (read-only media without a ``-shm``), ``immutable=1`` when
    there is no WAL to read, else a snapshot copy.
    """
    def connect(uri: str) -> sqlite3.Connection:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=10)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    base = db.as_uri()
    try:
        return connect(base + "?mode=ro&readonly_shm=1"), None
    except sqlite3.OperationalError:
        pass
    wal = Path(f"{db}-wal")
    if not (wal.is_file() and wal.stat().st_size > 0):
        return connect(base + "?mode=ro&immutable=1"), None
    try:
        snap = _Snapshot(db)
    except OSError as exc:
        raise sqlite3.OperationalError(f"cannot copy it to read it ({exc.strerror or exc})") from None
    try:
        return connect(snap.db.as_uri() + "?mode=ro"), snap
    except sqlite3.Error:
        snap.cleanup()
        raise


@dataclass(frozen=True)
class ImageRow:
    """One image with its label and, for a given model, its result.

    Three things are kept apart: the dataset's ground truth (``dataset_label``, ``dataset_mask``:
    from the folder layout it was added with, never changed), the operator's decision
    (``operator_label``: ``label`` when ``label_source`` is ``'operator'``, made by ``label_by``
    at ``label_updated``) and the model's verdict (``verdict``).  ``label`` is the label in
    force: the operator's where there is one, else the dataset's.
    """
    id: int
    path: str
    split: str
    defect_type: Optional[str]
    readable: Optional[bool]
    error: Optional[str]
    label: Optional[str]
    label_source: Optional[str]
    mask_path: Optional[str]
    score: Optional[float] = None
    verdict: Optional[str] = None
    map_path: Optional[str] = None
    result_created: Optional[str] = None
    dataset_label: Optional[str] = None
    dataset_mask: Optional[str] = None
    label_by: Optional[str] = None        # who made an operator label (None: not recorded, or the dataset's)
    label_updated: Optional[str] = None   # when the label was set

    @property
    def operator_label(self) -> Optional[str]:
        """The operator's decision ('good' or 'anomalous'), or None when no operator reviewed it."""
        return self.label if self.label_source == "operator" else None

    @property
    def name(self) -> str:
        """File name with its folder (``blob/000.png``): dataset folders reuse file names."""
        p = Path(self.path)
        return f"{p.parent.name}/{p.name}" if p.parent.name else p.name


@dataclass(frozen=True)
class ModelRow:
    id: int
    name: str
    path: str                 # relative to the project folder
    method: str
    backbone: str
    created: str
    image_threshold: float
    pixel_threshold: float
    meta: Dict

    @property
    def title(self) -> str:
        return f"{self.name} ({self.method}, {self.backbone})"


_IMAGE_COLUMNS = """
    i.id, i.path, i.split, i.defect_type, i.readable, i.error,
    l.label, l.source, l.mask_path
"""
_PROVENANCE_COLUMNS = "i.dataset_label, i.dataset_mask, l.who, l.updated"


def _operator(source: Optional[str]) -> Optional[str]:
    """Who is making an operator label (the login name); None for the dataset's."""
    if source == "dataset":
        return None
    from ..core.lineage import current_user
    return current_user()


class Project:
    """An open project. Use :meth:`create` or :meth:`open`; :meth:`close` when done.

    ``read_only_reason`` is None for the owner, else why this view is read-only (another window
    holds the project, or its folder cannot be written); writes then raise :class:`ProjectError`.
    """

    def __init__(self, folder: Path, conn: sqlite3.Connection, lock: Optional[OwnerLock] = None,
                 read_only_reason: Optional[str] = None):
        self.folder = Path(folder)
        self._conn = conn
        self._lock = threading.RLock()
        self._owner_lock = lock
        self.read_only_reason = read_only_reason
        self._view_model: Optional[int] = None     # read-only: the model shown, kept in memory
        self._snapshot: Optional[_Snapshot] = None

    @property
    def read_only(self) -> bool:
        return self.read_only_reason is not None

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def create(cls, folder, name: Optional[str] = None) -> "Project":
        folder = Path(folder).expanduser().absolute()
        if is_project(folder):
            raise ProjectError(f"{folder} already holds a project; open it instead")
        if folder.exists() and not folder.is_dir():
            raise ProjectError(f"{folder} is a file, not a folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ProjectError(f"cannot create the project folder {folder}: {exc.strerror or exc}") from None
        lock = OwnerLock(folder)
        try:
            lock.acquire()
        except LockedElsewhere as exc:
            raise ProjectError(f"{folder} is being made a project by another Inspector ({exc.holder})") from None
        except OSError as exc:
            raise storage_error(exc, f"a project in {folder}") from None
        project = cls._connect(folder, lock)
        with project._tx() as c:
            c.execute("INSERT OR REPLACE INTO settings(key, value) VALUES ('name', ?)", (name or folder.name,))
            c.execute("INSERT OR REPLACE INTO settings(key, value) VALUES ('created', ?)", (now(),))
        return project

    @classmethod
    def open(cls, folder, read_only: Optional[bool] = None) -> "Project":
        """Open a project: as its owner when no other application has it open and its folder can be
        written, else read-only (``read_only=None``, the default).  ``read_only=True`` never takes
        ownership; ``read_only=False`` raises :class:`ProjectError` instead of opening read-only."""
        folder = Path(folder).expanduser().absolute()
        if not folder.is_dir():
            raise ProjectError(f"project folder not found: {folder}")
        if not is_project(folder):
            raise ProjectError(f"{folder} is not an Inspector project (no {DB_NAME} in it)")
        if read_only:
            return cls._connect(folder, None, "opened read-only")
        lock = OwnerLock(folder)
        reason = None
        try:
            lock.acquire()
        except LockedElsewhere as exc:
            reason = f"open in another Inspector window ({exc.holder})"
        except OSError as exc:
            if exc.errno not in READ_ONLY_ERRNOS:
                raise storage_error(exc, str(lock.path)) from None
            reason = f"the project folder cannot be written ({_STORAGE_REASONS.get(exc.errno, (exc.strerror,))[0]})"
        else:
            db = folder / DB_NAME
            if not os.access(db, os.W_OK) or (os.path.exists(f"{db}-wal") and not os.access(f"{db}-wal", os.W_OK)):
                reason = f"{DB_NAME} cannot be written (permission denied)"
        if reason is not None:
            lock.release()
            if read_only is False:
                raise ProjectError(f"cannot open {folder} for changes: {reason}")
            return cls._connect(folder, None, reason)
        return cls._connect(folder, lock)

    @classmethod
    def _connect(cls, folder: Path, lock: Optional[OwnerLock], read_only_reason: Optional[str] = None
                 ) -> "Project":
        db = folder / DB_NAME
        snapshot = None
        try:
            if read_only_reason is None:
                conn = sqlite3.connect(str(db), isolation_level=None, check_same_thread=False, timeout=10)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA foreign_keys=ON")
                conn.execute("PRAGMA synchronous=NORMAL")
            else:
                conn, snapshot = _connect_read_only(db)
        except sqlite3.DatabaseError as exc:
            if lock is not None:
                lock.release()
            raise ProjectError(f"{db} is not a readable project database ({exc})") from None
        project = cls(folder, conn, lock, read_only_reason)
        project._snapshot = snapshot
        try:
            project._migrate()
        except sqlite3.DatabaseError as exc:
            project.close()
            raise ProjectError(f"{db} is not a readable project database ({exc})") from None
        except ProjectError:
            project.close()
            raise
        if read_only_reason is None:
            for sub in ("models", "maps", "masks", "cache"):
                (folder / sub).mkdir(exist_ok=True)
            project._remove_leftovers()
        return project

    def _remove_leftovers(self) -> None:
        """Temporary files a killed process left (only the owner writes here: none is in use)."""
        for sub in ("masks", "models", "maps"):
            for f in (self.folder / sub).glob(".*.tmp"):
                f.unlink(missing_ok=True)
        for d in (self.folder / "maps").glob(f"{PENDING_MAPS}*"):
            shutil.rmtree(d, ignore_errors=True)
        for f in (self.folder / "maps").glob("*/.*.tmp"):
            f.unlink(missing_ok=True)

    def _migrate(self) -> None:
        if self.read_only:
            row = self._query("SELECT version FROM schema_version")
            version = row[0][0] if row else 0
            if version != schema.latest():
                newer = version > schema.latest()
                raise ProjectError(
                    f"{self.folder} was made by a {'newer' if newer else 'older'} Inspector (project version "
                    f"{version}, this one reads {schema.latest()}) and it is {self.read_only_reason}: "
                    + ("update Inspector to open it" if newer else "open it where it can be written once, "
                       "to update it"))
            return
        try:                       # up to date: no write at all (a project on a full disk still opens)
            if self._query("SELECT version FROM schema_version") == [(schema.latest(),)]:
                return
        except sqlite3.OperationalError:
            pass                   # a new database: no table yet
        with self._tx() as c:
            c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = c.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row else 0
            if version > schema.latest():
                raise ProjectError(
                    f"{self.folder} was made by a newer Inspector (project version {version}, "
                    f"this one reads up to {schema.latest()}); update Inspector to open it")
            for step in schema.MIGRATIONS[version:]:
                step(c)
            if row is None:
                c.execute("INSERT INTO schema_version(version) VALUES (?)", (schema.latest(),))
            else:
                c.execute("UPDATE schema_version SET version = ?", (schema.latest(),))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._owner_lock is not None:
                self._owner_lock.release()
                self._owner_lock = None
            if getattr(self, "_snapshot", None) is not None:
                self._snapshot.cleanup()
                self._snapshot = None

    @property
    def closed(self) -> bool:
        return self._conn is None

    def check_writable(self) -> None:
        """Refuse a change in a read-only view, with the reason."""
        if self.read_only_reason is not None:
            raise ProjectError(f"not saved: read-only here: {self.read_only_reason}")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One committed transaction; rolled back on any error.  A full disk or a read-only folder
        becomes a :class:`StorageError`."""
        with self._lock:
            if self._conn is None:
                raise ProjectError("the project is closed")
            self.check_writable()
            c = self._conn
            try:
                c.execute("BEGIN IMMEDIATE")
                try:
                    yield c
                    c.execute("COMMIT")
                except BaseException:
                    if c.in_transaction:
                        try:
                            c.execute("ROLLBACK")
                        except sqlite3.Error:
                            pass        # SQLite already rolled back (a full disk can do that)
                    raise
            except sqlite3.Error as exc:
                if not _is_storage_failure(exc):
                    raise
                raise storage_error(exc, f"the project database ({self.folder / DB_NAME})") from None

    def _query(self, sql: str, args: Sequence = ()) -> List[tuple]:
        with self._lock:
            if self._conn is None:
                raise ProjectError("the project is closed")
            return self._conn.execute(sql, args).fetchall()

    # -- settings ----------------------------------------------------------------------------
    def setting(self, key: str, default: Optional[str] = None) -> Optional[str]:
        rows = self._query("SELECT value FROM settings WHERE key = ?", (key,))
        return rows[0][0] if rows else default

    def set_setting(self, key: str, value: Optional[str]) -> None:
        with self._tx() as c:
            if value is None:
                c.execute("DELETE FROM settings WHERE key = ?", (key,))
            else:
                c.execute("INSERT OR REPLACE INTO settings(key, value) VALUES (?, ?)", (key, value))

    @property
    def name(self) -> str:
        return self.setting("name", self.folder.name) or self.folder.name

    @property
    def schema_version(self) -> int:
        return self._query("SELECT version FROM schema_version")[0][0]

    # -- images ------------------------------------------------------------------------------
    def _add_samples(self, c: sqlite3.Connection, source_id: int, samples: Iterable) -> int:
        added = 0
        stamp = now()
        for s in samples:
            path = str(Path(s.path).absolute())
            cur = c.execute(
                "INSERT OR IGNORE INTO images(path, split, source_id, defect_type, added) VALUES (?, ?, ?, ?, ?)",
                (path, s.split, source_id, s.defect_type, stamp))
            if cur.rowcount:
                added += 1
                if s.label in LABELS:
                    mask = str(s.mask_path) if s.mask_path else None
                    c.execute("UPDATE images SET dataset_label = ?, dataset_mask = ? WHERE id = ?",
                              (s.label, mask, cur.lastrowid))
                    c.execute("INSERT INTO labels(image_id, label, source, mask_path, updated) "
                              "VALUES (?, ?, 'dataset', ?, ?)", (cur.lastrowid, s.label, mask, stamp))
        return added

    def _add_source(self, c: sqlite3.Connection, path: Path, kind: str, split: Optional[str]) -> int:
        c.execute("INSERT OR IGNORE INTO sources(path, kind, split, added) VALUES (?, ?, ?, ?)",
                  (str(path), kind, split, now()))
        return c.execute("SELECT id FROM sources WHERE path = ?", (str(path),)).fetchone()[0]

    def add_mvtec(self, folder) -> int:
        """Add an MVTec-layout category (train/good for training, test/* labelled). Returns new images."""
        folder = Path(folder).absolute()
        cat = load_mvtec_category(folder)
        with self._tx() as c:
            sid = self._add_source(c, folder, "mvtec", None)
            return self._add_samples(c, sid, [*cat.train, *cat.test])

    def add_folder(self, folder, split: str = "test", label: Optional[str] = None,
                   recursive: bool = True) -> int:
        """Add a plain folder: ``split='train'`` for good images to train on, ``'test'`` to inspect."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', not {split!r}")
        folder = Path(folder).absolute()
        if split == "train" and label is None:
            label = GOOD
        samples = folder_samples(folder, split, label, recursive=recursive)
        if not samples:
            raise DatasetError(f"no images found in {folder}")
        with self._tx() as c:
            sid = self._add_source(c, folder, "folder", split)
            return self._add_samples(c, sid, samples)

    def add_files(self, paths: Sequence, source, split: str = "test") -> List[int]:
        """Add single image files of the folder ``source`` (e.g. as they land in a watched folder)
        without rescanning it; returns their ids (an image already in the project keeps its own)."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', not {split!r}")
        stamp = now()
        with self._tx() as c:
            sid = self._add_source(c, Path(source).absolute(), "folder", split)
            ids = []
            for p in paths:
                path = str(Path(p).absolute())
                c.execute("INSERT OR IGNORE INTO images(path, split, source_id, added) VALUES (?, ?, ?, ?)",
                          (path, split, sid, stamp))
                ids.append(c.execute("SELECT id FROM images WHERE path = ?", (path,)).fetchone()[0])
            return ids

    def add_path(self, folder, split: str = "test") -> int:
        """An MVTec category, or a plain folder with the given split."""
        return self.add_mvtec(folder) if is_mvtec_category(folder) else self.add_folder(folder, split)

    def sources(self) -> List[Tuple[str, str, Optional[str]]]:
        return [tuple(r) for r in self._query("SELECT path, kind, split FROM sources ORDER BY id")]

    def set_readable(self, image_id: int, readable: bool, error: Optional[str] = None) -> None:
        with self._tx() as c:
            c.execute("UPDATE images SET readable = ?, error = ? WHERE id = ?",
                      (1 if readable else 0, None if readable else error, image_id))

    def set_readable_many(self, items: Iterable[Tuple[int, bool, Optional[str]]]) -> None:
        with self._tx() as c:
            c.executemany("UPDATE images SET readable = ?, error = ? WHERE id = ?",
                          [(1 if ok else 0, None if ok else err, iid) for iid, ok, err in items])

    def _row(self, r: tuple) -> ImageRow:
        readable = None if r[4] is None else bool(r[4])
        return ImageRow(r[0], r[1], r[2], r[3], readable, r[5], r[6], r[7], r[8], *r[13:17], *r[9:13])

    def images(self, model_id: Optional[int] = None, split: Optional[str] = None,
               label: Optional[str] = None, verdict: Optional[str] = None,
               order: str = "path", ids: Optional[Sequence[int]] = None) -> List[ImageRow]:
        """Images with their labels and (for ``model_id``) results.

        ``label``: 'good', 'anomalous' or 'none' (unlabelled); ``verdict``: 'normal', 'anomalous'
        or 'none' (not inspected by that model); ``order``: 'path', 'score' (highest first) or
        'score_asc'.
        """
        sql = (f"SELECT {_IMAGE_COLUMNS}, {_PROVENANCE_COLUMNS}, r.score, r.verdict, r.map_path, r.created "
               "FROM images i "
               "LEFT JOIN labels l ON l.image_id = i.id "
               "LEFT JOIN results r ON r.image_id = i.id AND r.model_id = ?")
        where, args = [], [model_id if model_id is not None else -1]
        if split:
            where.append("i.split = ?")
            args.append(split)
        if label == "none":
            where.append("l.label IS NULL")
        elif label:
            where.append("l.label = ?")
            args.append(label)
        if verdict == "none":
            where.append("r.verdict IS NULL")
        elif verdict:
            where.append("r.verdict = ?")
            args.append(verdict)
        if ids is not None:
            where.append(f"i.id IN ({','.join('?' * len(ids))})")
            args.extend(ids)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += {"path": " ORDER BY i.path",
                "score": " ORDER BY r.score IS NULL, r.score DESC, i.path",
                "score_asc": " ORDER BY r.score IS NULL, r.score ASC, i.path"}[order]
        return [self._row(r) for r in self._query(sql, args)]

    def image(self, image_id: int, model_id: Optional[int] = None) -> ImageRow:
        rows = self.images(model_id, ids=[image_id])
        if not rows:
            raise ProjectError(f"no image with id {image_id} in the project")
        return rows[0]

    def image_ids(self, split: Optional[str] = None, readable_only: bool = False) -> List[int]:
        sql, args = "SELECT id FROM images WHERE 1", []
        if split:
            sql += " AND split = ?"
            args.append(split)
        if readable_only:
            sql += " AND (readable IS NULL OR readable = 1)"
        return [r[0] for r in self._query(sql + " ORDER BY path", args)]

    def counts(self, model_id: Optional[int] = None) -> Dict[str, int]:
        """How many images per group: total, train, test, good, anomalous, unlabelled,
        normal / anomalous verdicts and not inspected (for ``model_id``), unreadable."""
        r = self._query(
            "SELECT count(*), "
            " sum(i.split = 'train'), sum(i.split = 'test'),"
            " sum(l.label = 'good'), sum(l.label = 'anomalous'), sum(l.label IS NULL),"
            " sum(r.verdict = 'normal'), sum(r.verdict = 'anomalous'), sum(r.verdict IS NULL),"
            " sum(i.readable = 0) "
            "FROM images i LEFT JOIN labels l ON l.image_id = i.id "
            "LEFT JOIN results r ON r.image_id = i.id AND r.model_id = ?",
            (model_id if model_id is not None else -1,))[0]
        keys = ("total", "train", "test", "good", "anomalous", "unlabelled",
                "verdict_normal", "verdict_anomalous", "not_inspected", "unreadable")
        return {k: int(v or 0) for k, v in zip(keys, r)}

    # -- labels ------------------------------------------------------------------------------
    def dataset_label(self, image_id: int) -> Tuple[Optional[str], Optional[str]]:
        """(label, mask path) the dataset gave an image when it was added; (None, None) if none."""
        rows = self._query("SELECT dataset_label, dataset_mask FROM images WHERE id = ?", (image_id,))
        return (rows[0][0], rows[0][1]) if rows else (None, None)

    def label(self, image_id: int) -> Tuple[Optional[str], Optional[str]]:
        """(label, source) of an image; (None, None) when unlabelled."""
        rows = self._query("SELECT label, source FROM labels WHERE image_id = ?", (image_id,))
        return (rows[0][0], rows[0][1]) if rows else (None, None)

    def set_label(self, image_id: int, label: Optional[str], source: str = "operator"
                  ) -> Tuple[Optional[str], Optional[str]]:
        """Set (or with ``None`` remove) an image's label; committed at once.

        Returns the previous ``(label, source)`` so that the change can be undone with
        ``set_label(image_id, *previous)``.  An operator label records who made it (the login
        name) and when; the dataset's ground truth of the image is kept apart and never changes.
        """
        if label is not None and label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, not {label!r}")
        with self._tx() as c:
            row = c.execute("SELECT label, source FROM labels WHERE image_id = ?", (image_id,)).fetchone()
            previous = (row[0], row[1]) if row else (None, None)
            if label is None:
                c.execute("DELETE FROM labels WHERE image_id = ?", (image_id,))
            else:
                source = source or "operator"
                c.execute("INSERT INTO labels(image_id, label, source, who, updated) VALUES (?, ?, ?, ?, ?) "
                          "ON CONFLICT(image_id) DO UPDATE SET label = excluded.label, "
                          "source = excluded.source, who = excluded.who, updated = excluded.updated",
                          (image_id, label, source, _operator(source), now()))
        return previous

    # -- masks -------------------------------------------------------------------------------
    def mask_file(self, image_id: int) -> Path:
        """Where a painted mask of an image is kept (``masks/<image_id>.png``)."""
        return self.folder / "masks" / f"{image_id}.png"

    def mask_path_of(self, row: ImageRow) -> Optional[Path]:
        """The mask file of an image row (absolute), or None when it has none."""
        if not row.mask_path:
            return None
        p = Path(row.mask_path)
        return p if p.is_absolute() else self.folder / p

    def load_mask(self, row: ImageRow, shape: Optional[Tuple[int, int]] = None) -> Optional[np.ndarray]:
        """The image's defect mask as bool H×W (resized to ``shape``), or None (none, or unreadable)."""
        from ..core.errors import ImageReadError
        from ..core.images import read_mask

        p = self.mask_path_of(row)
        if p is None:
            return None
        try:
            return read_mask(p, shape)
        except ImageReadError:
            return None

    def save_mask(self, image_id: int, mask: Optional[np.ndarray]) -> None:
        """Store a painted mask (bool/uint8 H×W, non-zero = defect), committed at once.

        A mask with any defect pixel is written to ``masks/<image_id>.png`` and marks the image
        anomalous: an operator label (painting is the operator's decision, also on an image the
        dataset labelled anomalous, whose ground truth stays recorded apart); an empty mask (or
        None) removes the file and the reference but keeps the label.

        The PNG is written beside its place first, then the label is committed, then the file is
        renamed into place: a full disk leaves the label and the previous mask as they were, and no
        temporary file.
        """
        import cv2

        self.check_writable()
        f = self.mask_file(image_id)
        m = None if mask is None else np.asarray(mask)
        if m is not None and m.any():
            ok, buf = cv2.imencode(".png", np.where(m > 0, 255, 0).astype(np.uint8))
            if not ok:
                raise ProjectError(f"cannot encode the mask of image {image_id}")
            try:
                f.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise storage_error(exc, str(f.parent)) from None
            staged = f.with_name(f".{f.name}.staged.tmp")
            write_file(staged, buf.tobytes(), durable=True, what=str(f))
            rel = str(f.relative_to(self.folder))
            try:
                with self._tx() as c:
                    c.execute("INSERT INTO labels(image_id, label, source, mask_path, who, updated) "
                              "VALUES (?, 'anomalous', 'operator', ?, ?, ?) ON CONFLICT(image_id) DO UPDATE SET "
                              "label = excluded.label, source = excluded.source, mask_path = excluded.mask_path, "
                              "who = excluded.who, updated = excluded.updated",
                              (image_id, rel, _operator("operator"), now()))
                os.replace(staged, f)
            except BaseException as exc:
                staged.unlink(missing_ok=True)
                if isinstance(exc, OSError):     # the label is saved; the new mask file is not
                    raise storage_error(exc, str(f), unchanged=False) from None
                raise
        else:
            with self._tx() as c:
                c.execute("UPDATE labels SET mask_path = NULL, updated = ? WHERE image_id = ?", (now(), image_id))
            f.unlink(missing_ok=True)

    def restore_label(self, image_id: int, label: Optional[str], source: Optional[str],
                      mask_path: Optional[str], who: Optional[str] = None, updated: Optional[str] = None) -> None:
        """Put back a label row as it was (``label`` None: unlabelled); for undo.  Without ``who``
        and ``updated`` an operator label is put back as this user's, now."""
        source = source or "operator"
        with self._tx() as c:
            if label is None:
                c.execute("DELETE FROM labels WHERE image_id = ?", (image_id,))
            else:
                c.execute("INSERT INTO labels(image_id, label, source, mask_path, who, updated) "
                          "VALUES (?, ?, ?, ?, ?, ?) "
                          "ON CONFLICT(image_id) DO UPDATE SET label = excluded.label, source = excluded.source, "
                          "mask_path = excluded.mask_path, who = excluded.who, updated = excluded.updated",
                          (image_id, label, source, mask_path, who if who is not None else _operator(source),
                           updated or now()))

    def labelled_anomalies(self) -> List[ImageRow]:
        """Readable images labelled anomalous (by the operator or the dataset), for APC."""
        return [r for r in self.images(label=ANOMALOUS) if r.readable is not False]

    def anomaly_pairs(self) -> List[Tuple[str, Optional[str]]]:
        """``(image path, mask path or None)`` of :meth:`labelled_anomalies` (a missing mask file: None)."""
        out = []
        for r in self.labelled_anomalies():
            m = self.mask_path_of(r)
            out.append((r.path, str(m) if m is not None and m.is_file() else None))
        return out

    # -- models ------------------------------------------------------------------------------
    def new_model_path(self, stem: str) -> Path:
        """A file name under ``models/`` that no model uses yet."""
        base = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in stem) or "model"
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        for n in range(1000):
            p = self.folder / "models" / f"{base}-{stamp}{'-' + str(n) if n else ''}.inspector"
            if not p.exists():
                return p
        raise ProjectError("cannot find a free model file name")

    def add_model(self, name: str, path, method: str, backbone: str, image_threshold: float,
                  pixel_threshold: float, meta: Optional[Dict] = None, make_current: bool = True) -> int:
        """Register a model file that is already saved in the project folder."""
        path = Path(path)
        if not path.is_file():
            raise ProjectError(f"model file not found: {path}")
        try:
            rel = str(path.absolute().relative_to(self.folder))
        except ValueError:
            rel = str(path.absolute())
        with self._tx() as c:
            cur = c.execute(
                "INSERT INTO models(name, path, method, backbone, created, image_threshold, pixel_threshold,"
                " meta_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (name, rel, method, backbone, now(), float(image_threshold), float(pixel_threshold),
                 json.dumps(meta or {}, default=str)))
            model_id = cur.lastrowid
            if make_current:
                c.execute("INSERT OR REPLACE INTO settings(key, value) VALUES ('current_model', ?)",
                          (str(model_id),))
        return model_id

    def _model(self, r: tuple) -> ModelRow:
        return ModelRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], json.loads(r[8] or "{}"))

    def models(self) -> List[ModelRow]:
        return [self._model(r) for r in self._query(
            "SELECT id, name, path, method, backbone, created, image_threshold, pixel_threshold, meta_json "
            "FROM models ORDER BY id")]

    def model(self, model_id: int) -> ModelRow:
        for m in self.models():
            if m.id == model_id:
                return m
        raise ProjectError(f"no model with id {model_id} in the project")

    def model_file(self, model: ModelRow) -> Path:
        p = Path(model.path)
        return p if p.is_absolute() else self.folder / p

    @property
    def current_model_id(self) -> Optional[int]:
        if self.read_only and self._view_model is not None:
            return self._view_model
        v = self.setting("current_model")
        return int(v) if v else None

    def set_current_model(self, model_id: Optional[int]) -> None:
        """Make a model the current one; in a read-only view only for this view (not saved)."""
        if self.read_only:
            self._view_model = model_id
            return
        self.set_setting("current_model", None if model_id is None else str(model_id))

    def delete_model(self, model_id: int) -> None:
        """Remove a model with its results, maps and file."""
        m = self.model(model_id)
        with self._tx() as c:
            c.execute("DELETE FROM results WHERE model_id = ?", (model_id,))
            c.execute("DELETE FROM threshold_changes WHERE model_id = ?", (model_id,))
            c.execute("DELETE FROM models WHERE id = ?", (model_id,))
            if self.setting("current_model") == str(model_id):
                c.execute("DELETE FROM settings WHERE key = 'current_model'")
        shutil.rmtree(self.folder / "maps" / str(model_id), ignore_errors=True)
        f = self.model_file(m)
        if f.is_file() and self.folder in f.absolute().parents:
            f.unlink(missing_ok=True)

    def set_image_threshold(self, model_id: int, value: float, how: str = "manual") -> int:
        """Change a model's image threshold, move its pixel threshold with it (the engine's rule, as
        the viewer previews it) and re-decide its verdicts, in one transaction. Returns verdicts changed.

        The change is recorded (:meth:`threshold_changes`): the value, the one before, who (the
        login name), when, and ``how`` (e.g. ``'manual'``)."""
        from ..core.thresholds import shifted_pixel_threshold, verdict

        value = float(value)
        with self._tx() as c:
            row = c.execute("SELECT image_threshold, pixel_threshold FROM models WHERE id = ?", (model_id,)).fetchone()
            if row is None:
                raise ProjectError(f"no model with id {model_id} in the project")
            pixel = shifted_pixel_threshold(row[1], row[0], value)
            c.execute("UPDATE models SET image_threshold = ?, pixel_threshold = ? WHERE id = ?",
                      (value, pixel, model_id))
            c.execute("INSERT INTO threshold_changes(model_id, value, previous, who, changed, how) "
                      "VALUES (?, ?, ?, ?, ?, ?)",
                      (model_id, value, row[0] if row[0] is not None and np.isfinite(row[0]) else None,
                       _operator("operator"), now(), how))
            rows = c.execute("SELECT image_id, score, verdict FROM results WHERE model_id = ?", (model_id,)).fetchall()
            changed = [(new, model_id, image_id) for image_id, score, old in rows
                       if (new := verdict(score, value)) != old]
            c.executemany("UPDATE results SET verdict = ? WHERE model_id = ? AND image_id = ?", changed)
            return len(changed)

    def threshold_changes(self, model_id: int) -> List[Dict]:
        """The image-threshold changes made to a model in this project, oldest first: ``value``,
        ``previous``, ``who`` (None: not recorded), ``when``, ``how``."""
        return [{"value": r[0], "previous": r[1], "who": r[2], "when": r[3], "how": r[4]} for r in self._query(
            "SELECT value, previous, who, changed, how FROM threshold_changes WHERE model_id = ? ORDER BY id",
            (model_id,))]

    # -- model versions ----------------------------------------------------------------------
    def add_version(self, parent_id: int, path, image_threshold: float, pixel_threshold: float, meta: Dict,
                    change: str, name: Optional[str] = None) -> int:
        """Register a model file made from model ``parent_id`` (normal images added, a threshold kept)
        as a new version beside it; the parent stays.  Not made current (see set_current_model)."""
        parent = self.model(parent_id)
        model_id = self.add_model(name or Path(path).stem, path, parent.method, parent.backbone, image_threshold,
                                  pixel_threshold, meta, make_current=False)
        with self._tx() as c:
            c.execute("UPDATE models SET parent_id = ?, change = ? WHERE id = ?", (parent_id, change, model_id))
        return model_id

    def model_versions(self) -> Dict[int, Tuple[Optional[int], Optional[str]]]:
        """model id → (the id of the model it was made from or None, what changed or None)."""
        return {r[0]: (r[1], r[2]) for r in self._query("SELECT id, parent_id, change FROM models ORDER BY id")}

    def copy_results(self, from_model: int, to_model: int, threshold: float) -> int:
        """Give ``to_model`` the results of ``from_model`` (same scores and maps, verdicts at
        ``threshold``): a version that differs only in its threshold scores every image alike.  Map
        files are hard-linked (copied where links are not possible).  Returns the rows copied."""
        rows = self._query("SELECT image_id, score, map_path FROM results WHERE model_id = ?", (from_model,))
        items = []
        for image_id, score, map_path in rows:
            rel = None
            if map_path and (self.folder / map_path).is_file():
                dst = self.map_file(to_model, image_id)
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:
                    if dst.exists():
                        dst.unlink()
                    os.link(self.folder / map_path, dst)
                except OSError:
                    shutil.copyfile(self.folder / map_path, dst)
                rel = str(dst.relative_to(self.folder))
            items.append((image_id, to_model, float(score), "anomalous" if score >= threshold else "normal", rel, now()))
        with self._tx() as c:
            c.executemany("INSERT OR REPLACE INTO results(image_id, model_id, score, verdict, map_path, created) "
                          "VALUES (?, ?, ?, ?, ?, ?)", items)
        return len(items)

    # -- results -----------------------------------------------------------------------------
    def map_file(self, model_id: int, image_id: int) -> Path:
        return self.folder / map_rel(model_id, image_id)

    def add_results(self, model_id: int, items: Sequence[Tuple[int, float, str, Optional[np.ndarray]]]) -> None:
        """Store ``(image_id, score, verdict, anomaly_map or None)`` for a model in one commit.

        Maps are written first (float16 ``.npy``), then the rows, so a row never points at a
        missing file.
        """
        self.check_writable()
        for _, _, verdict, _ in items:
            if verdict not in VERDICTS:
                raise ValueError(f"verdict must be one of {VERDICTS}, not {verdict!r}")
        self.add_result_rows(model_id, [
            (image_id, score, verdict,
             None if amap is None else write_map(self.folder, map_rel(model_id, image_id), amap))
            for image_id, score, verdict, amap in items])

    def add_result_rows(self, model_id: int, rows: Sequence[Tuple[int, float, str, Optional[str]]]) -> None:
        """Store ``(image_id, score, verdict, map path relative to the project or None)`` in one
        commit: results whose maps are already saved (by a worker, see :mod:`.handoff`)."""
        stamp = now()
        out = []
        for image_id, score, verdict, rel in rows:
            if verdict not in VERDICTS:
                raise ValueError(f"verdict must be one of {VERDICTS}, not {verdict!r}")
            out.append((int(image_id), int(model_id), float(score), verdict, rel, stamp))
        with self._tx() as c:
            c.executemany("INSERT OR REPLACE INTO results(image_id, model_id, score, verdict, map_path, created) "
                          "VALUES (?, ?, ?, ?, ?, ?)", out)
            c.executemany("UPDATE images SET readable = 1, error = NULL WHERE id = ?",
                          [(r[0],) for r in out])

    def add_result(self, image_id: int, model_id: int, score: float, verdict: str,
                   amap: Optional[np.ndarray] = None) -> None:
        self.add_results(model_id, [(image_id, score, verdict, amap)])

    def load_map(self, row: ImageRow) -> Optional[np.ndarray]:
        """The anomaly map of a result as float32, or None when there is none (or it is gone)."""
        return read_map(self.folder, row.map_path)

    def review_queue(self, model_id: int) -> List[ImageRow]:
        """Images the model flagged as anomalous, highest score first."""
        return self.images(model_id, verdict="anomalous", order="score")

    def scores(self, model_id: int) -> List[Tuple[float, Optional[str]]]:
        """(score, label) of every result of a model."""
        return [(r[0], r[1]) for r in self._query(
            "SELECT r.score, l.label FROM results r LEFT JOIN labels l ON l.image_id = r.image_id "
            "WHERE r.model_id = ?", (model_id,))]

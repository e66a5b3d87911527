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
"""

from __future__ import annotations

import json
import shutil
import sqlite3
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

DB_NAME = "inspector.db"
LABELS = (GOOD, ANOMALOUS)
VERDICTS = ("normal", "anomalous")


class ProjectError(InspectorError):
    """A folder is not a usable project (missing, damaged, or made by a newer version)."""


def now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def is_project(folder) -> bool:
    return (Path(folder) / DB_NAME).is_file()


@dataclass(frozen=True)
class ImageRow:
    """One image with its label and, for a given model, its result."""
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


class Project:
    """An open project. Use :meth:`create` or :meth:`open`; :meth:`close` when done."""

    def __init__(self, folder: Path, conn: sqlite3.Connection):
        self.folder = Path(folder)
        self._conn = conn
        self._lock = threading.RLock()

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
        project = cls._connect(folder)
        with project._tx() as c:
            c.execute("INSERT OR REPLACE INTO settings(key, value) VALUES ('name', ?)", (name or folder.name,))
            c.execute("INSERT OR REPLACE INTO settings(key, value) VALUES ('created', ?)", (now(),))
        return project

    @classmethod
    def open(cls, folder) -> "Project":
        folder = Path(folder).expanduser().absolute()
        if not folder.is_dir():
            raise ProjectError(f"project folder not found: {folder}")
        if not is_project(folder):
            raise ProjectError(f"{folder} is not an Inspector project (no {DB_NAME} in it)")
        return cls._connect(folder)

    @classmethod
    def _connect(cls, folder: Path) -> "Project":
        db = folder / DB_NAME
        try:
            conn = sqlite3.connect(str(db), isolation_level=None, check_same_thread=False, timeout=10)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as exc:
            raise ProjectError(f"{db} is not a readable project database ({exc})") from None
        project = cls(folder, conn)
        try:
            project._migrate()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise ProjectError(f"{db} is not a readable project database ({exc})") from None
        except ProjectError:
            conn.close()
            raise
        for sub in ("models", "maps", "masks", "cache"):
            (folder / sub).mkdir(exist_ok=True)
        return project

    def _migrate(self) -> None:
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

    @property
    def closed(self) -> bool:
        return self._conn is None

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One committed transaction; rolled back on any error."""
        with self._lock:
            if self._conn is None:
                raise ProjectError("the project is closed")
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
                yield c
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")

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
                    c.execute("INSERT INTO labels(image_id, label, source, mask_path, updated) "
                              "VALUES (?, ?, 'dataset', ?, ?)",
                              (cur.lastrowid, s.label, str(s.mask_path) if s.mask_path else None, stamp))
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
        extra = r[9:] if len(r) > 9 else ()
        return ImageRow(r[0], r[1], r[2], r[3], readable, r[5], r[6], r[7], r[8], *extra)

    def images(self, model_id: Optional[int] = None, split: Optional[str] = None,
               label: Optional[str] = None, verdict: Optional[str] = None,
               order: str = "path", ids: Optional[Sequence[int]] = None) -> List[ImageRow]:
        """Images with their labels and (for ``model_id``) results.

        ``label``: 'good', 'anomalous' or 'none' (unlabelled); ``verdict``: 'normal', 'anomalous'
        or 'none' (not inspected by that model); ``order``: 'path', 'score' (highest first) or
        'score_asc'.
        """
        sql = (f"SELECT {_IMAGE_COLUMNS}, r.score, r.verdict, r.map_path, r.created FROM images i "
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
    def label(self, image_id: int) -> Tuple[Optional[str], Optional[str]]:
        """(label, source) of an image; (None, None) when unlabelled."""
        rows = self._query("SELECT label, source FROM labels WHERE image_id = ?", (image_id,))
        return (rows[0][0], rows[0][1]) if rows else (None, None)

    def set_label(self, image_id: int, label: Optional[str], source: str = "operator"
                  ) -> Tuple[Optional[str], Optional[str]]:
        """Set (or with ``None`` remove) an image's label; committed at once.

        Returns the previous ``(label, source)`` so that the change can be undone with
        ``set_label(image_id, *previous)``.
        """
        if label is not None and label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, not {label!r}")
        with self._tx() as c:
            row = c.execute("SELECT label, source FROM labels WHERE image_id = ?", (image_id,)).fetchone()
            previous = (row[0], row[1]) if row else (None, None)
            if label is None:
                c.execute("DELETE FROM labels WHERE image_id = ?", (image_id,))
            else:
                c.execute("INSERT INTO labels(image_id, label, source, updated) VALUES (?, ?, ?, ?) "
                          "ON CONFLICT(image_id) DO UPDATE SET label = excluded.label, "
                          "source = excluded.source, updated = excluded.updated",
                          (image_id, label, source or "operator", now()))
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
        anomalous (an operator label, unless it is already labelled anomalous); an empty mask (or
        None) removes the file and the reference but keeps the label.
        """
        import cv2

        f = self.mask_file(image_id)
        m = None if mask is None else np.asarray(mask)
        if m is not None and m.any():
            f.parent.mkdir(parents=True, exist_ok=True)
            ok, buf = cv2.imencode(".png", np.where(m > 0, 255, 0).astype(np.uint8))
            if not ok:
                raise ProjectError(f"cannot encode the mask of image {image_id}")
            tmp = f.with_suffix(".tmp.png")
            tmp.write_bytes(buf.tobytes())
            tmp.replace(f)
            rel = str(f.relative_to(self.folder))
            with self._tx() as c:
                row = c.execute("SELECT label FROM labels WHERE image_id = ?", (image_id,)).fetchone()
                if row is not None and row[0] == ANOMALOUS:
                    c.execute("UPDATE labels SET mask_path = ?, updated = ? WHERE image_id = ?",
                              (rel, now(), image_id))
                else:
                    c.execute("INSERT INTO labels(image_id, label, source, mask_path, updated) "
                              "VALUES (?, 'anomalous', 'operator', ?, ?) ON CONFLICT(image_id) DO UPDATE SET "
                              "label = excluded.label, source = excluded.source, mask_path = excluded.mask_path, "
                              "updated = excluded.updated", (image_id, rel, now()))
        else:
            with self._tx() as c:
                c.execute("UPDATE labels SET mask_path = NULL, updated = ? WHERE image_id = ?", (now(), image_id))
            f.unlink(missing_ok=True)

    def restore_label(self, image_id: int, label: Optional[str], source: Optional[str],
                      mask_path: Optional[str]) -> None:
        """Put back a label row exactly as it was (``label`` None: unlabelled); for undo."""
        with self._tx() as c:
            if label is None:
                c.execute("DELETE FROM labels WHERE image_id = ?", (image_id,))
            else:
                c.execute("INSERT INTO labels(image_id, label, source, mask_path, updated) VALUES (?, ?, ?, ?, ?) "
                          "ON CONFLICT(image_id) DO UPDATE SET label = excluded.label, source = excluded.source, "
                          "mask_path = excluded.mask_path, updated = excluded.updated",
                          (image_id, label, source or "operator", mask_path, now()))

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
        v = self.setting("current_model")
        return int(v) if v else None

    def set_current_model(self, model_id: Optional[int]) -> None:
        self.set_setting("current_model", None if model_id is None else str(model_id))

    def delete_model(self, model_id: int) -> None:
        """Remove a model with its results, maps and file."""
        m = self.model(model_id)
        with self._tx() as c:
            c.execute("DELETE FROM results WHERE model_id = ?", (model_id,))
            c.execute("DELETE FROM models WHERE id = ?", (model_id,))
            if self.setting("current_model") == str(model_id):
                c.execute("DELETE FROM settings WHERE key = 'current_model'")
        shutil.rmtree(self.folder / "maps" / str(model_id), ignore_errors=True)
        f = self.model_file(m)
        if f.is_file() and self.folder in f.absolute().parents:
            f.unlink(missing_ok=True)

    def set_image_threshold(self, model_id: int, value: float) -> int:
        """Change a model's image threshold and re-decide its verdicts. Returns verdicts changed."""
        with self._tx() as c:
            c.execute("UPDATE models SET image_threshold = ? WHERE id = ?", (float(value), model_id))
            cur = c.execute(
                "UPDATE results SET verdict = CASE WHEN score >= ? THEN 'anomalous' ELSE 'normal' END "
                "WHERE model_id = ? AND verdict != CASE WHEN score >= ? THEN 'anomalous' ELSE 'normal' END",
                (float(value), model_id, float(value)))
            return cur.rowcount

    # -- results -----------------------------------------------------------------------------
    def map_file(self, model_id: int, image_id: int) -> Path:
        return self.folder / "maps" / str(model_id) / f"{image_id}.npy"

    def add_results(self, model_id: int, items: Sequence[Tuple[int, float, str, Optional[np.ndarray]]]) -> None:
        """Store ``(image_id, score, verdict, anomaly_map or None)`` for a model in one commit.

        Maps are written first (float16 ``.npy``), then the rows, so a row never points at a
        missing file.
        """
        rows = []
        stamp = now()
        for image_id, score, verdict, amap in items:
            if verdict not in VERDICTS:
                raise ValueError(f"verdict must be one of {VERDICTS}, not {verdict!r}")
            rel = None
            if amap is not None:
                f = self.map_file(model_id, image_id)
                f.parent.mkdir(parents=True, exist_ok=True)
                tmp = f.with_suffix(".tmp.npy")
                np.save(tmp, np.asarray(amap, dtype=np.float16), allow_pickle=False)
                tmp.replace(f)
                rel = str(f.relative_to(self.folder))
            rows.append((image_id, model_id, float(score), verdict, rel, stamp))
        with self._tx() as c:
            c.executemany("INSERT OR REPLACE INTO results(image_id, model_id, score, verdict, map_path, created) "
                          "VALUES (?, ?, ?, ?, ?, ?)", rows)
            c.executemany("UPDATE images SET readable = 1, error = NULL WHERE id = ?",
                          [(r[0],) for r in rows])

    def add_result(self, image_id: int, model_id: int, score: float, verdict: str,
                   amap: Optional[np.ndarray] = None) -> None:
        self.add_results(model_id, [(image_id, score, verdict, amap)])

    def load_map(self, row: ImageRow) -> Optional[np.ndarray]:
        """The anomaly map of a result as float32, or None when there is none (or it is gone)."""
        if not row.map_path:
            return None
        f = self.folder / row.map_path
        try:
            return np.load(f, allow_pickle=False).astype(np.float32)
        except (OSError, ValueError):
            return None

    def review_queue(self, model_id: int) -> List[ImageRow]:
        """Images the model flagged as anomalous, highest score first."""
        return self.images(model_id, verdict="anomalous", order="score")

    def scores(self, model_id: int) -> List[Tuple[float, Optional[str]]]:
        """(score, label) of every result of a model."""
        return [(r[0], r[1]) for r in self._query(
            "SELECT r.score, l.label FROM results r LEFT JOIN labels l ON l.image_id = r.image_id "
            "WHERE r.model_id = ?", (model_id,))]

"""Thumbnails made in the background (QThreadPool) and cached on disk and in memory.

The disk cache lives in the project's ``cache/thumbs`` folder, keyed by path, size and
modification time, so a changed file gets a new thumbnail.  Images are read with the engine's
``read_image`` so that "unreadable" means the same thing here as in training.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Optional, Set

import numpy as np
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QImage, QPixmap

from ..core.errors import ImageReadError
from ..core.images import read_image, resize_longest

THUMB = 112


def cache_key(path: str) -> str:
    try:
        st = os.stat(path)
        stamp = f"{st.st_size}-{st.st_mtime_ns}"
    except OSError:
        stamp = "missing"
    return hashlib.sha1(f"{path}|{stamp}|{THUMB}".encode("utf-8", "surrogatepass")).hexdigest()


def make_thumbnail(path: str, cache_dir: Optional[Path]) -> QImage:
    """A THUMB-sized QImage of ``path`` (from the disk cache when there). Raises ImageReadError."""
    cached = cache_dir / f"{cache_key(path)}.png" if cache_dir else None
    if cached is not None and cached.is_file():
        img = QImage(str(cached))
        if not img.isNull():
            return img
    small = np.ascontiguousarray(resize_longest(read_image(path), THUMB))
    img = QImage(small.data, small.shape[1], small.shape[0], small.shape[1] * 3, QImage.Format_RGB888).copy()
    if cached is not None:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(".tmp.png")
            if img.save(str(tmp), "PNG"):
                tmp.replace(cached)
        except OSError:
            pass
    return img


class _Signals(QObject):
    loaded = Signal(int, QImage)
    failed = Signal(int, str)


class _Task(QRunnable):
    def __init__(self, image_id: int, path: str, cache_dir: Optional[Path], signals: _Signals):
        super().__init__()
        self.image_id, self.path, self.cache_dir, self.signals = image_id, path, cache_dir, signals

    def run(self) -> None:
        try:
            img = make_thumbnail(self.path, self.cache_dir)
        except ImageReadError as exc:
            self.signals.failed.emit(self.image_id, exc.reason)
        except Exception as exc:  # noqa: BLE001 - a thumbnail must never bring the window down
            self.signals.failed.emit(self.image_id, f"cannot make a thumbnail ({exc})")
        else:
            self.signals.loaded.emit(self.image_id, img)


class ThumbnailCache(QObject):
    """Ask with :meth:`get`; ``ready(image_id)`` is emitted when a thumbnail (or its failure) arrives."""

    ready = Signal(int)
    unreadable = Signal(int, str)

    def __init__(self, cache_dir: Optional[Path] = None, max_items: int = 3000, parent=None):
        super().__init__(parent)
        self.cache_dir = cache_dir
        self.max_items = max_items
        self._pixmaps: "OrderedDict[int, QPixmap]" = OrderedDict()
        self.errors: Dict[int, str] = {}
        self._pending: Set[int] = set()
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max(1, min(2, QThreadPool.globalInstance().maxThreadCount())))
        self._signals = _Signals()
        self._signals.loaded.connect(self._on_loaded)
        self._signals.failed.connect(self._on_failed)

    def get(self, image_id: int, path: str) -> Optional[QPixmap]:
        """The pixmap if ready; otherwise None, and a background load is queued (once)."""
        pm = self._pixmaps.get(image_id)
        if pm is not None:
            self._pixmaps.move_to_end(image_id)
            return pm
        if image_id not in self._pending and image_id not in self.errors:
            self._pending.add(image_id)
            self.pool.start(_Task(image_id, path, self.cache_dir, self._signals))
        return None

    def pending(self) -> int:
        return len(self._pending)

    def _on_loaded(self, image_id: int, img: QImage) -> None:
        self._pending.discard(image_id)
        self._pixmaps[image_id] = QPixmap.fromImage(img)
        while len(self._pixmaps) > self.max_items:
            self._pixmaps.popitem(last=False)
        self.ready.emit(image_id)

    def _on_failed(self, image_id: int, reason: str) -> None:
        self._pending.discard(image_id)
        self.errors[image_id] = reason
        self.unreadable.emit(image_id, reason)
        self.ready.emit(image_id)

    def shutdown(self) -> None:
        self.pool.clear()
        self.pool.waitForDone(5000)

"""What ``predict`` and ``watch`` leave in their output folder: ``results.csv`` and overlay PNGs.

``results.csv`` has one row per input, columns :data:`COLUMNS` (``watch`` adds ``time``):

- ``path``: the image file (as found); ``status``: ``ok`` or ``skipped: REASON``;
- ``score``, ``verdict`` (``normal`` / ``anomalous``) and the image ``threshold`` used (verdict
  and threshold are empty when the model has none); ``model``: the model file's name;
- ``overlay``: the overlay PNG's file name, relative to the output folder: named after the source,
  ``<folder>_<stem>_overlay.png`` (``broken_large/004.png`` → ``broken_large_004_overlay.png``,
  the folder being the defect type in a dataset's layout), numbered (``…_2_overlay.png``) when
  two inputs would share a name.  Each overlay carries a band with the verdict and the score
  against the threshold.

Every file is written whole or not at all: overlays go to a temporary name and are renamed;
``predict``'s CSV likewise, at the end (with the rows done so far when cancelled); ``watch``'s
CSV is a log, appended one flushed line per part, and a line cut short by a crash is removed
when it is opened again.  A write that fails (full disk, read-only folder) raises
:class:`OutputError`: one clear line for the user.
"""

from __future__ import annotations

import csv
import io
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
import json
import math
import os
from datetime import datetime
from pathlib import Path
from typing import Deque, Dict, List, Optional, Sequence, Set

import cv2

from ..errors import InspectorError
from ..overlay import draw_verdict, render_overlay
from .inspect import InspectResult

COLUMNS = ("path", "status", "score", "verdict", "threshold", "model", "overlay", "note")
WATCH_COLUMNS = COLUMNS + ("time",)
CSV_NAME = "results.csv"


class OutputError(InspectorError):
    """Results cannot be written (full disk, read-only folder...)."""


def cannot_write(path, exc: OSError) -> OutputError:
    return OutputError(f"cannot write {path}: {exc.strerror or exc}")


def now_text() -> str:
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def write_atomic(path: Path, data: bytes) -> None:
    """``data`` to ``path`` through a temporary file and a rename: whole or not at all."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise cannot_write(path, exc) from None


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


class OverlayNames:
    """``<folder>_<stem>_overlay.png`` (the source's folder and file name: ``broken_large/004.png``
    → ``broken_large_004_overlay.png``), numbered (``…_2_overlay.png``) when two inputs would
    share a name."""

    def __init__(self, used: Sequence[str] = ()):
        self.used: Set[str] = set(used)

    def take(self, path: Path) -> str:
        path = Path(path)
        base = _safe(f"{path.parent.name}_{path.stem}" if path.parent.name else path.stem)
        name, i = f"{base}_overlay.png", 1
        while name in self.used:
            i += 1
            name = f"{base}_{i}_overlay.png"
        self.used.add(name)
        return name


def result_row(r: InspectResult, model_name: str, overlay: str = "", **extra) -> Dict[str, str]:
    """The CSV row of a result (strings; verdict and threshold empty when there is no threshold)."""
    p = r.prediction
    has_threshold = p is not None and math.isfinite(p.image_threshold)
    row = {"path": str(r.path), "status": r.status,
           "score": f"{p.score:.6g}" if p is not None else "",
           "verdict": p.verdict if has_threshold else "",
           "threshold": f"{p.image_threshold:.6g}" if has_threshold else "",
           "model": model_name, "overlay": overlay,
           "note": p.note if p is not None else ""}     # e.g. why the image could not be aligned
    row.update(extra)
    return row


class ResultsFolder:
    """An output folder: overlays and ``results.csv`` (replaced by ``predict``, appended by ``watch``).

    ``model_name``: the model file's name for the ``model`` column; ``pixel_threshold``: the
    overlays' contour level; ``append``: keep the rows of an earlier run (``watch``), see
    :meth:`done_paths`.
    """

    def __init__(self, folder, model_name: str, pixel_threshold: float, columns: Sequence[str] = COLUMNS,
                 append: bool = False, overlays: bool = True):
        self.folder = Path(folder)
        self.model_name = model_name
        self.pixel_threshold = pixel_threshold
        self.columns = tuple(columns)
        self.append = append
        self.overlays = overlays
        self.csv_path = self.folder / CSV_NAME
        self.rows_before: List[Dict[str, str]] = []
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the output folder {self.folder}: {exc.strerror or exc}") from None
        if append:
            self.rows_before = self._read_log()
            self._target = self.csv_path
            mode = "a"
        else:
            self._target = self.folder / f".{CSV_NAME}.tmp"
            mode = "w"
        try:
            self._file = open(self._target, mode, newline="", encoding="utf-8")
            if not self.rows_before:
                self._file.write(self._line(dict(zip(self.columns, self.columns))))
                self._file.flush()
        except OSError as exc:
            raise cannot_write(self.csv_path, exc) from None
        self.names = OverlayNames(r.get("overlay", "") for r in self.rows_before if r.get("overlay"))
        self._pending: Deque[Future] = deque()

    # -- earlier rows (watch) --------------------------------------------------------------
    def _read_log(self) -> List[Dict[str, str]]:
        """The rows of an existing log; a last line cut short (a crash mid-write) is removed."""
        if not self.csv_path.is_file():
            return []
        try:
            data = self.csv_path.read_bytes()
            if data and not data.endswith(b"\n"):
                data = data[:data.rfind(b"\n") + 1]
                with open(self.csv_path, "r+b") as f:
                    f.truncate(len(data))
        except OSError as exc:
            raise OutputError(f"cannot read {self.csv_path}: {exc.strerror or exc}") from None
        reader = csv.DictReader(io.StringIO(data.decode("utf-8", "replace")))
        if reader.fieldnames is None:
            return []
        if tuple(reader.fieldnames) != self.columns:
            raise OutputError(f"{self.csv_path} has other columns ({','.join(reader.fieldnames)}): it was "
                              "written by another command; choose another output folder")
        return list(reader)

    def done_paths(self) -> Set[Path]:
        """Files with a row already (any status): not to be inspected again."""
        return {Path(r["path"]) for r in self.rows_before if r.get("path")}

    # -- writing ---------------------------------------------------------------------------
    def _line(self, row: Dict[str, str]) -> str:
        buf = io.StringIO()
        csv.writer(buf).writerow([row.get(c, "") for c in self.columns])
        return buf.getvalue()

    def write_overlay(self, r: InspectResult) -> str:
        """The result's overlay PNG; returns its name (relative to the folder), "" when skipped."""
        if not (self.overlays and r.ok and r.image is not None):
            return ""
        p = r.prediction
        rgb = render_overlay(r.image, p.anomaly_map, self.pixel_threshold)
        rgb = draw_verdict(rgb, p.score, p.image_threshold, p.verdict if math.isfinite(p.image_threshold) else "")
        ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            raise OutputError(f"cannot encode the overlay of {r.path}")
        name = self.names.take(r.path)
        write_atomic(self.folder / name, buf.tobytes())
        return name

    def add(self, r: InspectResult, overlay: Optional[str] = None, **extra) -> Dict[str, str]:
        """Write the overlay (unless given) and the row of ``r``; returns the row."""
        row = result_row(r, self.model_name, self.write_overlay(r) if overlay is None else overlay, **extra)
        try:
            self._file.write(self._line(row))
            self._file.flush()
        except OSError as exc:
            raise cannot_write(self.csv_path, exc) from None
        return row

    def add_later(self, r: InspectResult) -> None:
        """:meth:`add` in a writer thread, in order, so that rendering and encoding the overlay
        overlap the scoring of the next images; a failed write is raised by a later call or by
        :meth:`finish`.  At most ``LATER`` results wait."""
        if self._later is None:
            self._later = ThreadPoolExecutor(1, thread_name_prefix="results-writer")
        self._pending.append(self._later.submit(self.add, r))
        while self._pending and (self._pending[0].done() or len(self._pending) > self.LATER):
            self._pending.popleft().result()

    LATER = 8
    _later: Optional[ThreadPoolExecutor] = None

    def _drain(self) -> None:
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            if self._later is not None:
                self._later.shutdown(wait=True, cancel_futures=True)
                self._later = None

    def finish(self) -> None:
        """Close the CSV; ``predict``'s takes its place now (also after a cancel: the rows done)."""
        try:
            self._drain()
        except OutputError:
            self.discard()
            raise
        if self._file.closed:
            return
        try:
            self._file.close()
            if self._target != self.csv_path:
                os.replace(self._target, self.csv_path)
        except OSError as exc:
            self.discard()
            raise cannot_write(self.csv_path, exc) from None

    def discard(self) -> None:
        """After a failed write: close, and remove ``predict``'s unfinished CSV (the log stays)."""
        if self._later is not None:
            self._pending.clear()
            self._later.shutdown(wait=True, cancel_futures=True)
            self._later = None
        try:
            self._file.close()
        except OSError:
            pass
        if self._target != self.csv_path:
            self._target.unlink(missing_ok=True)


def json_line(row: Dict[str, str]) -> str:
    """A result row as one JSON line: numbers as numbers, empty fields as null."""
    out = {}
    for k, v in row.items():
        if k in ("score", "threshold"):
            out[k] = float(v) if v else None
        else:
            out[k] = v if v != "" else None
    return json.dumps(out, ensure_ascii=False)


class Sorter:
    """Copies (or moves) inspected images into ``ROOT/pass`` and ``ROOT/fail``, keeping their
    sub-folders under the watched folder.  Files that could not be inspected, and results
    without a verdict (no threshold), stay where they are."""

    def __init__(self, root, watched, move: bool = False):
        self.root = Path(root).absolute()
        self.watched = Path(watched).absolute()
        self.move = move

    def place(self, r: InspectResult) -> Optional[Path]:
        """Where the image went, or None."""
        import shutil
        p = r.prediction
        if p is None or not math.isfinite(p.image_threshold):
            return None
        try:
            rel = Path(os.path.abspath(r.path)).relative_to(self.watched)
        except ValueError:
            rel = Path(r.path.name)
        dest = self.root / ("fail" if p.is_anomalous else "pass") / rel
        i = 1
        while dest.exists():
            i += 1
            dest = dest.with_name(f"{rel.stem}_{i}{rel.suffix}")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            if self.move:
                shutil.move(str(r.path), str(dest))
            else:
                tmp = dest.with_name(f".{dest.name}.tmp")
                shutil.copy2(str(r.path), str(tmp))
                os.replace(tmp, dest)
        except OSError as exc:
            if not self.move:
                dest.with_name(f".{dest.name}.tmp").unlink(missing_ok=True)
            raise cannot_write(dest, exc) from None
        return dest

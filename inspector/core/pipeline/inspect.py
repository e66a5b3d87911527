"""The one inspect loop: image files in, one result per file out, in the order they came.

``inspect_stream(model, items)`` is used by ``inspector predict`` (a list of files), ``inspector
watch`` and the application's station view (an endless stream of files as they land), and by
project inspection (``(image_id, path)`` pairs, through :func:`inspect_each` with a callback).

A reader thread decodes each file and brings it to the network's frame while the model scores
the batch before it; a bounded queue between them keeps memory flat.  OpenCV's decoder, the
resize and torch's convolutions release the interpreter lock, so on two cores the reading hides
behind the scoring.  Batches take whatever the reader has ready, up to ``batch_size``: a folder
is scored in full batches, a file landing alone in a watched folder is scored at once.

Every file gets a result: ``status`` is ``"ok"`` with a :class:`Prediction`, or ``"skipped:
REASON"`` when it cannot be read (or gave no image at all: an :class:`~inspector.core.datasets.Input`
with an error).  Nothing a file holds can stop the batch.  Progress and cancellation go through
:class:`~inspector.core.jobs.Job` (checked between batches).
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from ..errors import ImageReadError
from ..images import read_image
from ..jobs import Job, as_job

# Images scored together.  On the shared 2-core CPU (MobileNetV2 at 256 px, bottle) batches of 8
# used a quarter of the CPU time per image that batches of 1 did, and 4 half (README,
# "Throughput").  A stream (a watched folder) takes what is ready, up to this: one part landing
# alone is scored at once.
DEFAULT_BATCH_SIZE = 8

OK = "ok"


@dataclass
class InspectResult:
    """What became of one input: ``status`` is ``"ok"`` or ``"skipped: REASON"``."""
    path: Path
    status: str
    prediction: Any = None                 # a methods.base.Prediction when status is "ok"
    image: Optional[np.ndarray] = None     # the decoded RGB image (for an overlay), when "ok"
    key: Any = None                        # what the caller passed with the path (an image id...)

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def reason(self) -> Optional[str]:
        """Why the file was skipped, or None."""
        return None if self.ok else self.status.split(": ", 1)[-1]


def skipped(path, reason: str, key: Any = None) -> InspectResult:
    return InspectResult(Path(path), f"skipped: {reason}", key=path if key is None else key)


@dataclass
class _Read:
    key: Any
    path: Path
    image: Optional[np.ndarray] = None
    frame: Optional[np.ndarray] = None
    registration: Any = None               # to the model's alignment reference (preprocess.framed)
    error: Optional[str] = None


class _End:
    def __init__(self, error: Optional[BaseException] = None):
        self.error = error


def _as_item(item) -> Tuple[Any, Path, Optional[str]]:
    """A path, a ``(key, path)`` pair or an ``Input`` (path + error) → ``(key, path, error)``."""
    if isinstance(item, (str, os.PathLike)):
        return Path(item), Path(item), None
    if isinstance(item, tuple):
        key, path = item
        return key, Path(path), None
    path = Path(item.path)
    return getattr(item, "key", path), path, getattr(item, "error", None)


def _read_one(key, path: Path, error: Optional[str], preprocess) -> _Read:
    if error is not None:
        return _Read(key, path, error=error)
    try:
        image = read_image(path)
        frame, registration = preprocess.framed(image)
        return _Read(key, path, image, frame, registration)
    except ImageReadError as exc:
        return _Read(key, path, error=exc.reason)
    except MemoryError:
        return _Read(key, path, error="not enough memory to decode it")
    except Exception as exc:  # noqa: BLE001 - a decoder's failure is this file's, never the batch's
        return _Read(key, path, error=f"cannot be read ({type(exc).__name__}: {exc})")


def _put(q: "queue.Queue", record, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(record, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _reader(items: Iterable, preprocess, q: "queue.Queue", stop: threading.Event) -> None:
    """Runs in the reader thread: decode and frame each item, in order, into ``q``."""
    end = _End()
    try:
        for item in items:
            if stop.is_set():
                break
            key, path, error = _as_item(item)
            if not _put(q, _read_one(key, path, error, preprocess), stop):
                break
    except BaseException as exc:  # noqa: BLE001 - the input iterable failed: the consumer re-raises it
        end = _End(exc)
    _put(q, end, stop)


class _Scorer:
    """Scores a batch of read images; an image that makes the model fail is skipped alone."""

    def __init__(self, model):
        self.model = model

    def __call__(self, reads: List[_Read]) -> List[InspectResult]:
        try:
            return self._score(reads)
        except Exception:  # noqa: BLE001 - retried one by one below, to skip only the culprit
            pass
        out = []
        for r in reads:
            try:
                out.extend(self._score([r]))
            except MemoryError:
                out.append(skipped(r.path, "not enough memory to score it", r.key))
            except Exception as exc:  # noqa: BLE001 - this file's failure, not the batch's
                out.append(skipped(r.path, f"scoring failed ({type(exc).__name__}: {exc})", r.key))
        return out

    def _score(self, reads: List[_Read]) -> List[InspectResult]:
        preds = self.model.predict_framed([r.image for r in reads], [(r.frame, r.registration) for r in reads])
        return [InspectResult(r.path, OK, p, r.image, r.key) for r, p in zip(reads, preds)]


def inspect_stream(model, items: Iterable, job: Optional[Job] = None, batch_size: int = DEFAULT_BATCH_SIZE,
                   prefetch: Optional[int] = None, stage: str = "inspecting") -> Iterator[InspectResult]:
    """Yield one :class:`InspectResult` per item of ``items``, in order.

    ``model``: an engine ``AnomalyModel`` (its thresholds give the verdicts).  ``items``: paths,
    ``(key, path)`` pairs or ``Input`` objects, a list or an endless iterable (it is consumed by
    the reader thread; it ends the stream by ending).  ``prefetch``: images read ahead (default
    one batch: with the batch being scored, two batches of decoded images are held at most).
    Cancelling the job, or closing the generator, stops the reader.
    """
    job = as_job(job)
    total = len(items) if hasattr(items, "__len__") else 0
    batch_size = max(1, int(batch_size))
    q: "queue.Queue" = queue.Queue(maxsize=max(1, prefetch or batch_size))
    stop = threading.Event()
    reader = threading.Thread(target=_reader, args=(items, model.preprocess, q, stop), daemon=True,
                              name="inspect-reader")
    score = _Scorer(model)
    done = 0
    reader.start()
    try:
        job.step(stage, 0, total)
        end: Optional[_End] = None
        while end is None:
            batch: List[_Read] = []
            record = _get(q, job)
            while True:
                if isinstance(record, _End):
                    end = record
                    break
                batch.append(record)
                if sum(r.error is None for r in batch) >= batch_size:
                    break
                try:
                    record = q.get_nowait()
                except queue.Empty:
                    break
            readable = [r for r in batch if r.error is None]
            scored = iter(score(readable)) if readable else iter(())
            for r in batch:
                yield next(scored) if r.error is None else skipped(r.path, r.error, r.key)
            done += len(batch)
            job.step(stage, done, max(total, done) if total else 0)
        if end.error is not None:
            raise end.error
    finally:
        stop.set()                  # the reader sees it within 0.1 s, unless it waits on its input
        while True:
            try:
                q.get_nowait()
            except queue.Empty:
                break
        reader.join(0.5)            # (a watched folder's stream ends when its watcher stops)


def _get(q: "queue.Queue", job: Job):
    """The next record, waiting as long as it takes while still answering a cancel."""
    while True:
        job.check()
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue


@dataclass
class InspectSummary:
    n_ok: int
    skipped: List[Tuple[Path, str]]


def inspect_each(model, items: Iterable, on_result: Callable[[InspectResult], None], job: Optional[Job] = None,
                 batch_size: int = DEFAULT_BATCH_SIZE) -> InspectSummary:
    """:func:`inspect_stream` with a callback per result (in order), e.g. to store it in a project
    from ``(image_id, path)`` pairs.  Returns how many were scored and what was skipped, why."""
    n_ok = 0
    skipped_: List[Tuple[Path, str]] = []
    for r in inspect_stream(model, items, job, batch_size):
        on_result(r)
        if r.ok:
            n_ok += 1
        else:
            skipped_.append((r.path, r.reason))
    return InspectSummary(n_ok, skipped_)

"""What every method offers.

A :class:`Method` is a strategy: ``fit(source, ctx, job)`` builds an :class:`AnomalyModel` from
normal images.  A model scores batches in the network's frame (``score_batch``) and offers
``predict`` for whole images (maps back in the original geometry).  Saving and loading go
through ``state()`` / ``from_state()`` (JSON-able metadata, numpy arrays, raw blobs) so that
:mod:`inspector.core.modelfile` can write them without pickle.
"""

from __future__ import annotations

import importlib

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Dict, Iterator, List, Optional, Sequence, Tuple, Type

import numpy as np
import torch

from ..align import Registration
from ..errors import DatasetError, ImageReadError, InspectorError
from ..images import read_image
from ..jobs import Job, as_job
from ..preprocess import Preprocess
from .. import thresholds
from ..thresholds import Threshold
from . import catalog

if TYPE_CHECKING:
    from ..backbones import TapExtractor


@dataclass
class Prediction:
    score: float
    anomaly_map: np.ndarray          # float32, H×W of the original image
    image_threshold: float
    pixel_threshold: float
    aligned: Optional[bool] = None   # None: the model aligns nothing; False: not registered, scored as taken
    note: str = ""                   # why not aligned (empty otherwise)

    @property
    def is_anomalous(self) -> bool:
        return thresholds.is_anomalous(self.score, self.image_threshold)

    @property
    def verdict(self) -> str:
        return thresholds.verdict(self.score, self.image_threshold)


class FrameSource:
    """Image files read lazily in batches and turned into normalised network input.

    Unreadable files are skipped and listed in ``skipped`` as ``(path, reason)``.  With an alignment,
    ``registrations`` (one per ``used`` image) say where each frame came from: maps scored on the
    frames go back to the images as taken with :meth:`maps_as_taken`; ``not_aligned`` lists the
    images that could not be registered (framed as taken, never dropped).
    """

    def __init__(self, paths: Sequence, preprocess: Preprocess, batch_size: int = 16):
        self.paths = [Path(p) for p in paths]
        self.preprocess = preprocess
        self.batch_size = batch_size
        self.skipped: List[Tuple[Path, str]] = []
        self.used: List[Path] = []
        self.registrations: List[Registration] = []

    @property
    def not_aligned(self) -> List[Tuple[Path, str]]:
        return [(p, r.reason) for p, r in zip(self.used, self.registrations) if not r.ok]

    def maps_as_taken(self, maps: np.ndarray) -> np.ndarray:
        """(N, S, S) maps of the frames yielded, in order → the same maps in each image's own frame
        (unchanged without alignment)."""
        if not self.preprocess.alignment.active or not len(maps):
            return maps
        return np.stack([self.preprocess.unalign(m, r) for m, r in zip(maps, self.registrations)])

    def __len__(self) -> int:
        return len(self.paths)

    def frames(self, job: Optional[Job] = None, stage: Optional[str] = "reading images") -> Iterator[List[np.ndarray]]:
        """Yield lists of up to ``batch_size`` frames (uint8, in the network's frame); reports
        ``stage`` progress per batch once the consumer has taken the next one, i.e. when its work
        on the batch is done (None: only checks for cancellation, when the consumer reports
        progress itself)."""
        job = as_job(job)
        self.skipped, self.used, self.registrations = [], [], []
        frames: List[np.ndarray] = []
        if stage is not None:
            job.step(stage, 0, len(self.paths))
        for i, p in enumerate(self.paths):
            job.check()
            try:
                frame, reg = self.preprocess.framed(read_image(p))
                frames.append(frame)
                self.used.append(p)
                self.registrations.append(reg)
            except ImageReadError as exc:
                self.skipped.append((p, exc.reason))
            if len(frames) == self.batch_size or (i == len(self.paths) - 1 and frames):
                yield frames
                frames = []
                if stage is not None:       # once the consumer is done with the batch: its
                    job.step(stage, i + 1, len(self.paths))     # features count, not just the reading
        if not self.used:
            raise DatasetError(f"none of the {len(self.paths)} images could be read")

    def batches(self, job: Optional[Job] = None, stage: Optional[str] = "reading images") -> Iterator[np.ndarray]:
        """Yield (B, 3, S, S) float32 normalised batches (see :meth:`frames`)."""
        for frames in self.frames(job, stage):
            yield self.preprocess.normalise(frames)


def load_fit_extractor(ctx: "FitContext", strides: Sequence[int], job: Job):
    """The frozen extractor a method trains with, reported as the "loading backbone" stage."""
    from ..backbones import load_extractor
    job.step("loading backbone", 0, 1)
    extractor, source = load_extractor(ctx.backbone, strides, ctx.weights, ctx.random_weights, ctx.seed, ctx.device)
    job.step("loading backbone", 1, 1)
    return extractor, source


@dataclass
class FitContext:
    """What a method needs beside the images: backbone, weights, frame, device, seed."""
    backbone: str
    preprocess: Preprocess
    weights: Optional[str] = None
    random_weights: bool = False
    seed: int = 0
    device: Optional[torch.device] = None
    options: Dict = field(default_factory=dict)
    anomalies: List[Tuple[Path, Optional[Path]]] = field(default_factory=list)  # labelled (image, mask or None)


class AnomalyModel(ABC):
    """A trained model: scores batches in the network's frame and whole images."""

    method: ClassVar[str]

    def __init__(self, meta: Dict, preprocess: Preprocess):
        self.meta = meta
        self.preprocess = preprocess
        self.image_threshold = Threshold(float("inf"), "manual", 0, "not set")
        self.pixel_threshold = Threshold(float("inf"), "manual", 0, "not set")

    # -- scoring ---------------------------------------------------------------------------
    @abstractmethod
    def score_batch(self, x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(B, 3, S, S) normalised input → image scores (B,) and anomaly maps (B, S, S) in the frame."""

    def score_frames(self, batches, job: Optional[Job] = None, total: Optional[int] = None,
                     stage: str = "scoring") -> Tuple[np.ndarray, np.ndarray]:
        """Score an iterable of normalised batches; progress per batch."""
        job = as_job(job)
        scores, maps = [], []
        done = 0
        for x in batches:
            job.check()
            s, m = self.score_batch(x)
            scores.append(s)
            maps.append(m)
            done += len(s)
            job.step(stage, done, total or done)
        if not scores:
            return np.zeros(0, np.float32), np.zeros((0, self.preprocess.size, self.preprocess.size), np.float32)
        return np.concatenate(scores), np.concatenate(maps)

    def predict(self, images: Sequence[np.ndarray], job: Optional[Job] = None,
                batch_size: int = 8) -> List[Prediction]:
        """RGB uint8 images → predictions whose maps lie on each original image."""
        job = as_job(job)
        out: List[Prediction] = []
        for i in range(0, len(images), batch_size):
            job.check()
            chunk = images[i:i + batch_size]
            out.extend(self.predict_framed(chunk, [self.preprocess.framed(im) for im in chunk]))
            job.step("inspecting", min(i + batch_size, len(images)), len(images))
        return out

    def skipped_anomalies(self) -> List[Tuple[str, str]]:
        """``(path, reason)`` of the labelled anomalous images given to training that the model could
        not learn from (unreadable); none for methods that learn no anomalies."""
        return []

    def predict_framed(self, images: Sequence[np.ndarray], framed: Sequence[Tuple[np.ndarray, Any]]
                       ) -> List[Prediction]:
        """Predictions for ``images`` already framed by ``preprocess.framed`` (frame, registration):
        one batch, maps on each original image, alignment failures noted.  The inspect loop frames
        in its reader thread and scores here, so it predicts exactly as :meth:`predict`."""
        scores, maps = self.score_batch(self.preprocess.normalise([f for f, _ in framed]))
        aligns = self.preprocess.alignment.active
        return [Prediction(float(s), self.preprocess.to_original(m, im.shape[:2], reg),
                           self.image_threshold.value, self.pixel_threshold.value,
                           reg.ok if aligns else None, reg.note())
                for im, (_, reg), s, m in zip(images, framed, scores, maps)]

    # -- learning more normal images ------------------------------------------------------
    def extend(self, source: FrameSource, job: Optional[Job] = None) -> Dict:
        """Learn the normal images of ``source`` without retraining (in place); returns what changed
        as a JSON-able dict.  The pipeline (:mod:`..pipeline.update`) scores them first, sets the
        thresholds and records the new version.  A method that cannot says so."""
        raise InspectorError(f"{self.method} models cannot learn new images without retraining: "
                             "train a new model on all the good images")

    def score_and_extend(self, source: FrameSource, job: Optional[Job] = None
                         ) -> Tuple[np.ndarray, np.ndarray, Dict]:
        """Score the images of ``source`` with the model as it is (scores, maps in the frame), then
        :meth:`extend` it with them.  A method may override this to read each image once."""
        job = as_job(job)
        scores, maps = self.score_frames(source.batches(job, None), job, len(source),
                                         stage="scoring the new images (before learning them)")
        learn = FrameSource(source.used, self.preprocess)
        change = self.extend(learn, job)
        if learn.skipped:         # readable a moment ago: do not learn half of what was scored
            raise DatasetError(f"{len(learn.skipped)} image(s) became unreadable while they were added")
        return scores, maps, change

    # -- persistence -----------------------------------------------------------------------
    @abstractmethod
    def state(self) -> Tuple[Dict, Dict[str, np.ndarray], Dict[str, bytes]]:
        """Method-specific metadata (JSON-able), arrays and raw blobs to save."""

    @classmethod
    @abstractmethod
    def from_state(cls, meta: Dict, arrays: Dict[str, np.ndarray], blobs: Dict[str, bytes],
                   preprocess: Preprocess, load_backbone: "BackboneLoader") -> "AnomalyModel":
        """Rebuild a model saved with :meth:`state`.

        ``load_backbone(strides)`` returns the frozen extractor with the weights the model was
        trained with (the model file checks their sha256).
        """


BackboneLoader = Callable[[Sequence[int]], "TapExtractor"]


class Method(ABC):
    """A strategy that trains an :class:`AnomalyModel` from normal images."""

    name: ClassVar[str]
    model_class: ClassVar[Type[AnomalyModel]]

    @abstractmethod
    def fit(self, source: FrameSource, ctx: FitContext, job: Optional[Job] = None) -> AnomalyModel:
        """Train on the normal images of ``source``."""

    def fit_fold(self, model: AnomalyModel, source: FrameSource, ctx: FitContext, job: Job) -> AnomalyModel:
        """A model that has learnt nothing from the images outside ``source``, to score a cross-fit
        fold (:class:`holdout.CrossFit`); ``model`` is the one trained on all images.  By default,
        train anew; a method may reuse what does not depend on the normal images."""
        return self.fit(source, ctx, job)


_METHODS: Dict[str, Type[Method]] = {}


def register(cls: Type[Method]) -> Type[Method]:
    _METHODS[cls.name] = cls
    return cls


def method_names() -> List[str]:
    """The methods in the catalog (:mod:`.catalog`), which need not be imported for that."""
    return catalog.names()


def get_method(name: str) -> Type[Method]:
    """The :class:`Method` registered under ``name``: its catalog entry names the module to import."""
    info = catalog.get(name)
    if name not in _METHODS:
        try:
            importlib.import_module(info.implementation)
        except ModuleNotFoundError as exc:
            raise InspectorError(f"{info.label} cannot be used here: {exc.name} is missing") from None
    try:
        return _METHODS[name]
    except KeyError:
        raise InspectorError(f"method '{name}': {info.implementation} registers no Method of that name") from None

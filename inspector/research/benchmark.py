"""Speed benchmark: backbone-only forward vs full inference, bank building, peak memory.

By default it makes its own images (random textures), so it needs no data set, and runs with
random weights (speed does not depend on the weights' values).  With ``data`` it measures the same
figures on real images instead: an MVTec-layout category (the bank from ``train/good``, inference
timed on test images) or a plain folder of good images (inference timed on some of the same
images), plus the whole training's seconds, image decoding included.  Bank-building cost depends
on the images (how alike their patches are), which generated textures do not show.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Dict, Optional, Tuple

import cv2
import numpy as np
import torch

from .evaluation import split_labelled
from .memory import peak_rss_mb
from ..core.backbone_specs import DEFAULT_BACKBONE
from ..core.datasets import is_mvtec_category, load_mvtec_category, training_images
from ..core.images import read_images
from ..core.jobs import Job, as_job
from ..core.methods.catalog import DEFAULT_METHOD
from ..core.pipeline.training import TrainSettings, train_model


def synthetic_images(folder: Path, n: int, size: int, seed: int = 0) -> list:
    """Write ``n`` smooth random textures of ``size``² pixels as PNG files; returns their paths."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        noise = rng.standard_normal((size // 8, size // 8, 3)).astype(np.float32)
        img = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
        img = img + 0.3 * rng.standard_normal((size, size, 3)).astype(np.float32)
        img = np.clip(128 + 40 * img, 0, 255).astype(np.uint8)
        p = folder / f"{i:04d}.png"
        cv2.imwrite(str(p), img)
        paths.append(p)
    return paths


N_LABELLED = 10   # labelled anomalies offered to methods that learn from them (APC), as evaluate's


def real_images(data, n_inference: int, seed: int = 0) -> Tuple[list, list, list]:
    """(bank paths, inference-timing paths, labelled anomalies) from a real folder.

    An MVTec-layout category gives its ``train/good`` images for the bank, ``n_inference`` test
    images spread over its defect types for the timing, and ``N_LABELLED`` anomalous test images
    (with masks, picked as ``evaluate --labelled-anomalies`` does) for methods that learn from
    labelled anomalies; they are left out of the timing.  A plain folder gives all its images for
    the bank and ``n_inference`` of them, evenly spaced, for the timing.  Raises
    :class:`DatasetError` with one clear line on a folder without images."""
    bank = training_images(data)
    pool, anomalies = bank, []
    if is_mvtec_category(data):
        test = load_mvtec_category(data).test
        anomalous = sum(s.is_anomalous for s in test)
        labelled, rest = split_labelled(test, N_LABELLED if anomalous > N_LABELLED else 0, seed)
        anomalies = [(s.path, s.mask_path) for s in labelled]
        pool = [s.path for s in rest] or bank
    picks = np.unique(np.linspace(0, len(pool) - 1, min(n_inference, len(pool))).round().astype(int))
    return bank, [pool[i] for i in picks], anomalies


def _time_per_image(fn, batches, repeats: int) -> float:
    fn(batches[0])  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    n = 0
    for _ in range(repeats):
        for b in batches:
            fn(b)
            n += len(b)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return 1000.0 * (time.perf_counter() - t0) / n


def run_benchmark(backbone: str = DEFAULT_BACKBONE, method: str = DEFAULT_METHOD, n_images: int = 209,
                  image_size: int = 224, n_inference: int = 32,
                  batch_size: int = 8, random_weights: bool = True, weights: Optional[str] = None,
                  options: Optional[Dict] = None, job: Optional[Job] = None,
                  data: Optional[str] = None) -> Dict:
    """Train ``method`` with ``options`` (see :func:`inspector.cli.method_options`) on ``n_images``
    generated images, or on the real images of ``data`` (see :func:`real_images`; ``n_images`` is then
    ignored), and time inference on ``n_inference`` more; the coreset ratio and index reported are
    those of the model (None for a method without them)."""
    job = as_job(job)
    opts = dict(options or {})
    with tempfile.TemporaryDirectory(prefix="inspector-bench-") as tmp:
        anomalies = []
        if data is not None:
            bank_paths, timing_paths, anomalies = real_images(data, n_inference)
        else:
            job.step("making images", 0, 1)
            paths = synthetic_images(Path(tmp) / "bank", n_images + n_inference, image_size)
            bank_paths, timing_paths = paths[:n_images], paths[n_images:]
        settings = TrainSettings(method=method, backbone=backbone, weights=weights,
                                 random_weights=random_weights and not weights,
                                 resize=image_size, crop=None, holdout=0, options=opts, anomalies=anomalies)
        result = train_model(bank_paths, settings, job)
        model = result.model
        images, _, _ = read_images(timing_paths)
        batches = [model.preprocess.batch(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
        job.step("timing inference", 0, 2)
        extractor = model.extractor
        device = next(extractor.parameters()).device

        @torch.inference_mode()
        def backbone_only(x):
            extractor(torch.from_numpy(x).to(device))

        backbone_ms = _time_per_image(backbone_only, batches, 2)
        job.step("timing inference", 1, 2)
        inference_ms = _time_per_image(model.score_batch, batches, 2)
        job.step("timing inference", 2, 2)
        timings = model.meta.get("timings", {})
        model_options = getattr(model, "options", None)
        return {
            "backbone": backbone,
            "method": method,
            "image_size": image_size,
            "coreset_ratio": getattr(model_options, "coreset_ratio", None),
            "data": None if data is None else str(data),
            "n_bank_images": result.n_train,
            "backbone_ms_per_image": backbone_ms,
            "inference_ms_per_image": inference_ms,
            "feature_extraction_seconds": timings.get("feature_extraction_seconds"),
            "coreset_seconds": timings.get("coreset_seconds"),
            "index_seconds": timings.get("index_seconds"),
            "training_seconds": result.seconds,
            "stages": dict(timings),
            "peak_rss_mb": peak_rss_mb(),
            "index": getattr(model_options, "index", None),
            "device": str(device),
        }

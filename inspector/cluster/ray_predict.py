"""Batch inspection spread over a Ray cluster: ``inspector predict MODEL INPUTS -o OUT --ray [ADDRESS]``.

The driver (the machine the command runs on) lists the inputs, checks the model file once, and
hands the model's bytes (and its backbone weights file, when it has one) to Ray. A Ray Data
pipeline then

1. reads each input's bytes on the driver's machine (the paths are the driver's), so that the
   image bytes travel through Ray and no worker needs a shared filesystem;
2. scores them in a pool of :class:`Scorer` actors (``--ray-actors N``, one CPU or one GPU each),
   each of which writes the model bytes to a private temporary file, loads it with the same
   :func:`~inspector.core.modelfile.load_model` as a local run (every check included) once, decodes
   each image with :func:`~inspector.core.images.decode_image` (the local reader's checks and
   reasons) and returns the score, the verdict and the overlay as PNG bytes.

The driver writes the overlays under OUT as they arrive and, at the end, ``results.parquet`` and
``results.csv`` (the columns of the in-process ``predict``), one row per input in input order. An
image that cannot be used is a row whose status says why; an input path that does not exist is one
too. A worker that dies is restarted by Ray and its batch run again; rows are keyed by input index,
so a batch that was run twice still gives one row per input.

Ray is optional (the ``cluster`` extra): nothing here imports it before :func:`require_ray`.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..core.errors import InspectorError
from ..core.jobs import Job, as_job

from ..core.pipeline.outputs import COLUMNS  # noqa: E402  (the in-process predict's columns)
INSTALL_HINT = '--ray needs Ray, which is not installed: pip install -e ".[cluster]" (or pip install "ray[data]")'
STAGE = "inspecting on Ray"
CSV_NAME = "results.csv"
PARQUET_NAME = "results.parquet"


def require_ray():
    """The ``ray`` module with Ray Data, or an :class:`InspectorError` saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data brings pyarrow and pandas)
    except ImportError:
        raise InspectorError(INSTALL_HINT) from None
    return ray


# -- on the workers --------------------------------------------------------------------------

def read_files(batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Ray Data batch function, run on the driver's machine: each path's bytes, or why not."""
    from ..core.errors import ImageReadError
    from ..core.images import read_image
    data, errors = [], []
    for path in batch["path"]:
        try:
            data.append(Path(path).read_bytes())
            errors.append("")
        except OSError:
            data.append(b"")
            try:                                    # the local reader's words for the same failure
                read_image(path)
                errors.append("cannot be opened")
            except ImageReadError as exc:
                errors.append(exc.reason)
    out = dict(batch)
    out["data"] = np.array(data, dtype=object)
    out["error"] = np.array(errors, dtype=object)
    return out


class Scorer:
    """A Ray Data actor: loads the model once, then scores batches of image bytes.

    ``model_ref`` and ``weights_ref`` are one-element lists holding Ray object references (a list,
    so that Ray hands the reference over rather than resolving it into the constructor's call).
    """

    def __init__(self, model_ref: list, weights_ref: Optional[list] = None, weights_name: str = "weights.pth",
                 threshold: Optional[float] = None):
        import ray

        from ..core.modelfile import SUFFIX, load_model
        from ..core.thresholds import manual
        tmp = tempfile.mkdtemp(prefix="inspector-ray-")
        try:
            model_path = Path(tmp) / f"model{SUFFIX}"
            model_path.write_bytes(ray.get(model_ref[0]))
            weights = None
            if weights_ref:
                weights = Path(tmp) / weights_name
                weights.write_bytes(ray.get(weights_ref[0]))
            self.model = load_model(model_path, weights=None if weights is None else str(weights))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if threshold is not None:
            self.model.image_threshold = manual(threshold)

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        import cv2

        from ..core.errors import ImageReadError
        from ..core.images import decode_image
        from ..core.overlay import render_overlay
        n = len(batch["index"])
        status = [""] * n
        score = np.full(n, np.nan)
        threshold = np.full(n, np.nan)
        verdict = [""] * n
        png = [b""] * n
        note = [""] * n
        images, rows = [], []
        for i in range(n):
            if batch["error"][i]:
                status[i] = f"skipped: {batch['error'][i]}"
                continue
            try:
                images.append(decode_image(batch["data"][i], batch["path"][i]))
                rows.append(i)
            except ImageReadError as exc:
                status[i] = f"skipped: {exc.reason}"
        pixel_t = self.model.pixel_threshold.value
        for i, image, pred in zip(rows, images, self.model.predict(images)):
            status[i] = "ok"
            score[i] = pred.score
            threshold[i] = pred.image_threshold
            verdict[i] = pred.verdict if math.isfinite(pred.image_threshold) else ""
            overlay = render_overlay(image, pred.anomaly_map, pixel_t)
            ok, buf = cv2.imencode(".png", cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
            png[i] = buf.tobytes() if ok else b""
            note[i] = pred.note
        return {"index": batch["index"], "status": np.array(status, dtype=object), "score": score,
                "verdict": np.array(verdict, dtype=object), "threshold": threshold,
                "overlay_png": np.array(png, dtype=object), "note": np.array(note, dtype=object)}


# -- on the driver ---------------------------------------------------------------------------

@dataclass
class RayRun:
    """What a run on Ray did: the rows (in input order), where they went, how fast."""

    rows: List[Dict] = field(default_factory=list)
    csv_path: Optional[Path] = None
    parquet_path: Optional[Path] = None
    actors: int = 0
    seconds: float = 0.0             # from the first batch submitted to the last row back
    unset_threshold: bool = False

    @property
    def inspected(self) -> int:
        return sum(r["status"] == "ok" for r in self.rows)

    @property
    def anomalous(self) -> int:
        return sum(r["verdict"] == "anomalous" for r in self.rows)

    @property
    def skipped(self) -> List[Tuple[Path, str]]:
        return [(Path(r["path"]), r["status"].split(": ", 1)[-1]) for r in self.rows if r["status"] != "ok"]


def _weights_file(meta: Dict, weights: Optional[str]) -> Optional[Path]:
    """The backbone weights file a local load would use, if it is a file (it then travels via Ray)."""
    from ..core.backbone_specs import weights_request
    path = weights_request(meta["weights"], weights).get("weights")
    return Path(path) if path and Path(path).is_file() else None


def _inspector_error(exc: BaseException) -> Optional[InspectorError]:
    """The user-facing error raised on a worker, if ``exc`` (as Ray wrapped it) came from one."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, InspectorError):
            return exc
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    return None


def _connect(ray, address: Optional[str], actors: int) -> bool:
    """Start a local Ray instance (``address`` None) or join a cluster. True when we started Ray here."""
    import logging
    if ray.is_initialized():
        return False
    common = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    if address is None:
        # "local": a private instance, even where RAY_ADDRESS or a running cluster would be picked up
        ray.init(address="local", num_cpus=max(1, actors), object_store_memory=1 << 30, **common)
        return True
    _probe(address)
    try:
        ray.init(address=address, **common)
    except Exception as exc:   # ConnectionError, or RuntimeError for a bad address string
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InspectorError(f"cannot join the Ray cluster at '{address}': {first}") from None
    return True


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not minutes, when HOST:PORT does not answer (Ray itself retries for long)."""
    import socket
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        return                                  # 'auto', or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise InspectorError(f"cannot reach the Ray cluster at '{address}': "
                             f"{exc.strerror or exc or 'no answer'}") from None


def _write_table(rows: List[Dict], out_dir: Path) -> Tuple[Path, Path]:
    """results.parquet and results.csv, each written beside itself and renamed (never half-written)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pa.table({
        "path": pa.array([r["path"] for r in rows], pa.string()),
        "status": pa.array([r["status"] for r in rows], pa.string()),
        "score": pa.array([r["score"] for r in rows], pa.float64()),
        "verdict": pa.array([r["verdict"] for r in rows], pa.string()),
        "threshold": pa.array([r["threshold"] for r in rows], pa.float64()),
        "model": pa.array([r["model"] for r in rows], pa.string()),
        "overlay": pa.array([r["overlay"] for r in rows], pa.string()),
        "note": pa.array([r.get("note", "") for r in rows], pa.string()),
    })
    parquet_path, csv_path = out_dir / PARQUET_NAME, out_dir / CSV_NAME

    def fmt(v):
        return "" if v is None else f"{v:.6g}"

    for target, write in ((parquet_path, lambda tmp: pq.write_table(table, tmp)),
                          (csv_path, lambda tmp: _write_csv(tmp, rows, fmt))):
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=str(out_dir))
        os.close(fd)
        try:
            write(tmp)
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    return parquet_path, csv_path


def _write_csv(path: str, rows: List[Dict], fmt) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([r["path"], r["status"], fmt(r["score"]), r["verdict"], fmt(r["threshold"]),
                        r["model"], r["overlay"], r.get("note", "")])


def predict_on_ray(model_path, inputs: Sequence, out_dir, *, address: Optional[str] = None,
                   actors: Optional[int] = None, weights: Optional[str] = None,
                   threshold: Optional[float] = None, job: Optional[Job] = None,
                   batch_size: int = 8, max_retries: int = 3, scorer: type = Scorer) -> RayRun:
    """Score ``inputs`` (files and folders) with the model file ``model_path`` on Ray.

    ``address``: None starts a local Ray instance (``actors`` CPUs, no dashboard) and stops it at
    the end; ``"auto"`` or ``HOST:PORT`` joins a running cluster. ``actors``: model copies scoring
    in parallel (default 1 locally, one per alive node on a cluster), each on one GPU when the
    cluster has a GPU for each, else on one CPU. A dead actor is restarted and its batch retried up
    to ``max_retries`` times. ``scorer`` is the actor class (tests pass one that dies once).
    Raises :class:`InspectorError` for a bad model file or an unreachable cluster.
    """
    from ..core.datasets import expand_inputs
    from ..core.pipeline.outputs import OverlayNames
    from ..core.modelfile import load_model
    from ..core.thresholds import manual
    ray = require_ray()
    job = as_job(job)
    model_path, out_dir = Path(model_path), Path(out_dir)
    model = load_model(model_path, weights=weights)          # one clear line for a bad file, before Ray starts
    if threshold is not None:
        model.image_threshold = manual(threshold)
    unset = not math.isfinite(model.image_threshold.value)
    weights_path = _weights_file(model.meta, weights)
    del model
    listed = [(x.path, x.error or "") for x in expand_inputs(inputs)]
    out_dir.mkdir(parents=True, exist_ok=True)
    label = str(model_path)
    rows: Dict[int, Dict] = {}
    items, names = [], OverlayNames()
    for i, (p, error) in enumerate(listed):
        if error:
            rows[i] = {"path": str(p), "status": f"skipped: {error}", "score": None, "verdict": "",
                       "threshold": None, "model": label, "overlay": ""}
        else:
            items.append({"index": i, "path": str(p), "overlay": names.take(p)})
    pending = {it["index"]: it for it in items}
    run = RayRun(unset_threshold=unset)
    started_here = False
    try:
        started_here = _connect(ray, address, actors or 1)
        if actors is None:
            actors = 1 if address is None else max(1, sum(1 for n in ray.nodes() if n.get("Alive")))
        run.actors = actors
        import logging
        logging.getLogger("ray.data").setLevel(logging.ERROR)   # no per-dataset INFO lines
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False          # our own bar: rows done and rows per second
        ctx.print_on_execution_start = False
        job.step(STAGE, 0, len(listed))
        if items:
            batch_size = max(1, min(batch_size, math.ceil(len(items) / actors)))
            ds = _dataset(ray, items, model_path, weights_path, threshold, actors, batch_size, max_retries, scorer)
            t0 = time.perf_counter()
            try:
                for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                    for k, index in enumerate(batch["index"]):
                        index = int(index)
                        if index not in rows:     # a batch run again after a worker died comes back twice
                            rows[index] = _row(batch, k, pending[index], out_dir, label)
                    run.seconds = time.perf_counter() - t0
                    job.step(STAGE, len(rows), len(listed))
            except InspectorError:
                raise
            except Exception as exc:              # Ray wraps what a worker raised
                found = _inspector_error(exc)
                if found is None:
                    raise
                raise InspectorError(f"on a Ray worker: {found}") from None
    finally:
        if started_here:
            ray.shutdown()
    run.rows = [rows[i] for i in sorted(rows)]
    assert len(run.rows) == len(listed), "one row per input"
    run.parquet_path, run.csv_path = _write_table(run.rows, out_dir)
    return run


def _dataset(ray, items, model_path: Path, weights_path: Optional[Path], threshold, actors: int,
             batch_size: int, max_retries: int, scorer: type):
    """The Ray Data pipeline: read bytes on this machine, score them in a pool of actors."""
    import inspect
    import warnings
    model_ref = ray.put(model_path.read_bytes())
    weights_ref = [ray.put(weights_path.read_bytes())] if weights_path else None
    per_actor = {"num_gpus": 1} if ray.cluster_resources().get("GPU", 0) >= actors else {"num_cpus": 1}
    here = ray.get_runtime_context().get_node_id()
    if "label_selector" in inspect.signature(ray.data.Dataset.map_batches).parameters:
        on_this_machine = {"label_selector": {"ray.io/node-id": here}}          # as Ray pins local:// writes
    else:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        on_this_machine = {"scheduling_strategy": NodeAffinitySchedulingStrategy(here, soft=False)}
    ds = ray.data.from_items(items, override_num_blocks=max(1, math.ceil(len(items) / batch_size)))
    with warnings.catch_warnings():
        # Ray 2.60 deprecates the remote args (max_restarts...) for a successor it does not name yet
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*is deprecated")
        # no CPU of their own (the head may have none to give), so at most two at a time: each is a process
        ds = ds.map_batches(read_files, batch_size=batch_size, batch_format="numpy", num_cpus=0,
                            compute=ray.data.TaskPoolStrategy(size=2), **on_this_machine)
        return ds.map_batches(
            scorer, batch_size=batch_size, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            fn_constructor_kwargs={"model_ref": [model_ref], "weights_ref": weights_ref,
                                   "weights_name": weights_path.name if weights_path else "weights.pth",
                                   "threshold": threshold},
            max_restarts=max_retries, max_task_retries=max_retries, **per_actor)


def _row(batch: Dict[str, np.ndarray], k: int, item: Dict, out_dir: Path, label: str) -> Dict:
    """Row ``k`` of a scored batch as a table row; its overlay is written under ``out_dir``."""
    status = str(batch["status"][k])
    ok = status == "ok"
    if ok:
        (out_dir / item["overlay"]).write_bytes(batch["overlay_png"][k])
    thr = float(batch["threshold"][k])
    return {"path": item["path"], "status": status, "score": float(batch["score"][k]) if ok else None,
            "verdict": str(batch["verdict"][k]), "threshold": thr if math.isfinite(thr) else None,
            "model": label, "overlay": item["overlay"] if ok else "",
            "note": str(batch["note"][k]) if ok else ""}

"""Model files without pickle.

A model file is a zip archive (stored, not compressed) holding:

* ``inspector.json`` — metadata: format and version, method, backbone and weights sha256, image size
  and crop, thresholds and how they were chosen, training set (count, sha256), creation time,
  Inspector version, the method's options, and a sha256 of every array and blob;
* ``arrays/NAME.npy`` — numpy arrays (``allow_pickle=False`` on both sides);
* ``blobs/NAME.bin`` — raw bytes (the serialised faiss index, ...).

Saving writes a temporary file beside the target and renames it, so a failed or cancelled job
never leaves a half-written model.  Loading validates everything and raises
:class:`ModelFileError` with a clear message for a damaged or foreign file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from .. import __version__
from .align import alignment_from_state
from .backbones import load_extractor
from .errors import InspectorError, ModelFileError, WeightsError
from .methods.base import AnomalyModel, get_method
from .preprocess import Preprocess
from .thresholds import Threshold

FORMAT = "inspector-model"
FORMAT_VERSION = 1
META_NAME = "inspector.json"
SUFFIX = ".inspector"
ALIGNMENT_REFERENCE = "alignment_reference"   # the alignment's reference image (arrays/), beside the method's


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def model_metadata(model: AnomalyModel) -> Dict:
    """Everything a later user needs to know about ``model`` (without the arrays)."""
    meta = dict(model.meta)
    meta.update({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "method": model.method,
        "preprocess": model.preprocess.to_dict(),
        "thresholds": {"image": model.image_threshold.to_dict(), "pixel": model.pixel_threshold.to_dict()},
        "alignment": model.preprocess.alignment.state()[0],     # its reference: arrays/ALIGNMENT_REFERENCE
    })
    meta.setdefault("inspector_version", __version__)
    meta.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    return meta


def save_model(model: AnomalyModel, path) -> Path:
    """Write ``model`` to ``path`` atomically. Returns the path written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state_meta, arrays, blobs = model.state()
    entries = {f"arrays/{k}.npy": _npy_bytes(v) for k, v in arrays.items()}
    reference = model.preprocess.alignment.state()[1]
    if reference is not None:
        entries[f"arrays/{ALIGNMENT_REFERENCE}.npy"] = _npy_bytes(reference)
    entries.update({f"blobs/{k}.bin": bytes(v) for k, v in blobs.items()})
    meta = model_metadata(model)
    meta["state"] = state_meta
    meta["entries"] = {name: _sha(data) for name, data in entries.items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
                zf.writestr(META_NAME, json.dumps(meta, indent=2, sort_keys=True))
                for name, data in entries.items():
                    zf.writestr(name, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_metadata(path) -> Dict:
    """The metadata of a model file, validated (arrays are not read)."""
    with _open(Path(path)) as zf:
        return _read_meta(zf, Path(path))


def _open(path: Path) -> zipfile.ZipFile:
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    try:
        return zipfile.ZipFile(path, "r")
    except (zipfile.BadZipFile, OSError):
        raise ModelFileError(f"{path} is not an Inspector model file (damaged, or another kind of file)") from None


def _read_meta(zf: zipfile.ZipFile, path: Path) -> Dict:
    try:
        meta = json.loads(zf.read(META_NAME).decode("utf-8"))
    except KeyError:
        raise ModelFileError(f"{path} is not an Inspector model file (no {META_NAME} inside)") from None
    except (ValueError, UnicodeDecodeError, zipfile.BadZipFile, OSError):
        raise ModelFileError(f"{path}: the model's metadata is damaged") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not an Inspector model file")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(f"{path} was written by a newer Inspector (model format {version}); "
                             f"this one reads format {FORMAT_VERSION}: please update Inspector")
    for key in ("method", "backbone", "weights", "preprocess", "thresholds", "state", "entries"):
        if key not in meta:
            raise ModelFileError(f"{path}: the model's metadata lacks '{key}' (damaged file)")
    return meta


def _weights_request(meta: Dict, weights: Optional[str]) -> Dict:
    """How to get the backbone weights the model was trained with."""
    recorded = meta["weights"]
    if weights:
        return {"weights": weights}
    if recorded.get("kind") == "random":
        return {"random_weights": True, "seed": int(recorded.get("seed") or 0)}
    rec_path = recorded.get("path")
    if recorded.get("kind") in ("file", "env") and rec_path and Path(rec_path).is_file():
        return {"weights": rec_path}
    return {}   # environment variable or torchvision's cache


def load_model(path, weights: Optional[str] = None, device: Optional[torch.device] = None) -> AnomalyModel:
    """Read and validate a model file; the backbone weights must match the recorded sha256."""
    path = Path(path)
    with _open(path) as zf:
        meta = _read_meta(zf, path)
        arrays: Dict[str, np.ndarray] = {}
        blobs: Dict[str, bytes] = {}
        for name, digest in meta["entries"].items():
            try:
                data = zf.read(name)
            except (KeyError, zipfile.BadZipFile, OSError):
                raise ModelFileError(f"{path} is damaged: '{name}' is missing or unreadable") from None
            if _sha(data) != digest:
                raise ModelFileError(f"{path} is damaged: '{name}' does not match its checksum")
            key = name.split("/", 1)[1].rsplit(".", 1)[0]
            if name.startswith("arrays/"):
                try:
                    arrays[key] = np.load(io.BytesIO(data), allow_pickle=False)
                except ValueError:
                    raise ModelFileError(f"{path}: array '{key}' cannot be read") from None
            else:
                blobs[key] = data
    try:
        method = get_method(meta["method"])
        preprocess = Preprocess.from_dict(meta["preprocess"]).with_alignment(    # files without it: none
            alignment_from_state(meta.get("alignment"), arrays.pop(ALIGNMENT_REFERENCE, None)))
    except (InspectorError, KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: unsupported model ({exc})") from None
    request = _weights_request(meta, weights)
    expected = meta["weights"].get("sha256")

    def load_backbone(strides: Sequence[int]):
        ext, source = load_extractor(meta["backbone"], strides, device=device, **request)
        if expected and source.sha256 != expected:
            raise WeightsError(
                f"the backbone weights found ({source.path or source.kind}, sha256 {source.sha256[:12]}...) are not "
                f"the ones this model was trained with (sha256 {expected[:12]}...): pass the original file with --weights")
        return ext

    try:
        model = method.model_class.from_state(meta["state"], arrays, blobs, preprocess, load_backbone)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: the model's contents are inconsistent ({exc})") from None
    state = meta.pop("state")
    meta.pop("entries")
    model.meta = meta
    model.meta["state"] = state
    model.image_threshold = Threshold.from_dict(meta["thresholds"]["image"])
    model.pixel_threshold = Threshold.from_dict(meta["thresholds"]["pixel"])
    return model

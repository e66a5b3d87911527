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

import hashlib
import io
import json
import os
import tempfile
import uuid
import zipfile
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np
import torch

from .. import __version__
from .backbones import load_extractor
from .errors import InspectorError, ModelFileError, WeightsError
from .lineage import history_entry, lineage_of, lineage_ok, now_iso  # noqa: F401  (history_entry: for callers)
from .methods.base import AnomalyModel, get_method
from .preprocess import Preprocess
from .thresholds import Threshold

FORMAT = "inspector-model"
FORMAT_VERSION = 1
META_NAME = "inspector.json"
SUFFIX = ".inspector"


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
    })
    meta.setdefault("inspector_version", __version__)
    meta.setdefault("created", now_iso())
    meta.setdefault("uuid", str(uuid.uuid4()))        # this model's identity, for its versions' lineage
    return meta


def save_model(model: AnomalyModel, path) -> Path:
    """Write ``model`` to ``path`` atomically. Returns the path written."""
    path = Path(path)
    state_meta, arrays, blobs = model.state()
    entries = {f"arrays/{k}.npy": _npy_bytes(v) for k, v in arrays.items()}
    entries.update({f"blobs/{k}.bin": bytes(v) for k, v in blobs.items()})
    meta = model_metadata(model)
    meta["state"] = state_meta
    meta["entries"] = {name: _sha(data) for name, data in entries.items()}
    return _write_archive(path, meta, entries)


def _write_archive(path: Path, meta: Dict, entries: Dict[str, bytes]) -> Path:
    """The zip of ``meta`` and ``entries``, written beside ``path`` and renamed onto it."""
    path.parent.mkdir(parents=True, exist_ok=True)
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
    if "lineage" in meta and not lineage_ok(meta["lineage"]):
        raise ModelFileError(f"{path}: the model's version history (lineage) is damaged")
    return meta


def _entries(zf: zipfile.ZipFile, meta: Dict, path: Path) -> Iterator[Tuple[str, bytes]]:
    """Every array and blob of the file, one at a time, each checked against its sha256."""
    for name, digest in meta["entries"].items():
        try:
            data = zf.read(name)
        except (KeyError, zipfile.BadZipFile, OSError):
            raise ModelFileError(f"{path} is damaged: '{name}' is missing or unreadable") from None
        if _sha(data) != digest:
            raise ModelFileError(f"{path} is damaged: '{name}' does not match its checksum")
        yield name, data


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
        for name, data in _entries(zf, meta, path):
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
        preprocess = Preprocess.from_dict(meta["preprocess"])
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


# -- versions: lineage (lineage.py reads it; here, what needs the file) ------------------------------

def metadata_sha256(path) -> str:
    """sha256 of a model file's metadata as stored: with the file name, the parent's identity."""
    path = Path(path)
    with _open(path) as zf:
        try:
            return _sha(zf.read(META_NAME))
        except (KeyError, zipfile.BadZipFile, OSError):
            raise ModelFileError(f"{path} is not an Inspector model file (no {META_NAME} inside)") from None


def next_version(parent_meta: Dict, parent_path, entry: Dict) -> Dict:
    """Metadata keys of a new version of the model in ``parent_path`` (whose metadata is
    ``parent_meta``): a new identity and creation time, and the lineage with ``entry`` appended."""
    old = lineage_of(parent_meta)
    version = old["version"] + 1
    parent = {"file": Path(parent_path).name, "meta_sha256": metadata_sha256(parent_path),
              "uuid": parent_meta.get("uuid")}
    return {"uuid": str(uuid.uuid4()), "created": now_iso(), "inspector_version": __version__,
            "lineage": {"version": version, "parent": parent, "history": old["history"] + [{"version": version, **entry}]}}


def derive_model_file(parent_path, out_path, change: Callable[[Dict], None]) -> Path:
    """A new model file whose arrays are the parent's and whose metadata ``change(meta)`` edits in
    place (e.g. a threshold kept from the threshold panel), written atomically; the parent stays."""
    parent_path, out_path = Path(parent_path), Path(out_path)
    if out_path.exists() and out_path.resolve() == parent_path.resolve():
        raise ModelFileError(f"a new version needs a new file: {out_path} is the parent model")
    with _open(parent_path) as zf:
        meta = _read_meta(zf, parent_path)
        entries = dict(_entries(zf, meta, parent_path))
    change(meta)
    return _write_archive(out_path, meta, entries)

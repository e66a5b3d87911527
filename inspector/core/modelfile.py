"""Model files without pickle.

A model file is a zip archive (stored, not compressed) holding:

* ``inspector.json`` — metadata: format and version, method, backbone and weights sha256, image size
  and crop, thresholds and how they were chosen, training set (count, sha256), creation time,
  Inspector version, the method's options, and a sha256 of every array and blob;
* ``inspector.json.sha256`` — the sha256 of ``inspector.json`` (format 2 on), so the metadata and,
  through the hashes it lists, every member are covered by a checksum;
* ``arrays/NAME.npy`` — numpy arrays (``allow_pickle=False`` on both sides);
* ``blobs/NAME.bin`` — raw bytes (the serialised faiss index, ...).

Saving writes a temporary file beside the target and renames it, so a failed or cancelled job
never leaves a half-written model; temporaries a killed process left behind are removed by the
next save or load in that folder.  A full disk or a read-only folder is a :class:`StorageError`.

Loading trusts nothing in the file.  Before anything is read, every member's declared size is
checked (:data:`MAX_METADATA_BYTES` for the metadata, :func:`max_model_bytes` for the others, no
compressed member expanding more than :data:`MAX_EXPANSION` times, each read bounded); the
metadata is parsed with limits (nesting depth, number sizes, no NaN) and validated against the
JSON schema of :mod:`.model_schema` (types, ranges, required keys, the weights' sha256); arrays'
headers are checked against their sizes and may hold no Python objects; faiss reads each index with
its vector and loop limits set from the blob's size.  Any fault is one :class:`ModelFileError` line.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
import math
import os
import re
import socket
import tempfile
import threading
import time
import uuid
import zipfile
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np
import torch

from .. import __version__
from . import model_schema
from .align import alignment_from_state
from .backbone_specs import weights_request
from .backbones import load_extractor
from .errors import InspectorError, ModelFileError, StorageError, WeightsError
from .limits import physical_memory
from .lineage import history_entry, lineage_of, lineage_ok, now_iso  # noqa: F401  (history_entry: for callers)
from .methods.base import AnomalyModel, get_method
from .preprocess import Preprocess
from .thresholds import Threshold

FORMAT = "inspector-model"
FORMAT_VERSION = 2          # 2: the metadata's own checksum (inspector.json.sha256) is required
META_NAME = "inspector.json"
META_SHA_NAME = "inspector.json.sha256"
SUFFIX = ".inspector"
ALIGNMENT_REFERENCE = "alignment_reference"   # the alignment's reference image (arrays/), beside the method's

MAX_METADATA_BYTES = 8 << 20       # real metadata is a few KB (APC's encoder list: ~20 KB)
MAX_JSON_DEPTH = 64                # real metadata nests 5 deep
MAX_INT_DIGITS = 30
MAX_EXPANSION = 100                # float arrays deflate by 1.1x; a zip bomb by 1000x
MAX_MODEL_BYTES_ENV = "INSPECTOR_MAX_MODEL_BYTES"


def max_model_bytes() -> int:
    """The most bytes a model file's members may expand to, all together: ``$INSPECTOR_MAX_MODEL_BYTES``,
    else a quarter of the machine's memory within 1 to 16 GiB (loading holds about twice that at
    the peak: the bytes read, then the arrays and indexes built from them)."""
    raw = os.environ.get(MAX_MODEL_BYTES_ENV, "").strip()
    if raw:
        try:
            return max(int(float(raw)), 1)
        except (ValueError, OverflowError):
            raise ModelFileError(f"{MAX_MODEL_BYTES_ENV}={raw!r} is not a number of bytes") from None
    return int(min(max(physical_memory() // 4, 1 << 30), 16 << 30))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def _jsonable_threshold(d: Dict) -> Dict:
    """A threshold for the file: an unset one (infinite) is written as null."""
    value = d.get("value")
    return {**d, "value": value if isinstance(value, (int, float)) and math.isfinite(value) else None}


def model_metadata(model: AnomalyModel) -> Dict:
    """Everything a later user needs to know about ``model`` (without the arrays)."""
    meta = dict(model.meta)
    meta.update({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "method": model.method,
        "preprocess": model.preprocess.to_dict(),
        "thresholds": {"image": _jsonable_threshold(model.image_threshold.to_dict()),
                       "pixel": _jsonable_threshold(model.pixel_threshold.to_dict())},
        "alignment": model.preprocess.alignment.state()[0],     # its reference: arrays/ALIGNMENT_REFERENCE
    })
    meta.setdefault("inspector_version", __version__)
    meta.setdefault("created", now_iso())
    meta.setdefault("uuid", str(uuid.uuid4()))        # this model's identity, for its versions' lineage
    return meta


# -- temporaries -------------------------------------------------------------------------------

def _owner_tag() -> str:
    """Who writes a temporary: this host and process, so that a later save can tell a dead writer's."""
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32] or "host"
    return f"{host}-{os.getpid()}"


_TEMP = re.compile(r"^\.(?P<target>.+)\.[A-Za-z0-9_]+\.(?P<host>[A-Za-z0-9-]+)-(?P<pid>\d+)\.tmp$")
_LEGACY_TEMP = re.compile(r"^\..+\.inspector\.[a-z0-9_]{8}\.tmp$")    # written before the owner tag
LEGACY_TEMP_AGE = 3600.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:                # another user's process: alive
        return True
    return True


def remove_stale_temporaries(folder) -> int:
    """Remove the temporaries that killed saves left in ``folder``: those of a dead process of
    this host, and untagged ones (older Inspectors) over an hour old. Returns how many."""
    if os.name != "posix":
        return 0
    host = _owner_tag().rsplit("-", 1)[0]
    removed = 0
    try:
        names = [n for n in os.listdir(folder) if n.startswith(".") and n.endswith(".tmp")]
    except OSError:
        return 0
    for name in names:
        p = os.path.join(folder, name)
        m = _TEMP.match(name)
        try:
            if m and m["host"] == host and not _alive(int(m["pid"])):
                stale = True
            else:
                stale = (m is None and bool(_LEGACY_TEMP.match(name))
                         and time.time() - os.stat(p).st_mtime > LEGACY_TEMP_AGE)
            if stale:
                os.unlink(p)
                removed += 1
        except OSError:
            pass                   # read-only folder, or removed meanwhile
    return removed


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)         # no /proc: read it by setting it (and put it back at once)
    os.umask(mask)
    return mask


def _storage_error(path: Path, exc: OSError) -> StorageError:
    why = exc.strerror or str(exc) or type(exc).__name__
    return StorageError(f"cannot write the model file {path}: {why}; nothing was written "
                        "(a model already there is unchanged)")


def check_writable(path) -> None:
    """Raise :class:`StorageError` now if a model cannot be written at ``path`` (a read-only or
    missing-permission folder), before hours of training; a full disk is only known when writing."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".{_owner_tag()}.tmp", dir=str(path.parent))
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise _storage_error(path, exc) from None


def save_model(model: AnomalyModel, path) -> Path:
    """Write ``model`` to ``path`` atomically. Returns the path written.

    Raises :class:`StorageError` when the file cannot be written (nothing is left behind)."""
    path = Path(path)
    state_meta, arrays, blobs = model.state()
    entries = {f"arrays/{k}.npy": _npy_bytes(v) for k, v in arrays.items()}
    reference = model.preprocess.alignment.state()[1]
    if reference is not None:
        entries[f"arrays/{ALIGNMENT_REFERENCE}.npy"] = _npy_bytes(reference)
    entries.update({f"blobs/{k}.bin": bytes(v) for k, v in blobs.items()})
    meta = model_metadata(model)
    meta["state"] = state_meta
    meta["entries"] = {name: _sha(data) for name, data in entries.items()}
    return _write_archive(path, meta, entries)


def _write_archive(path: Path, meta: Dict, entries: Dict[str, bytes]) -> Path:
    """The zip of ``meta`` and ``entries``, written beside ``path`` and renamed onto it."""
    fault = model_schema.first_error(meta)
    if fault:                      # never write a file that loading would refuse
        raise ModelFileError(f"cannot save the model: its metadata does not fit the model file schema ({fault})")
    meta_bytes = json.dumps(meta, indent=2, sort_keys=True).encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".{_owner_tag()}.tmp", dir=str(path.parent))
    except OSError as exc:
        raise _storage_error(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
                zf.writestr(META_NAME, meta_bytes)
                zf.writestr(META_SHA_NAME, _sha(meta_bytes))
                for name, data in entries.items():
                    zf.writestr(name, data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())        # mkstemp makes 0600; a model file is as any other
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _storage_error(path, exc) from None
        raise
    _sync_folder(path.parent)
    return path


def _sync_folder(folder: Path) -> None:
    """Make the rename durable (POSIX); harmless where folders cannot be opened."""
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- reading -----------------------------------------------------------------------------------

def read_metadata(path) -> Dict:
    """The metadata of a model file, validated (arrays are not read)."""
    path = Path(path)
    with _open(path) as zf:
        return _read_meta(zf, path)


def _open(path: Path) -> zipfile.ZipFile:
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    remove_stale_temporaries(path.parent)
    try:
        return zipfile.ZipFile(path, "r")
    except Exception:              # BadZipFile, OSError, and what a crafted directory raises
        raise ModelFileError(f"{path} is not an Inspector model file (damaged, or another kind of file)") from None


def _member(zf: zipfile.ZipFile, name: str, limit: int, path: Path, hint: str = "") -> bytes:
    """A member's bytes, its declared size checked against ``limit`` before reading a byte."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise ModelFileError(f"{path} is damaged: '{name}' is missing") from None
    _check_size(info, limit, path, hint)
    try:
        with zf.open(info) as f:
            data = f.read(info.file_size + 1)      # bounded even if the header lies
    except Exception:              # BadZipFile (CRC), zlib.error, EOFError, encrypted, ...
        raise ModelFileError(f"{path} is damaged: '{name}' is unreadable") from None
    if len(data) != info.file_size:
        raise ModelFileError(f"{path} is damaged: '{name}' is not the size its header says")
    return data


def _check_size(info: zipfile.ZipInfo, limit: int, path: Path, hint: str = "") -> None:
    name = info.filename
    if info.file_size > limit:
        raise ModelFileError(f"{path}: '{name}' would take {info.file_size / 2**20:.0f} MiB, over the limit of "
                             f"{limit / 2**20:.0f} MiB ({hint or 'refused: damaged or crafted file'})")
    if info.compress_type == zipfile.ZIP_STORED:
        if info.compress_size != info.file_size:
            raise ModelFileError(f"{path} is damaged: '{name}' has inconsistent sizes")
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        if info.file_size > max(info.compress_size * MAX_EXPANSION, 1 << 20):
            raise ModelFileError(f"{path}: '{name}' would expand {info.file_size / max(info.compress_size, 1):.0f} "
                                 f"times (refused: a model file's members are not compressed)")
    else:
        raise ModelFileError(f"{path}: '{name}' uses an unsupported compression")


def _json_depth_ok(text: bytes, limit: int) -> bool:
    """Whether no JSON array or object in ``text`` nests deeper than ``limit`` (strings skipped)."""
    depth = 0
    for m in re.finditer(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', text):
        c = m.group()
        if c in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return False
        elif c in (b"]", b"}"):
            depth -= 1
    return True


def _parse_int(s: str) -> int:
    if len(s.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"a number with more than {MAX_INT_DIGITS} digits")
    return int(s)


def _parse_float(s: str) -> float:
    v = float(s)
    if not math.isfinite(v):
        raise ValueError(f"a number out of range ({s[:20]})")
    return v


def _parse_constant(s: str) -> float:
    if s == "Infinity":        # older writers stored an unset threshold so; anywhere else the schema refuses it
        return math.inf
    raise ValueError(f"{s} is not a number")


def _parse_json(text: bytes, path: Path):
    if not _json_depth_ok(text, MAX_JSON_DEPTH):
        raise ModelFileError(f"{path}: the model's metadata nests deeper than {MAX_JSON_DEPTH} levels (damaged or crafted)")
    try:
        return json.loads(text.decode("utf-8"), parse_int=_parse_int, parse_float=_parse_float,
                          parse_constant=_parse_constant)
    except ValueError as exc:      # JSONDecodeError, UnicodeDecodeError, the hooks' refusals
        detail = str(exc).splitlines()[0][:120] if str(exc) else "not JSON"
        raise ModelFileError(f"{path}: the model's metadata is damaged ({detail})") from None
    except RecursionError:         # cannot happen below MAX_JSON_DEPTH; kept as a last guard
        raise ModelFileError(f"{path}: the model's metadata nests too deep (damaged or crafted)") from None


def _read_meta(zf: zipfile.ZipFile, path: Path) -> Dict:
    if META_NAME not in zf.NameToInfo:
        raise ModelFileError(f"{path} is not an Inspector model file (no {META_NAME} inside)")
    text = _member(zf, META_NAME, MAX_METADATA_BYTES, path)
    recorded = _member(zf, META_SHA_NAME, 256, path).decode("ascii", "replace").strip() \
        if META_SHA_NAME in zf.NameToInfo else None
    if recorded is not None and recorded != _sha(text):
        raise ModelFileError(f"{path} is damaged: the model's metadata does not match its checksum")
    meta = _parse_json(text, path)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not an Inspector model file")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(f"{path} is damaged: its format version is {str(version)[:20]!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{path} was written by a newer Inspector (model format {version}); "
                             f"this one reads format {FORMAT_VERSION}: please update Inspector")
    if version >= 2 and recorded is None:
        raise ModelFileError(f"{path} is damaged: the checksum of its metadata is missing")
    thresholds = meta.get("thresholds")
    if version == 1 and isinstance(thresholds, dict):      # format 1 wrote an unset threshold as Infinity
        for t in thresholds.values():
            if isinstance(t, dict) and t.get("value") == math.inf:
                t["value"] = None
    fault = model_schema.first_error(meta)
    if fault:
        raise ModelFileError(f"{path}: the model's metadata is invalid at {fault}")
    if "lineage" in meta and not lineage_ok(meta["lineage"]):
        raise ModelFileError(f"{path}: the model's version history (lineage) is damaged")
    need, have = model_schema.scoring_bytes(meta), physical_memory()
    if need > have // 2:
        raise ModelFileError(f"{path}: scoring one image with this model would take about {need / 2**30:.1f} GiB, "
                             f"more than half of this machine's {have / 2**30:.1f} GiB")
    return meta


def _load_array(data: bytes, key: str, path: Path) -> np.ndarray:
    """A .npy member, its header checked against its size before numpy allocates anything."""
    f = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"npy format {version}")
    except Exception as exc:
        raise ModelFileError(f"{path}: array '{key}' cannot be read ({str(exc)[:80] or 'bad header'})") from None
    if dtype.hasobject:
        raise ModelFileError(f"{path}: array '{key}' holds Python objects (refused: they could run code)")
    count = 1
    for n in shape:
        count *= int(n)
    if count * dtype.itemsize != len(data) - f.tell():
        raise ModelFileError(f"{path}: array '{key}' is not the size its header says (damaged)")
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception:
        raise ModelFileError(f"{path}: array '{key}' cannot be read") from None


_FAISS_LOCK = threading.Lock()


@contextlib.contextmanager
def _faiss_limits(blob_bytes: int) -> Iterator[None]:
    """While reading indexes of ``blob_bytes`` in all, faiss may make no vector larger than them
    nor loop more times than they have bytes: a crafted size field fails at once instead of
    allocating (faiss's own defaults allow 1 TiB)."""
    import faiss
    get_v = getattr(faiss, "get_deserialization_vector_byte_limit", None)
    get_l = getattr(faiss, "get_deserialization_loop_limit", None)
    with _FAISS_LOCK:
        if get_v is None or get_l is None:     # faiss before 1.12: its own checks only
            yield
            return
        old = (get_v(), get_l())
        faiss.set_deserialization_vector_byte_limit(4 * blob_bytes + (1 << 16))   # faiss divides it by 4
        faiss.set_deserialization_loop_limit(blob_bytes + 1024)
        try:
            yield
        finally:
            faiss.set_deserialization_vector_byte_limit(old[0])
            faiss.set_deserialization_loop_limit(old[1])


def _entries(zf: zipfile.ZipFile, meta: Dict, path: Path) -> Iterator[Tuple[str, bytes]]:
    """Every array and blob of the file, one at a time: sizes checked against the limit before any
    is read, each checked against its sha256."""
    limit, total = max_model_bytes(), 0
    for name in meta["entries"]:
        info = zf.NameToInfo.get(name)
        if info is None:
            raise ModelFileError(f"{path} is damaged: '{name}' is missing")
        _check_size(info, limit, path, f"set {MAX_MODEL_BYTES_ENV} to allow more")
        total += info.file_size
    if total > limit:
        raise ModelFileError(f"{path}: its contents would take {total / 2**20:.0f} MiB, over the limit of "
                             f"{limit / 2**20:.0f} MiB (set {MAX_MODEL_BYTES_ENV} to allow more)")
    for name, digest in meta["entries"].items():
        data = _member(zf, name, limit, path)
        if _sha(data) != digest:
            raise ModelFileError(f"{path} is damaged: '{name}' does not match its checksum")
        yield name, data


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
                arrays[key] = _load_array(data, key, path)
            else:
                blobs[key] = data
    try:
        method = get_method(meta["method"])
        preprocess = Preprocess.from_dict(meta["preprocess"]).with_alignment(    # files without it: none
            alignment_from_state(meta.get("alignment"), arrays.pop(ALIGNMENT_REFERENCE, None)))
    except (InspectorError, KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: unsupported model ({exc})") from None
    request = weights_request(meta["weights"], weights)
    expected = meta["weights"]["sha256"]

    def load_backbone(strides: Sequence[int]):
        ext, source = load_extractor(meta["backbone"], strides, device=device, **request)
        if source.sha256 != expected:
            raise WeightsError(
                f"the backbone weights found ({source.path or source.kind}, sha256 {source.sha256[:12]}...) are not "
                f"the ones this model was trained with (sha256 {expected[:12]}...): pass the original file with --weights")
        return ext

    try:
        with _faiss_limits(sum(len(b) for b in blobs.values())):
            model = method.model_class.from_state(meta["state"], arrays, blobs, preprocess, load_backbone)
    except WeightsError:
        raise
    except (InspectorError, KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError,
            OverflowError, MemoryError) as exc:
        # faiss's RuntimeError for a damaged index, numpy's ValueError for a misshapen array, ...
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        if "faiss::" in detail:    # "Error in <C++ signature> at <file>: Error: '<condition>' failed..."
            failed = re.search(r"Error: '(.*?)' failed", detail) or re.search(r"\.(?:cpp|h):\d+: (?:Error: )?(.+)$", detail)
            raise ModelFileError(f"{path}: the model's search index is damaged or crafted (faiss refused it: "
                                 f"{(failed.group(1) if failed else detail)[:160]})") from None
        raise ModelFileError(f"{path}: the model's contents are inconsistent ({detail[:200]})") from None
    state = meta.pop("state")
    meta.pop("entries")
    for t in meta["thresholds"].values():
        if t.get("value") is None:
            t["value"] = math.inf          # not set: what the model object holds
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

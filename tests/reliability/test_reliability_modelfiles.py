"""Reliability corpus, model files (issue 14): every crafted or damaged model file is refused with
one clear line, before it can run code or allocate more than a bounded amount; saving survives a
full disk, a read-only folder, SIGTERM and SIGKILL without leaving anything half-written.

Every case is generated here from a real model trained on generated textures: the metadata or a
member is changed the way an attacker or a damaged disk would, and the member hashes and the
metadata checksum are recomputed (an attacker can), so that each case reaches the check it is
about.  The large cases are small files: a 4 GB zip member is 4 MB of deflate data, an 8 GB faiss
vector is a size field.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import pickle
import re
import signal
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
import pytest

from helpers import assert_same_predictions, texture, write_rgb
from inspector.cli import main
from inspector.core.errors import ModelFileError, StorageError
from inspector.core.images import list_images
from inspector.core.modelfile import (FORMAT_VERSION, META_NAME, META_SHA_NAME, check_writable, load_model,
                                      read_metadata, remove_stale_temporaries, save_model)
from inspector.core.pipeline.training import TrainSettings, train_model

FAST = dict(backbone="resnet18", random_weights=True, resize=64, options={"coreset_ratio": 0.5})
FAST_ARGS = ["--backbone", "resnet18", "--random-weights", "--resize", "64", "--coreset", "0.5", "-q"]
ROOT = Path(__file__).resolve().parents[2]


# -- writing crafted zips ---------------------------------------------------------------------------

def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Raw:
    """A member written as given: ``data`` is what lies in the archive (compressed for method 8),
    ``size`` and ``crc`` what the headers claim."""

    def __init__(self, data: bytes, size: int, crc: int, method: int = zipfile.ZIP_DEFLATED):
        self.data, self.size, self.crc, self.method = data, size, crc, method


def write_zip(path: Path, members: Dict[str, object]) -> Path:
    """A zip archive of ``members`` (bytes are stored as is; :class:`Raw` ones as crafted)."""
    out, central = io.BytesIO(), []
    for name, m in members.items():
        raw = m if isinstance(m, Raw) else Raw(m, len(m), zlib.crc32(m), zipfile.ZIP_STORED)
        fname, offset = name.encode(), out.tell()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, raw.method, 0, 0x21, raw.crc,
                              len(raw.data), raw.size, len(fname), 0) + fname + raw.data)
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, raw.method, 0, 0x21, raw.crc,
                                   len(raw.data), raw.size, len(fname), 0, 0, 0, 0, 0, offset) + fname)
    start = out.tell()
    for c in central:
        out.write(c)
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), out.tell() - start, start, 0))
    path.write_bytes(out.getvalue())
    return path


def deflate_bomb(prefix: bytes, filler: bytes, total: int, suffix: bytes, real_crc: bool = False) -> Raw:
    """A deflate member that expands to ``total`` bytes: ``prefix``, then ``filler`` repeated, then
    ``suffix``, in a few MB (each 1 MiB of filler compresses, after a full flush, to the same block)."""
    chunk = filler * ((1 << 20) // len(filler))
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    n = (total - len(prefix) - len(suffix)) // len(chunk)
    tail = c.compress(suffix) + c.flush()
    crc = 0
    if real_crc:
        crc = zlib.crc32(prefix)
        for _ in range(n):
            crc = zlib.crc32(chunk, crc)
        crc = zlib.crc32(suffix, crc)
    return Raw(head + block * n + tail, len(prefix) + n * len(chunk) + len(suffix), crc)


def members_of(path: Path) -> Dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def rewrite(src: Path, dst: Path, meta: Optional[Callable] = None, members: Optional[Callable] = None,
            text: Optional[Callable] = None, rehash: bool = True, checksum: bool = True) -> Path:
    """``src`` with its metadata dict changed by ``meta``, its members by ``members``, the metadata's
    text by ``text``; member hashes and the metadata checksum recomputed unless told not to."""
    parts = members_of(src)
    m = json.loads(parts.pop(META_NAME))
    old_sum = parts.pop(META_SHA_NAME, None)
    if members:
        members(parts)
    if meta:
        m = meta(m) or m
    if rehash and isinstance(m, dict) and isinstance(m.get("entries"), dict):
        m["entries"] = {n: (_sha(parts[n]) if n in parts else h) for n, h in m["entries"].items()}
    body = json.dumps(m, indent=2, sort_keys=True).encode()
    if text:
        body = text(body)
    out: Dict[str, object] = {META_NAME: body}
    version = m.get("format_version") if isinstance(m, dict) else None
    if old_sum is not None or (isinstance(version, int) and version >= 2):
        out[META_SHA_NAME] = _sha(body).encode() if checksum else old_sum
    out.update(parts)
    return write_zip(dst, out)


def as_format_1(src: Path, dst: Path) -> Path:
    """What the previous writer (format 1) made of the same model: no metadata checksum, an
    unset threshold written as Infinity."""
    def old(m):
        m["format_version"] = 1
        for t in m["thresholds"].values():
            if t["value"] is None:
                t["value"] = float("inf")
    parts = members_of(src)
    m = json.loads(parts.pop(META_NAME))
    parts.pop(META_SHA_NAME)
    old(m)
    return write_zip(dst, {META_NAME: json.dumps(m, indent=2, sort_keys=True).encode(), **parts})


def npy(header: dict, payload: bytes = b"") -> bytes:
    h = repr(header).encode()
    h += b" " * (63 - (10 + len(h)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + payload


def faiss_flat_claiming(n_floats: int) -> bytes:
    """A faiss IndexFlatL2 whose vector of codes claims ``n_floats`` floats and holds 10."""
    import faiss
    index = faiss.IndexFlatL2(4)
    index.add(np.zeros((10, 4), np.float32))
    data = faiss.serialize_index(index).tobytes()
    at = data.index(struct.pack("<Q", 40))
    return data[:at] + struct.pack("<Q", n_floats) + data[at + 8:]


class Payload:
    """Unpickling this runs a command: it must never happen."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def pickled_array(marker: Path) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    return buf.getvalue()


def _set(*keys, value):
    def change(m):
        d = m
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return change


def _drop(*keys):
    def change(m):
        d = m
        for k in keys[:-1]:
            d = d[k]
        del d[keys[-1]]
    return change


def _with_member(name: str, data):
    def change(parts):
        parts[name] = data
    return change


def _resize_literal(literal: bytes):
    return lambda body: re.sub(rb'"resize": \d+', b'"resize": ' + literal, body)


# -- the cases ----------------------------------------------------------------------------------

def build_case(case: str, good: Path, folder: Path, faithful: bool = False) -> Path:
    """The crafted file for ``case``, derived from the model file ``good``.  ``faithful``: the zip
    bombs get their true CRC and member hash (seconds of hashing), so that a loader that reads
    them whole goes as far as it can (for measuring a loader, not needed to test a refusal)."""
    dst = folder / f"{case}.inspector"
    index = members_of(good)["blobs/index.bin"]
    simple_meta = {
        "entries_as_list": _set("entries", value=["blobs/index.bin"]),
        "entry_name_without_slash": lambda m: m["entries"].update({"indexbin": _sha(b"")}),
        "weights_as_string": _set("weights", value="resnet18"),
        "weights_sha256_missing": _drop("weights", "sha256"),
        "weights_sha256_not_hex": _set("weights", "sha256", value="z" * 64),
        "thresholds_empty": _set("thresholds", value={}),
        "threshold_value_empty_string": _set("thresholds", "image", "value", value=""),
        "threshold_value_not_numeric": _set("thresholds", "image", "value", value="high"),
        "threshold_method_unknown": _set("thresholds", "image", "method", value="guess"),
        "resize_30000": _set("preprocess", "resize", value=30000),
        "resize_negative": _set("preprocess", "resize", value=-64),
        "crop_larger_than_resize": _set("preprocess", "crop", value=128),
        "nprobe_10e18_in_index": _set("state", "index_params", "nprobe", value=10 ** 18),
        "nprobe_2e40_in_options": _set("state", "options", "nprobe", value=2 ** 40),
        "negative_d": _set("state", "options", "d", value=-1),
        "strides_unknown": _set("state", "options", "strides", value=[3]),
        "unknown_method": _set("method", value="magic"),
        "unknown_option": lambda m: m["state"]["options"].update({"surprise": 1}),
        "option_as_object": lambda m: m["state"]["options"].update({"blur_sigma": {"a": 1}}),
        "state_as_list": _set("state", value=[]),
        "newer_format_version": _set("format_version", value=FORMAT_VERSION + 97),
        "format_version_as_string": _set("format_version", value="2"),
        "metadata_a_list": lambda m: [m],
    }
    if case in simple_meta:
        return rewrite(good, dst, meta=simple_meta[case])
    if case == "not_a_zip":
        dst.write_bytes(b"hello, I am not a model")
    elif case == "empty_file":
        dst.write_bytes(b"")
    elif case == "truncated_zip":
        dst.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif case == "zip_without_metadata":
        write_zip(dst, {"readme.txt": b"x"})
    elif case == "metadata_not_json":
        rewrite(good, dst, text=lambda b: b[:-40])
    elif case == "metadata_edited_without_its_checksum":
        rewrite(good, dst, meta=_set("thresholds", "image", "value", value=99.0), checksum=False)
    elif case == "metadata_checksum_removed":
        parts = members_of(good)
        parts.pop(META_SHA_NAME, None)
        write_zip(dst, parts)
    elif case == "member_bytes_changed":
        rewrite(good, dst, members=_with_member("blobs/index.bin", index[:-64] + bytes(64)), rehash=False)
    elif case == "entry_listed_but_missing":
        rewrite(good, dst, meta=lambda m: m["entries"].update({"blobs/ghost.bin": _sha(b"")}))
    elif case == "threshold_value_nan":
        rewrite(good, dst, text=lambda b: re.sub(rb'"value": [-0-9.e]+', b'"value": NaN', b, count=1))
    elif case == "threshold_value_infinity":      # format 1's "not set"; format 2 writes null
        rewrite(good, dst, text=lambda b: re.sub(rb'"value": [-0-9.e]+', b'"value": Infinity', b, count=1))
    elif case == "deeply_nested_json":
        rewrite(good, dst, text=lambda b: b[:-1].rstrip() + b', "deep": ' + b"[" * 100000 + b"]" * 100000 + b"}")
    elif case == "resize_infinity":
        rewrite(good, dst, text=_resize_literal(b"Infinity"))
    elif case == "resize_1e400":
        rewrite(good, dst, text=_resize_literal(b"1e400"))
    elif case == "resize_10_pow_400":
        rewrite(good, dst, text=_resize_literal(b"1" + b"0" * 400))
    elif case == "garbage_faiss_index":
        junk = np.random.default_rng(0).integers(0, 256, len(index), dtype=np.uint8).tobytes()
        rewrite(good, dst, members=_with_member("blobs/index.bin", junk))
    elif case == "faiss_vector_claims_8_GB":
        rewrite(good, dst, members=_with_member("blobs/index.bin", faiss_flat_claiming(1 << 31)))
    elif case == "pickle_payload_in_array":
        data = pickled_array(folder / "PICKLE_RAN")
        rewrite(good, dst, members=_with_member("arrays/bank.npy", data),
                meta=lambda m: m["entries"].update({"arrays/bank.npy": ""}))
    elif case == "npy_header_claims_4_PB":
        data = npy({"descr": "<f4", "fortran_order": False, "shape": (1 << 40, 1024)}, bytes(64))
        rewrite(good, dst, members=_with_member("arrays/bank.npy", data),
                meta=lambda m: m["entries"].update({"arrays/bank.npy": ""}))
    elif case == "npy_truncated":
        data = npy({"descr": "<f4", "fortran_order": False, "shape": (384, 384)}, bytes(1000))
        rewrite(good, dst, members=_with_member("arrays/bank.npy", data),
                meta=lambda m: m["entries"].update({"arrays/bank.npy": ""}))
    elif case == "zip_member_expands_to_4_GB":
        parts = members_of(good)
        bomb = deflate_bomb(b"", b"\0", 4_000_000_000, b"", real_crc=faithful)
        if faithful:
            h, zeros = hashlib.sha256(), bytes(1 << 20)
            for _ in range(bomb.size >> 20):
                h.update(zeros)
            m = json.loads(parts.pop(META_NAME))
            m["entries"]["blobs/index.bin"] = h.hexdigest()
            parts[META_NAME] = json.dumps(m, indent=2, sort_keys=True).encode()
            if META_SHA_NAME in parts:
                parts[META_SHA_NAME] = _sha(parts[META_NAME]).encode()
        parts["blobs/index.bin"] = bomb
        write_zip(dst, parts)
    elif case == "metadata_expands_to_2_GB":
        body = members_of(good)[META_NAME]
        parts = members_of(good)
        parts[META_NAME] = deflate_bomb(body[:1], b" ", 2_000_000_000, body[1:], real_crc=faithful)
        parts.pop(META_SHA_NAME, None)
        write_zip(dst, parts)
    elif case == "metadata_9_MiB":
        rewrite(good, dst, text=lambda b: b[:1] + b" " * (9 << 20) + b[1:])
    elif case == "stored_member_size_lies":
        parts = members_of(good)
        parts["blobs/index.bin"] = Raw(index, 4_000_000_000, zlib.crc32(index), zipfile.ZIP_STORED)
        write_zip(dst, parts)
    else:
        raise KeyError(case)
    return dst


# id -> words the error must contain
CASES = {
    "not_a_zip": "not an Inspector model file",
    "empty_file": "not an Inspector model file",
    "truncated_zip": "not an Inspector model file|damaged",
    "zip_without_metadata": "no inspector.json inside",
    "metadata_not_json": "metadata is damaged",
    "metadata_a_list": "not an Inspector model file",
    "newer_format_version": "newer Inspector",
    "format_version_as_string": "format version",
    "metadata_edited_without_its_checksum": "does not match its checksum",
    "metadata_checksum_removed": "checksum of its metadata is missing",
    "member_bytes_changed": "does not match its checksum",
    "entries_as_list": "entries: .* is not of type 'object'",
    "entry_name_without_slash": "entries: 'indexbin' does not match",
    "entry_listed_but_missing": "'blobs/ghost.bin' is missing",
    "weights_as_string": "weights: 'resnet18' is not of type 'object'",
    "weights_sha256_missing": "weights: 'sha256' is a required property",
    "weights_sha256_not_hex": "weights/sha256: 'zzz",
    "thresholds_empty": "thresholds: 'image' is a required property",
    "threshold_value_empty_string": "thresholds/image/value: '' is not of type",
    "threshold_value_not_numeric": "thresholds/image/value: 'high' is not of type",
    "threshold_value_nan": "NaN is not a number",
    "threshold_value_infinity": "thresholds/image/value: inf is not of type 'number', 'null'",
    "threshold_method_unknown": "thresholds/image/method",
    "deeply_nested_json": "nests deeper than 64 levels",
    "resize_infinity": "preprocess/resize: inf is not of type 'integer'",
    "resize_1e400": "number out of range",
    "resize_10_pow_400": "more than 30 digits",
    "resize_30000": "preprocess/resize: 30000 is greater than the maximum of 4096",
    "resize_negative": "preprocess/resize: -64 is less than the minimum of 32",
    "crop_larger_than_resize": "crop must be between 32 and the resize",
    "nprobe_10e18_in_index": "state/index_params/nprobe: 1000000000000000000 is greater than the maximum",
    "nprobe_2e40_in_options": "state/options/nprobe",
    "negative_d": "state/options/d: -1 is less than the minimum of 1",
    "strides_unknown": "state/options/strides/0",
    "unknown_method": "unsupported model",
    "unknown_option": "unknown PatchCore option",
    "option_as_object": "state/options/blur_sigma",
    "state_as_list": "state: \\[\\] is not of type 'object'",
    "garbage_faiss_index": "search index is damaged or crafted|contents are inconsistent",
    "faiss_vector_claims_8_GB": "search index is damaged or crafted .*deserialization_vector_byte_limit",
    "pickle_payload_in_array": "holds Python objects",
    "npy_header_claims_4_PB": "not the size its header says",
    "npy_truncated": "not the size its header says",
    "zip_member_expands_to_4_GB": "would (expand|take)",
    "metadata_expands_to_2_GB": "would (expand|take)",
    "metadata_9_MiB": "over the limit of 8 MiB",
    "stored_member_size_lies": "inconsistent sizes|would take",
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A real model file (PatchCore, 11 textures, one held out) in its own folder."""
    folder = tmp_path_factory.mktemp("models")
    good = tmp_path_factory.mktemp("good")
    for i in range(12):
        write_rgb(good / f"{i:03d}.png", texture(i))
    result = train_model(list_images(good), TrainSettings(**FAST, holdout=1))
    return save_model(result.model, folder / "good.inspector")


@pytest.mark.parametrize("case", list(CASES))
def test_crafted_model_file_is_one_clear_line(saved, tmp_path, case):
    before = saved.read_bytes()
    crafted = build_case(case, saved, tmp_path)
    with pytest.raises(ModelFileError) as exc:
        load_model(crafted)
    message = str(exc.value)
    assert "\n" not in message and len(message) < 400, message
    assert re.search(CASES[case], message), message
    assert str(crafted) in message or "model file not found" in message
    assert not (tmp_path / "PICKLE_RAN").exists()            # no payload ever runs
    assert saved.read_bytes() == before                     # nothing previously saved changed


@pytest.mark.parametrize("case", ["zip_member_expands_to_4_GB", "garbage_faiss_index", "resize_30000",
                                  "deeply_nested_json", "pickle_payload_in_array"])
def test_predict_with_a_crafted_model_says_one_line_and_exits_2(saved, tmp_path, capsys, case):
    crafted = build_case(case, saved, tmp_path)
    image = write_rgb(tmp_path / "part.png", texture(3))
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.csv").write_text("earlier results\n")
    assert main(["predict", str(crafted), str(image), "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("inspector: error: ") and "Traceback" not in err
    assert re.search(CASES[case], err)
    assert (out / "results.csv").read_text() == "earlier results\n"
    assert not (tmp_path / "PICKLE_RAN").exists()


def test_a_4_GB_bomb_is_refused_in_a_fresh_process_too(saved, tmp_path):
    crafted = build_case("zip_member_expands_to_4_GB", saved, tmp_path)
    image = write_rgb(tmp_path / "part.png", texture(3))
    r = subprocess.run([sys.executable, "-m", "inspector", "predict", str(crafted), str(image), "-o",
                        str(tmp_path / "out"), "-q"], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("inspector: error: ") and r.stderr.count("\n") == 1


# -- what must keep loading -----------------------------------------------------------------------

def test_a_file_written_before_the_checksum_still_loads(saved, tmp_path):
    old = as_format_1(saved, tmp_path / "old.inspector")
    assert META_SHA_NAME not in members_of(old) and json.loads(members_of(old)[META_NAME])["format_version"] == 1
    assert_same_predictions(load_model(saved), load_model(old))


def test_an_unset_threshold_is_null_now_and_was_infinity_before(good_dir, tmp_path):
    few = list_images(good_dir)[:4]                 # too few images to set thresholds from
    model = train_model(few, TrainSettings(**FAST)).model
    path = save_model(model, tmp_path / "few.inspector")
    assert json.loads(members_of(path)[META_NAME])["thresholds"]["image"]["value"] is None
    old = as_format_1(path, tmp_path / "few-v1.inspector")
    assert b'"value": Infinity' in members_of(old)[META_NAME]
    for p in (path, old):
        loaded = load_model(p)
        assert loaded.image_threshold.value == float("inf") and loaded.meta["thresholds"]["image"]["value"] == float("inf")


def test_lineage_alignment_and_new_options_are_room_in_the_schema(saved, tmp_path):
    def add(m):
        m["lineage"] = {"version": 3, "parent": {"file": "m-v2.inspector", "meta_sha256": "0" * 64, "uuid": "u2"},
                        "history": [{"version": 1}, {"version": 2}]}
        m["alignment"] = {"kind": "none"}
        m["state"]["options"]["index"] = "ivf-refine"
        m["state"]["index_params"]["future_knob"] = 0.5
    loaded = load_model(rewrite(saved, tmp_path / "more.inspector", meta=add))
    assert loaded.meta["lineage"]["version"] == 3
    bad = rewrite(saved, tmp_path / "bad.inspector", meta=_set("lineage", value={"version": 0}))
    with pytest.raises(ModelFileError, match="lineage/version: 0 is less than the minimum of 1"):
        load_model(bad)


@pytest.mark.parametrize("kind", ["exact", "ivf", "ivf-refine", "hnsw"])
def test_every_index_kind_loads_within_the_faiss_limits(kind):
    from inspector.core.modelfile import _faiss_limits
    from inspector.core.search import build_index, load_index
    bank = np.random.default_rng(0).normal(size=(2000, 32)).astype(np.float32)
    index = build_index(kind, bank)
    blob = index.to_bytes()
    with _faiss_limits(len(blob)):
        loaded = load_index(kind, blob, index.params)
    q = bank[:5] + 0.01
    np.testing.assert_array_equal(loaded.search(q)[1], index.search(q)[1])


# -- saving: full disk, read-only folder, signals, umask ---------------------------------------------

class _FullDisk:
    """A file whose writes fail with ENOSPC after ``room`` bytes, as a full disk's do."""

    def __init__(self, f, room: int):
        self._f, self._room = f, room

    def write(self, data):
        self._room -= len(data)
        if self._room < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def _disk_fills_after(monkeypatch, room: int):
    real = os.fdopen
    monkeypatch.setattr("inspector.core.modelfile.os.fdopen", lambda fd, mode: _FullDisk(real(fd, mode), room))


def _folder_listing(folder: Path):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("room", [0, 1000, 200_000])
def test_a_full_disk_while_saving_keeps_the_previous_model(saved, tmp_path, monkeypatch, room):
    model = load_model(saved)
    target = tmp_path / "m.inspector"
    previous = save_model(model, target).read_bytes()
    _disk_fills_after(monkeypatch, room)
    with pytest.raises(StorageError, match="No space left on device; nothing was written"):
        save_model(model, target)
    assert target.read_bytes() == previous and _folder_listing(tmp_path) == ["m.inspector"]


def test_train_on_a_full_disk_is_one_line_and_exit_2(good_dir, tmp_path, monkeypatch, capsys):
    target = tmp_path / "models" / "m.inspector"
    target.parent.mkdir()
    target.write_bytes(b"the previous model")
    _disk_fills_after(monkeypatch, 5000)
    assert main(["train", str(good_dir), "-o", str(target), *FAST_ARGS]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "Traceback" not in err
    assert target.read_bytes() == b"the previous model" and _folder_listing(target.parent) == ["m.inspector"]


def test_train_into_a_read_only_folder_fails_before_training(good_dir, tmp_path, monkeypatch, capsys):
    def read_only(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr("inspector.core.modelfile.tempfile.mkstemp", read_only)
    monkeypatch.setattr("inspector.core.pipeline.training.train_model",
                        lambda *a, **k: pytest.fail("trained although the model could not be written"))
    assert main(["train", str(good_dir), "-o", str(tmp_path / "ro" / "m.inspector"), *FAST_ARGS]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Read-only file system" in err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="permissions do not bind root")
def test_a_folder_without_write_permission_is_a_storage_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(StorageError, match="Permission denied"):
            check_writable(ro / "m.inspector")
    finally:
        ro.chmod(0o755)


_SIGNAL_DURING_SAVE = """
import os, signal, sys, zipfile
from inspector.cli import main
real = zipfile.ZipFile.writestr
def writestr(self, name, data, *a, **k):
    real(self, name, data, *a, **k)
    if name.startswith("blobs/"):
        os.kill(os.getpid(), getattr(signal, sys.argv[1]))
zipfile.ZipFile.writestr = writestr
sys.exit(main(sys.argv[2:]))
"""


def _train_signalled(sig: str, good_dir: Path, target: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _SIGNAL_DURING_SAVE, sig, "train", str(good_dir), "-o", str(target),
                           *FAST_ARGS], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_sigterm_during_save_cancels_like_ctrl_c(good_dir, tmp_path):
    target = tmp_path / "models" / "m.inspector"
    target.parent.mkdir()
    target.write_bytes(b"the previous model")
    r = _train_signalled("SIGTERM", good_dir, target)
    assert r.returncode == 130 and r.stderr.strip().endswith("inspector: cancelled"), r.stderr
    assert "Traceback" not in r.stderr
    assert target.read_bytes() == b"the previous model" and _folder_listing(target.parent) == ["m.inspector"]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_a_temporary_left_by_sigkill_is_removed_by_the_next_save(saved, good_dir, tmp_path):
    target = tmp_path / "models" / "m.inspector"
    target.parent.mkdir()
    r = _train_signalled("SIGKILL", good_dir, target)
    assert r.returncode == -signal.SIGKILL
    left = _folder_listing(target.parent)
    assert len(left) == 1 and left[0].startswith(".m.inspector.") and left[0].endswith(".tmp")
    save_model(load_model(saved), target)
    assert _folder_listing(target.parent) == ["m.inspector"]


def test_only_dead_writers_temporaries_are_removed(tmp_path):
    from inspector.core.modelfile import _owner_tag
    host = _owner_tag().rsplit("-", 1)[0]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    names = {f".m.inspector.abcd1234.{host}-{dead}.tmp": False,            # dead writer: removed
             f".m.inspector.abcd1234.{host}-{os.getpid()}.tmp": True,      # alive (this process): kept
             f".m.inspector.abcd1234.otherhost-{dead}.tmp": True,          # another machine's: kept
             ".m.inspector.abcd1234.tmp": True,                            # an older Inspector's, recent: kept
             "notes.tmp": True, "m.inspector": True}
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path) == 1
    assert set(_folder_listing(tmp_path)) == {n for n, kept in names.items() if kept}
    old = tmp_path / ".m.inspector.abcd1234.tmp"
    os.utime(old, (0, 0))
    assert remove_stale_temporaries(tmp_path) == 1 and not old.exists()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_model_files_respect_the_umask(saved, tmp_path, umask, mode):
    model = load_model(saved)
    previous = os.umask(umask)
    try:
        path = save_model(model, tmp_path / "m.inspector")
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == mode


def test_a_model_this_machine_cannot_score_is_refused_before_it_is_built(saved, tmp_path, monkeypatch):
    # 4096 px frames through resnet18's strides 8 and 16 take about 0.9 GiB an image: on a 1 GiB machine
    # the file is refused from its metadata, before the backbone or the index is built
    big = rewrite(saved, tmp_path / "big.inspector", meta=_set("preprocess", "resize", value=4096))
    monkeypatch.setattr("inspector.core.modelfile.physical_memory", lambda: 1 << 30)
    monkeypatch.setattr("inspector.core.modelfile.load_extractor",
                        lambda *a, **k: pytest.fail("built a backbone for a model it cannot run"))
    with pytest.raises(ModelFileError, match=r"scoring one image with this model would take about 0\.9 GiB"):
        load_model(big)


def test_the_members_limit_is_a_setting(saved, monkeypatch):
    monkeypatch.setenv("INSPECTOR_MAX_MODEL_BYTES", "100000")           # the index alone is 1.4 MB
    with pytest.raises(ModelFileError, match=r"'blobs/index.bin' would take 1 MiB, over the limit of 0 MiB "
                                             r"\(set INSPECTOR_MAX_MODEL_BYTES to allow more\)"):
        load_model(saved)

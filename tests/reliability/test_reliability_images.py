"""Reliability corpus, images (issue 14): every damaged, crafted or oversized image file is one
clear per-file reason; training goes on without it and learns every good image; a batch of
predictions scores every good image.  Every file is generated here, small (a 60000x60000 image is
its header alone)."""

from __future__ import annotations

import csv
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers import texture, write_rgb
from inspector.cli import main
from inspector.core.errors import ImageReadError
from inspector.core.images import list_images, read_image, read_images

FAST = ["--backbone", "resnet18", "--random-weights", "--resize", "64", "--coreset", "0.5", "-q"]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int) -> bytes:
    """A PNG that is a header and nothing else (69 bytes)."""
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(b"\0" * 8)) + _png_chunk(b"IEND", b""))


def bmp_header(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + 64, 0, 0, 54) + info + bytes(64)


def jpeg_header(width: int, height: int) -> bytes:
    """SOI and a baseline frame header claiming ``width`` x ``height``, then no image data."""
    sof = struct.pack(">BBHBHHB", 0xFF, 0xC0, 17, 8, height, width, 3)
    sof += b"".join(struct.pack(">BBB", i, 0x11, 0) for i in (1, 2, 3))
    return b"\xff\xd8" + sof + b"\xff\xd9"


def _encoded(ext: str, seed: int = 7, size: int = 96) -> bytes:
    ok, buf = cv2.imencode(ext, cv2.resize(texture(seed, 64), (size, size)))
    assert ok
    return buf.tobytes()


def _spliced(data: bytes, at: float, junk: bytes) -> bytes:
    i = int(len(data) * at)
    return data[:i] + junk + data[i + len(junk):]


def _png_with_bad_crc() -> bytes:
    data = bytearray(_encoded(".png"))
    i = data.index(b"IDAT") + 40
    data[i] ^= 0xFF                                  # one flipped byte: the chunk's CRC no longer holds
    return bytes(data)


# id -> (file name, bytes, words the reason must contain)
CASES = {
    "png_header_60000x60000": ("huge.png", lambda: png_header(60000, 60000), "too large: 60000x60000"),
    "bmp_header_60000x60000": ("huge.bmp", lambda: bmp_header(60000, 60000), "too large: 60000x60000"),
    "jpeg_header_60000x60000": ("huge.jpg", lambda: jpeg_header(60000, 60000), "damaged|not a readable"),
    "jpeg_header_65500x65500": ("huger.jpg", lambda: jpeg_header(65500, 65500), "damaged|not a readable"),
    "jpeg_truncated": ("truncated.jpg", lambda: _encoded(".jpg")[:-900], "damaged JPEG data"),
    "jpeg_without_end_marker": ("no_eoi.jpg", lambda: _encoded(".jpg")[:-2], "damaged JPEG data"),
    "jpeg_corrupt_data_zeros": ("zeros.jpg", lambda: _spliced(_encoded(".jpg"), 0.5, bytes(800)), "Corrupt JPEG data"),
    "jpeg_corrupt_data_noise": ("noise.jpg", lambda: _spliced(
        _encoded(".jpg"), 0.5, np.random.default_rng(0).integers(0, 256, 40, dtype=np.uint8).tobytes()),
        "Corrupt JPEG data"),
    "jpeg_stray_marker": ("marker.jpg", lambda: _spliced(_encoded(".jpg"), 0.5, b"\xff\xd0"), "Corrupt JPEG data"),
    "png_truncated": ("truncated.png", lambda: _encoded(".png")[: len(_encoded(".png")) // 2], "not a readable"),
    "png_bad_crc": ("crc.png", _png_with_bad_crc, "not a readable"),
    "png_without_iend": ("no_iend.png", lambda: _encoded(".png")[:-12], "not a readable"),
    "tiff_garbage": ("garbage.tif", lambda: b"II*\x00" + bytes(range(256)) * 4, "not a readable"),
    "not_an_image": ("notes.png", lambda: b"these are not pixels\n" * 10, "not a readable"),
    "empty_file": ("empty.jpg", lambda: b"", "file is empty"),
    "too_small": ("tiny.png", lambda: cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes(), "too small"),
}


def _write_case(folder: Path, case: str) -> Path:
    name, make, _ = CASES[case]
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(make())
    return path


@pytest.mark.parametrize("case", list(CASES))
def test_each_bad_image_is_one_clear_reason(tmp_path, case):
    path = _write_case(tmp_path, case)
    with pytest.raises(ImageReadError) as exc:
        read_image(path)
    reason = exc.value.reason
    assert "\n" not in reason and len(reason) < 300
    assert __import__("re").search(CASES[case][2], reason), reason
    assert str(path) in str(exc.value)


def test_a_folder_named_like_an_image_and_a_missing_file(tmp_path):
    (tmp_path / "x.png").mkdir()
    with pytest.raises(ImageReadError, match="is a folder"):
        read_image(tmp_path / "x.png")
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(tmp_path / "gone.png")


@pytest.fixture
def mixed_folder(tmp_path) -> Path:
    """12 good textures and every bad case, interleaved by name."""
    folder = tmp_path / "mixed"
    for i in range(12):
        write_rgb(folder / f"{i:03d}.png", texture(i))
    for case in CASES:
        _write_case(folder, case)
    return folder


def test_reading_a_batch_skips_every_bad_file_and_keeps_every_good_one(mixed_folder):
    images, ok, skipped = read_images(list_images(mixed_folder))
    assert sorted(p.name for p in ok) == [f"{i:03d}.png" for i in range(12)]
    assert sorted(p.name for p, _ in skipped) == sorted(n for n, _, _ in CASES.values())


def test_training_skips_bad_files_and_learns_every_good_one(mixed_folder, tmp_path, capsys):
    out = tmp_path / "m.inspector"
    assert main(["train", str(mixed_folder), "-o", str(out), *FAST]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert f"skipped {len(CASES)} unreadable file(s)" in captured.err
    assert "trained patchcore on 12 images" in captured.out
    from inspector.core.modelfile import read_metadata
    assert read_metadata(out)["training"]["n_images"] == 12


def test_predict_scores_every_good_image_past_the_bad_ones(mixed_folder, tmp_path, capsys):
    model = tmp_path / "m.inspector"
    good = tmp_path / "good"
    for i in range(12):
        write_rgb(good / f"{i:03d}.png", texture(i))
    assert main(["train", str(good), "-o", str(model), *FAST]) == 0
    saved = model.read_bytes()
    capsys.readouterr()
    assert main(["predict", str(model), str(mixed_folder), "-o", str(tmp_path / "out"), "-q"]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    with open(tmp_path / "out" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    scored = {Path(r["path"]).name for r in rows if r.get("score")}
    assert scored == {f"{i:03d}.png" for i in range(12)}
    assert model.read_bytes() == saved                  # nothing previously saved changed

"""Read any image file into RGB uint8, with a clear per-file error."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, List, Sequence, Tuple

import cv2
import numpy as np

from .errors import DatasetError, ImageReadError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return (arr.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    if arr.dtype in (np.float32, np.float64):
        finite = np.nan_to_num(arr.astype(np.float64))
        lo, hi = float(finite.min()), float(finite.max())
        if lo >= 0.0 and hi <= 1.0:
            return np.clip(finite * 255.0 + 0.5, 0, 255).astype(np.uint8)
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        return np.clip((finite - lo) * scale + 0.5, 0, 255).astype(np.uint8)
    info = np.iinfo(arr.dtype)
    return np.clip((arr.astype(np.float64) - info.min) * 255.0 / (info.max - info.min), 0, 255).astype(np.uint8)


def read_image(path) -> np.ndarray:
    """Read ``path`` as an H×W×3 RGB uint8 array.

    PNG, JPEG, BMP and TIFF; 8- or 16-bit; grey, RGB or RGBA (alpha is dropped).
    Raises :class:`ImageReadError` with a reason when the file cannot be used.
    """
    p = Path(path)
    if not p.exists():
        raise ImageReadError(p, "file not found")
    if p.is_dir():
        raise ImageReadError(p, "is a folder, not an image")
    try:
        data = np.fromfile(str(p), dtype=np.uint8)  # handles non-ASCII paths, unlike cv2.imread
    except OSError as exc:
        raise ImageReadError(p, f"cannot be opened ({exc.strerror or exc})") from None
    if data.size == 0:
        raise ImageReadError(p, "file is empty")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageReadError(p, "not a readable image (damaged or unsupported format)")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    img = _to_uint8(img)
    if img.ndim == 2:
        rgb = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 3:
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.shape[2] == 4:
        rgb = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    else:
        raise ImageReadError(p, f"unsupported number of channels ({img.shape[2]})")
    if rgb.shape[0] < 8 or rgb.shape[1] < 8:
        raise ImageReadError(p, f"image is too small ({rgb.shape[1]}x{rgb.shape[0]} pixels)")
    return np.ascontiguousarray(rgb)


def read_mask(path, shape: Tuple[int, int] | None = None) -> np.ndarray:
    """Read a ground-truth mask as a bool H×W array (any non-zero pixel is a defect)."""
    p = Path(path)
    data = np.fromfile(str(p), dtype=np.uint8) if p.is_file() else np.zeros(0, np.uint8)
    m = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if m is None:
        raise ImageReadError(p, "mask is missing or not a readable image")
    if shape is not None and m.shape != tuple(shape):
        m = cv2.resize(m, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return m > 0


def list_images(folder, recursive: bool = False) -> List[Path]:
    """The image files in ``folder`` (sorted). Raises :class:`DatasetError` if it is not a folder."""
    f = Path(folder)
    if not f.exists():
        raise DatasetError(f"folder not found: {f}")
    if not f.is_dir():
        raise DatasetError(f"not a folder: {f}")
    it = f.rglob("*") if recursive else f.iterdir()
    return sorted(p for p in it if is_image_file(p))


def read_images(paths: Iterable, on_skip=None) -> Tuple[List[np.ndarray], List[Path], List[Tuple[Path, str]]]:
    """Read many files; unreadable ones are skipped and reported, the rest go on.

    Returns ``(images, read_paths, skipped)`` where ``skipped`` holds ``(path, reason)``.
    """
    images, ok, skipped = [], [], []
    for path in paths:
        try:
            images.append(read_image(path))
            ok.append(Path(path))
        except ImageReadError as exc:
            skipped.append((Path(path), exc.reason))
            if on_skip is not None:
                on_skip(Path(path), exc.reason)
    return images, ok, skipped


def resize_longest(rgb: np.ndarray, side: int) -> np.ndarray:
    """``rgb`` scaled so that its longer side is ``side`` pixels (area filter: a picture to look at)."""
    h, w = rgb.shape[:2]
    s = side / max(h, w)
    return cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def decode_image(data: bytes, name) -> np.ndarray:
    """:func:`read_image` for a file's bytes that came from elsewhere (another machine, over Ray).

    The same checks and reasons, with ``name`` in the error. The bytes go through a private
    temporary file so that every check ``read_image`` makes applies unchanged.
    """
    import os
    import tempfile
    fd, tmp = tempfile.mkstemp(prefix=".inspector-", suffix=Path(str(name)).suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return read_image(tmp)
    except ImageReadError as exc:
        raise ImageReadError(Path(str(name)), exc.reason) from None
    finally:
        os.unlink(tmp)


def describe_skipped(skipped: Sequence[Tuple[Path, str]], limit: int = 5) -> str:
    """A short human summary of skipped files."""
    if not skipped:
        return ""
    lines = [f"skipped {len(skipped)} unreadable file(s):"]
    lines += [f"  {p}: {why}" for p, why in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"  ... and {len(skipped) - limit} more")
    return "\n".join(lines)

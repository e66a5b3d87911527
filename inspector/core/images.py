"""Read any image file into RGB uint8, with a clear per-file error.

Every file goes through the same steps, so that "unreadable" means the same thing in training,
inspection, the viewer and reports:

1. its header is read (Pillow, lazily: nothing is decoded) for the format, the size and the EXIF
   orientation;
2. the pixels it would decode to are checked against :func:`max_pixels` *before* decoding;
3. JPEG is decoded by libjpeg-turbo (simplejpeg) in strict mode, so that damaged data ("Corrupt
   JPEG data", a truncated file) is an error and not a silently grey image; a JPEG whose longer
   side exceeds twice :data:`REDUCED_DECODE_SIDE` is decoded at 1/2, 1/4 or 1/8 of its size (DCT
   scaling, no full-size copy is ever made), keeping its longer side at least that many pixels:
   more than any model sees (its frame is at most 4096 pixels), so nothing the pipeline uses is lost;
4. other formats are decoded by OpenCV (PNG's checksums make damaged data an error there);
5. the EXIF orientation is applied, as image viewers do.

Any exception of a decoder becomes an :class:`ImageReadError` naming the file and the reason.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import simplejpeg
from PIL import Image

from .errors import DatasetError, ImageReadError
from .limits import physical_memory

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

MAX_PIXELS_ENV = "INSPECTOR_MAX_PIXELS"
REDUCED_DECODE_SIDE = 4096       # a JPEG is decoded reduced only while its longer side stays >= this
_EXIF_ORIENTATION = 0x0112

# Pillow only reads headers here; the pixel limit is Inspector's own (max_pixels), checked from
# those headers, so Pillow's lower built-in guard must not refuse a header it is asked to read.
Image.MAX_IMAGE_PIXELS = None


# Decoding and scoring an image at its decoded size takes about 21 bytes a pixel above the model's
# own memory (predict on a 20000x20000 JPEG decoded at 5000x5000: 1.62 GB peak, 1.09 GB for a small
# image); one pixel per 64 bytes of the machine's memory leaves room for the model, the application
# and a 16-bit decode, within 64 to 1000 megapixels whatever the machine (24 GB: 395 megapixels).
DEFAULT_MAX_PIXELS = int(min(max(physical_memory() // 64, 64_000_000), 1_000_000_000))


def max_pixels() -> int:
    """The most pixels one image may decode to: ``$INSPECTOR_MAX_PIXELS`` or :data:`DEFAULT_MAX_PIXELS`."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(raw))
    except (ValueError, OverflowError):
        value = 0
    if value <= 0:
        raise ValueError(f"{MAX_PIXELS_ENV}={raw!r} is not a positive number of pixels")
    return value


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


@dataclass(frozen=True)
class _Header:
    format: str          # Pillow's name: "JPEG", "PNG", "TIFF", "BMP", ...
    width: int
    height: int
    orientation: int     # EXIF orientation, 1 (as stored) to 8; 0: not read yet (a PNG, see _read_header)


def _read_header(f: BinaryIO) -> Optional[_Header]:
    """Format, size and orientation from the header alone; None when Pillow does not know the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(f)                         # lazy: reads the header, decodes nothing
            if im.format == "PNG" and "exif" not in im.info:
                # Pillow's getexif() decodes a whole PNG to look for an eXIf chunk after the pixels;
                # _decode looks for one in the bytes it reads anyway (_png_orientation)
                orientation = 0
            else:
                orientation = _exif_orientation(im)
            return _Header(str(im.format), int(im.size[0]), int(im.size[1]), orientation)
    except Exception:
        return None


def _exif_orientation(im) -> int:
    try:
        orientation = int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:                          # a damaged EXIF block: shown as stored
        orientation = 1
    return orientation if 1 <= orientation <= 8 else 1


def _png_orientation(data: bytes) -> int:
    """The EXIF orientation of a PNG whose eXIf chunk, if any, comes after its header chunks."""
    if b"eXIf" not in data:
        return 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return _exif_orientation(Image.open(io.BytesIO(data)))
        except Exception:
            return 1


def jpeg_reduction(width: int, height: int) -> int:
    """The DCT scaling (1, 2, 4 or 8) a JPEG of this size is decoded with: the largest that keeps
    its longer side at least :data:`REDUCED_DECODE_SIDE` pixels."""
    side, factor = max(width, height), 1
    while factor < 8 and side // (factor * 2) >= REDUCED_DECODE_SIDE:
        factor *= 2
    return factor


def _decoded_size(header: _Header) -> Tuple[int, int]:
    if header.format == "JPEG":
        f = jpeg_reduction(header.width, header.height)
        return -(-header.width // f), -(-header.height // f)
    return header.width, header.height


def _check_pixels(p: Path, width: int, height: int, what: str = "") -> None:
    limit = max_pixels()
    if width * height > limit:
        raise ImageReadError(p, f"image is too large{what}: {width}x{height} pixels ({width * height / 1e6:.0f} "
                                f"megapixels) is over the limit of {limit / 1e6:.0f} megapixels "
                                f"(set {MAX_PIXELS_ENV} to change it)")


def _decode_jpeg(p: Path, data: bytes, header: _Header) -> np.ndarray:
    f = jpeg_reduction(header.width, header.height)
    size = {} if f == 1 else {"min_width": -(-header.width // f), "min_height": -(-header.height // f)}
    try:
        return simplejpeg.decode_jpeg(data, "RGB", strict=True, **size)
    except ValueError as exc:
        strict_error = str(exc).strip() or "damaged data"
    try:
        simplejpeg.decode_jpeg(data, "RGB", strict=False, **size)
    except ValueError:
        strict_error = ""                # not even a lenient decode: a kind libjpeg-turbo does not read
    if strict_error:
        raise ImageReadError(p, f"damaged JPEG data ({strict_error})")
    flags = cv2.IMREAD_UNCHANGED if f == 1 else (
        {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}[f]
        | cv2.IMREAD_IGNORE_ORIENTATION)
    return _opencv_decode(p, data, flags, rgb=True)


def _opencv_decode(p: Path, data: bytes, flags: int = cv2.IMREAD_UNCHANGED, rgb: bool = False) -> np.ndarray:
    """OpenCV's decode, with OpenCV's BGR(A) order turned to RGB(A) when ``rgb``."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if img is None:
        raise ImageReadError(p, "not a readable image (damaged or unsupported format)")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if rgb and img.ndim == 3 and img.shape[2] in (3, 4):
        img = img[:, :, [2, 1, 0] + ([3] if img.shape[2] == 4 else [])]
    return img


def _orient(img: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation as viewers do (the same result as Pillow's ``exif_transpose``)."""
    if orientation == 2:
        return img[:, ::-1]
    if orientation == 3:
        return img[::-1, ::-1]
    if orientation == 4:
        return img[::-1, :]
    if orientation == 5:
        return img.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(img, -1)
    if orientation == 7:
        return img[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(img, 1)
    return img


def _decode(path) -> Tuple[Path, np.ndarray, bool]:
    """The decoded pixels of ``path``, oriented, in the file's own depth; and whether they are in
    RGB order (JPEG) or OpenCV's BGR order.  Raises :class:`ImageReadError`."""
    p = Path(path)
    if not p.exists():
        raise ImageReadError(p, "file not found")
    if p.is_dir():
        raise ImageReadError(p, "is a folder, not an image")
    try:
        with open(p, "rb") as f:    # Python's open handles non-ASCII paths, unlike cv2.imread
            header = _read_header(f)
            size = os.fstat(f.fileno()).st_size
            # uncompressed 16-bit RGBA is 8 bytes a pixel: a larger file is not an image to decode
            if size > 8 * max(max_pixels(), 1) + (16 << 20):
                raise ImageReadError(p, f"file is too large for an image ({size / 1e6:.0f} MB)")
            f.seek(0)
            data = f.read()
    except OSError as exc:
        raise ImageReadError(p, f"cannot be opened ({exc.strerror or exc})") from None
    except ValueError as exc:                # a bad INSPECTOR_MAX_PIXELS
        raise ImageReadError(p, str(exc)) from None
    if not data:
        raise ImageReadError(p, "file is empty")
    try:
        if header is not None:
            _check_pixels(p, *_decoded_size(header))
        if header is not None and header.format == "JPEG":
            img, is_rgb = _decode_jpeg(p, data, header), True
        else:
            img, is_rgb = _opencv_decode(p, data), False
            if header is None:        # no size known beforehand: OpenCV's own limit applied
                _check_pixels(p, img.shape[1], img.shape[0])
        orientation = 1 if header is None else header.orientation or _png_orientation(data)
        return p, _orient(img, orientation), is_rgb
    except ImageReadError:
        raise
    except ValueError as exc:                # a bad INSPECTOR_MAX_PIXELS
        raise ImageReadError(p, str(exc)) from None
    except MemoryError:
        raise ImageReadError(p, "not enough memory to decode this image") from None
    except Exception as exc:                 # cv2.error and whatever else a decoder raises
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        raise ImageReadError(p, f"not a readable image ({first[:160]})") from None


def read_image(path) -> np.ndarray:
    """Read ``path`` as an H×W×3 RGB uint8 array.

    PNG, JPEG, BMP and TIFF; 8- or 16-bit; grey, RGB or RGBA (alpha is dropped); oriented as its
    EXIF says; a very large JPEG at reduced size (see the module's docstring).
    Raises :class:`ImageReadError` with a reason when the file cannot be used.
    """
    p, img, is_rgb = _decode(path)
    img = _to_uint8(img)
    if img.ndim == 2:
        rgb = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] in (3, 4):
        rgb = img[:, :, :3] if is_rgb else cv2.cvtColor(np.ascontiguousarray(img[:, :, :3]), cv2.COLOR_BGR2RGB)
    else:
        raise ImageReadError(p, f"unsupported number of channels ({img.shape[2]})")
    if rgb.shape[0] < 8 or rgb.shape[1] < 8:
        raise ImageReadError(p, f"image is too small ({rgb.shape[1]}x{rgb.shape[0]} pixels)")
    return np.ascontiguousarray(rgb)


def read_mask(path, shape: Tuple[int, int] | None = None) -> np.ndarray:
    """Read a ground-truth mask as a bool H×W array (any non-zero pixel is a defect, alpha aside).

    Decoded and oriented exactly as :func:`read_image` decodes an image, so a mask drawn on what
    an image viewer shows lies on the image this module returns; ``shape`` resizes it (nearest)."""
    p = Path(path)
    try:
        _, img, _ = _decode(p)
    except ImageReadError as exc:
        raise ImageReadError(p, f"mask is missing or not a readable image ({exc.reason})") from None
    m = (img[:, :, :3] > 0).any(axis=2) if img.ndim == 3 else img > 0
    if shape is not None and m.shape != tuple(shape):
        m = cv2.resize(m.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    return np.ascontiguousarray(m)


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

"""Resize / crop / normalise images for a backbone, and map anomaly maps back onto the original image.

The *frame* is what the network sees: the image resized to a ``resize``×``resize`` square, then
optionally center-cropped to ``crop``×``crop``.  Maps computed in the frame go back to the original
geometry with :meth:`Preprocess.to_original` (undo the crop, then the resize).

With an alignment (:mod:`.align`; ``none`` by default) the resized square is first registered to the
model's reference and warped into its pose, then cropped: :meth:`Preprocess.framed` returns the frame
with its :class:`~.align.Registration`, and :meth:`Preprocess.to_original` / :meth:`Preprocess.unalign`
warp a map back onto the image as it was taken.  Every method gets this through the frames it is fed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
import scipy.sparse

from .align import Alignment, NoAlign, Registration

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# How images are resized to the frame.  "antialias" (the default): bilinear with a low-pass filter
# when shrinking, as torchvision's Resize (which ImageNet backbones were trained behind) and anomalib;
# without it, detail finer than the frame can hold aliases into bands.  "linear": plain bilinear,
# what model files written before the field existed were trained with.  On the shared datasets
# antialias reaches anomalib's figures and gains magnetic_tile (up to 630 px → 256) 0.004 image AUROC
# (RESULTS.md, "Preprocessing").
from .choices import INTERPOLATIONS  # noqa: E402  ("linear", "antialias")

# The frame's side: at least 32 pixels (the deepest taps need a few cells), at most 4096 (one
# image's feature maps stay within a few GB; model files with more are refused, model_schema.py).
MIN_FRAME, MAX_FRAME = 32, 4096


@dataclass(frozen=True)
class Preprocess:
    resize: int = 256
    crop: Optional[int] = None   # None keeps the whole resized image
    interpolation: str = "antialias"
    alignment: Alignment = field(default_factory=NoAlign, repr=False)   # saved apart (modelfile: "alignment")

    def __post_init__(self):
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)} (got {self.interpolation!r})")
        if not MIN_FRAME <= self.resize <= MAX_FRAME:
            raise ValueError(f"image size must be between {MIN_FRAME} and {MAX_FRAME} pixels (got {self.resize})")
        if self.crop is not None and not (MIN_FRAME <= self.crop <= self.resize):
            raise ValueError(f"crop must be between {MIN_FRAME} and the resize ({self.resize}), got {self.crop}")

    @property
    def size(self) -> int:
        """Side of the square the network sees."""
        return self.crop if self.crop is not None else self.resize

    def _crop_offset(self) -> int:
        return 0 if self.crop is None else (self.resize - self.crop) // 2

    def frame(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 image → the network's frame: float32 on the 0..255 scale, size×size×3.

        The resized image is not rounded back to 8 bits: that rounding alone cost magnetic_tile
        0.001 pixel AUROC and 0.0016 PRO (RESULTS.md, same memory bank with and without it)."""
        return self.framed(image)[0]

    def framed(self, image: np.ndarray) -> Tuple[np.ndarray, Registration]:
        """:meth:`frame` and the image's registration to the alignment's reference (``ok`` False: it
        could not be registered and is framed as taken)."""
        out = self._resize(image)
        reg = self.alignment.register(out)
        return self._crop(self.alignment.warp(out, reg)), reg

    def square(self, image: np.ndarray) -> np.ndarray:
        """The image resized to the ``resize`` square (float32, 0..255), before alignment and crop."""
        return self._resize(image)

    def with_alignment(self, alignment: Alignment) -> "Preprocess":
        return dataclasses.replace(self, alignment=alignment)

    def _crop(self, square: np.ndarray) -> np.ndarray:
        o = self._crop_offset()
        return square[o:o + self.size, o:o + self.size] if self.crop is not None else square

    def unalign(self, amap: np.ndarray, registration: Registration) -> np.ndarray:
        """A size×size map of an aligned frame → the same map in the frame of the image as taken.

        Around a crop the map is extended with its edge values before warping (the network saw
        nothing there; the crop is taken again after)."""
        if registration.is_identity:
            return amap
        amap = amap.astype(np.float32, copy=False)
        o = self._crop_offset()
        if self.crop is not None:
            amap = cv2.copyMakeBorder(amap, o, self.resize - self.crop - o, o, self.resize - self.crop - o,
                                      cv2.BORDER_REPLICATE)
        return self._crop(self.alignment.unwarp(amap, registration))

    def _resize(self, image: np.ndarray) -> np.ndarray:
        shrinking = image.shape[0] > self.resize or image.shape[1] > self.resize
        if self.interpolation == "linear" or not shrinking:
            # growing: the filter has nothing to remove, and torch's bilinear is OpenCV's
            return cv2.resize(image.astype(np.float32), (self.resize, self.resize), interpolation=cv2.INTER_LINEAR)
        return antialiased_resize(image, self.resize)

    def frame_mask(self, mask: np.ndarray, registration: Optional[Registration] = None) -> np.ndarray:
        """A bool mask of the original image → the frame, exactly like the image (nearest); with the
        image's ``registration`` (from :meth:`framed`), in the aligned frame."""
        m = cv2.resize(mask.astype(np.uint8), (self.resize, self.resize), interpolation=cv2.INTER_NEAREST)
        if registration is not None and not registration.is_identity:
            m = (self.alignment.warp(m.astype(np.float32), registration) >= 0.5).astype(np.uint8)
        return self._crop(m) > 0

    def normalise(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Frames (HWC on the 0..255 scale) → float32 NCHW normalised with ImageNet mean and std."""
        x = np.stack(frames).astype(np.float32) / 255.0
        x = (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return self.normalise([self.frame(im) for im in images])

    def to_original(self, amap: np.ndarray, original_hw: Tuple[int, int],
                    registration: Optional[Registration] = None) -> np.ndarray:
        """A size×size map in the frame → the original image's H×W (with the image's
        ``registration``, the map of an aligned frame is first warped back: :meth:`unalign`).

        Outside a center crop the network saw nothing; those pixels get the map's minimum,
        so they never raise an alarm.
        """
        h, w = int(original_hw[0]), int(original_hw[1])
        if registration is not None:
            amap = self.unalign(amap, registration)
        amap = amap.astype(np.float32, copy=False)
        if self.crop is not None:
            full = np.full((self.resize, self.resize), float(amap.min()), np.float32)
            o = self._crop_offset()
            full[o:o + self.crop, o:o + self.crop] = amap
            amap = full
        return cv2.resize(amap, (w, h), interpolation=cv2.INTER_LINEAR)

    def to_dict(self) -> dict:
        """Size, crop and filter; the alignment is saved apart (:meth:`.align.Alignment.state`)."""
        return {"resize": self.resize, "crop": self.crop, "interpolation": self.interpolation}

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        return cls(resize=int(d["resize"]), crop=None if d.get("crop") is None else int(d["crop"]),
                   interpolation=str(d.get("interpolation", "linear")))   # older files: plain bilinear


@lru_cache(maxsize=64)
def _axis_weights(n_in: int, n_out: int) -> scipy.sparse.csr_matrix:
    """The (n_out, n_in) weights of torch's antialiased bilinear resize along one axis.

    torch's rule (ATen ``_compute_indices_min_size_weights_aa``, PIL's): output pixel i is centred
    at scale·(i + 0.5) in the input, with scale = n_in / n_out, and takes a triangle filter
    stretched by the scale when shrinking (support ±scale), normalised to sum 1.  Each output
    mixes about 2·scale inputs, hence a sparse matrix; tests check it against torch itself."""
    scale = n_in / n_out
    support = scale if scale >= 1.0 else 1.0
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    centre = scale * (np.arange(n_out) + 0.5)
    lo = np.maximum((centre - support + 0.5).astype(np.int64), 0)
    hi = np.minimum((centre + support + 0.5).astype(np.int64), n_in)
    taps = int((hi - lo).max())
    j = lo[:, None] + np.arange(taps)[None, :]                              # (n_out, taps) inputs
    w = np.clip(1.0 - np.abs((j - centre[:, None] + 0.5) * inv), 0.0, None)
    w[j >= hi[:, None]] = 0.0
    w /= w.sum(axis=1, keepdims=True)
    rows = np.repeat(np.arange(n_out), taps)
    m = scipy.sparse.csr_matrix((w.ravel().astype(np.float32), (rows, np.minimum(j, n_in - 1).ravel())),
                                shape=(n_out, n_in))
    m.eliminate_zeros()
    return m


def antialiased_resize(image: np.ndarray, size: int) -> np.ndarray:
    """HWC image → size×size×C float32, as torch's bilinear ``antialias=True`` (to about 1e-4 on
    the 0..255 scale), by two sparse products: 13 ms for a 5-megapixel image instead of torch's 65."""
    h, w, c = image.shape
    x = image.astype(np.float32, copy=False).reshape(h, w * c)
    rows = _axis_weights(h, size) @ x                                      # (size, w·c)
    rows = rows.reshape(size, w, c).transpose(1, 0, 2).reshape(w, size * c)
    out = (_axis_weights(w, size) @ rows).reshape(size, size, c).transpose(1, 0, 2)
    return np.clip(out, 0, 255, out=np.ascontiguousarray(out))

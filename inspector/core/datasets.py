"""Datasets as lists of samples: the MVTec AD layout and plain folders.

MVTec layout (one *category*)::

    CATEGORY/train/good/*.png
    CATEGORY/test/good/*.png
    CATEGORY/test/<defect_type>/*.png
    CATEGORY/ground_truth/<defect_type>/<stem>_mask.png   (any image extension; ``<stem>.png`` too)

A *root* is a folder of such categories.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .errors import DatasetError
from .images import IMAGE_EXTENSIONS, is_image_file, list_images

GOOD = "good"
ANOMALOUS = "anomalous"


@dataclass(frozen=True)
class Sample:
    path: Path
    split: str = "test"                 # "train" or "test"
    label: Optional[str] = None         # GOOD, ANOMALOUS, or None when unknown
    defect_type: Optional[str] = None   # e.g. "broken_large"; "good" for normal images
    mask_path: Optional[Path] = None

    @property
    def is_anomalous(self) -> bool:
        return self.label == ANOMALOUS


@dataclass
class Category:
    name: str
    root: Path
    train: List[Sample] = field(default_factory=list)
    test: List[Sample] = field(default_factory=list)

    @property
    def has_masks(self) -> bool:
        return any(s.mask_path is not None for s in self.test)


def is_mvtec_category(path) -> bool:
    p = Path(path)
    return (p / "train" / "good").is_dir() and (p / "test").is_dir()


def _mask_index(folder: Path) -> Dict[str, Path]:
    index: Dict[str, Path] = {}
    if not folder.is_dir():
        return index
    for m in sorted(folder.iterdir()):
        if m.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        stem = m.stem
        if stem.endswith("_mask"):
            stem = stem[: -len("_mask")]
        index.setdefault(stem, m)
    return index


def load_mvtec_category(path) -> Category:
    """Read one MVTec-layout category. Raises :class:`DatasetError` with what is missing."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"folder not found: {root}")
    if not is_mvtec_category(root):
        raise DatasetError(
            f"{root} is not in MVTec layout: expected {root}/train/good and {root}/test/<type> folders")
    cat = Category(name=root.name, root=root)
    cat.train = [Sample(p, "train", GOOD, GOOD) for p in list_images(root / "train" / "good")]
    if not cat.train:
        raise DatasetError(f"no images in {root / 'train' / 'good'}")
    for type_dir in sorted(d for d in (root / "test").iterdir() if d.is_dir()):
        dtype = type_dir.name
        label = GOOD if dtype == GOOD else ANOMALOUS
        masks = _mask_index(root / "ground_truth" / dtype) if label == ANOMALOUS else {}
        for p in list_images(type_dir):
            cat.test.append(Sample(p, "test", label, dtype, masks.get(p.stem)))
    if not cat.test:
        raise DatasetError(f"no test images in {root / 'test'}")
    return cat


def find_categories(root, names: Optional[Sequence[str]] = None) -> List[Path]:
    """``root`` itself when it is a category, else its sub-folders that are categories."""
    r = Path(root)
    if not r.is_dir():
        raise DatasetError(f"folder not found: {r}")
    if is_mvtec_category(r):
        found = [r]
    else:
        found = [d for d in sorted(r.iterdir()) if d.is_dir() and is_mvtec_category(d)]
    if not found:
        raise DatasetError(
            f"no MVTec-layout category in {r}: expected CATEGORY/train/good and CATEGORY/test folders")
    if names:
        by_name = {p.name: p for p in found}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise DatasetError(
                f"unknown categor{'y' if len(missing) == 1 else 'ies'} {', '.join(missing)} in {r} "
                f"(found: {', '.join(sorted(by_name))})")
        found = [by_name[n] for n in names]
    return found


def training_images(path) -> List[Path]:
    """The normal images to train on: ``train/good`` of a category, or every image of a plain folder."""
    p = Path(path)
    if is_mvtec_category(p):
        images = list_images(p / "train" / "good")
        where = p / "train" / "good"
    else:
        images = list_images(p)
        where = p
        if not images:
            images = list_images(p, recursive=True)
    if not images:
        raise DatasetError(f"no images found in {where} (looked for {', '.join(IMAGE_EXTENSIONS)})")
    return images


def folder_samples(folder, split: str = "test", label: Optional[str] = None,
                   recursive: bool = False) -> List[Sample]:
    """A plain folder of images as samples."""
    return [Sample(p, split, label, label) for p in list_images(folder, recursive=recursive)]


@dataclass(frozen=True)
class Input:
    """One image to inspect, found from a command-line argument; ``error`` says why an argument
    gave no image (missing, an empty folder, a link loop...), so that a batch goes on past it."""
    path: Path
    error: Optional[str] = None


def _expand_one(p: Path) -> List[Input]:
    if p.is_symlink() and not p.exists():
        try:
            p.stat()
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return [Input(p, "symbolic link loop")]
        return [Input(p, "broken symbolic link (its target is missing)")]
    try:
        if p.is_dir():
            found = list_images(p, recursive=True)
            if not found:
                return [Input(p, f"folder holds no images (looked for {', '.join(IMAGE_EXTENSIONS)})")]
            return [Input(f) for f in found]
        if p.exists():
            return [Input(p)]
    except OSError as exc:          # permission denied, a loop while searching, a vanished mount...
        return [Input(p, f"cannot be read ({exc.strerror or exc})")]
    return [Input(p, "not found")]


def expand_inputs(paths: Sequence) -> List[Input]:
    """Files and folders given on a command line → one :class:`Input` per image file (folders are
    searched recursively), in the order given; an argument that gives no image becomes one
    ``Input`` with its ``error`` instead of stopping the others."""
    out: List[Input] = []
    for item in paths:
        out.extend(_expand_one(Path(item)))
    return out


__all__ = ["Sample", "Category", "GOOD", "ANOMALOUS", "is_mvtec_category", "load_mvtec_category",
           "find_categories", "training_images", "folder_samples", "expand_inputs", "Input",
           "is_image_file"]

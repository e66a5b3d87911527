"""What alignment costs per image, on one core.

Builds a reference from training images (a dataset folder, or generated parts), then times, for each
image brought to ``--size``² pixels (1024 by default): the registration to the reference and the warp
of the frame (the alignment step itself), the warp of a map back, and the whole framing (resize +
alignment + crop) against the framing without alignment.  OpenCV runs on one thread; CPU time is
reported beside wall time, as the machines these figures come from are shared.

    python -m inspector.research.align_benchmark [DATA_DIR] [--align rigid] [--size 1024] [--images 20]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import cv2
import numpy as np

from ..core.align import ALIGNMENTS, make_alignment
from ..core.images import read_image
from ..core.preprocess import Preprocess


def _generated(n: int, size: int, seed: int = 0) -> List[np.ndarray]:
    """Plates turned and moved at random (the tests' part, drawn here so the benchmark runs anywhere)."""
    rng = np.random.default_rng(seed)
    out = []
    c = (size - 1) / 2.0
    for i in range(n):
        a = np.radians(rng.uniform(-40, 40))
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        t = rng.uniform(-0.04, 0.04, 2) * size
        img = np.clip(205 + rng.normal(0, 3, (size, size, 1)), 0, 255).astype(np.uint8).repeat(3, axis=2)
        plate = np.array([(70, 80), (190, 70), (196, 170), (150, 176), (140, 160), (124, 178), (66, 182)],
                         np.float64) * size / 256.0
        pts = np.round(((plate - c) @ rot.T + c + t) * 16).astype(np.int32)
        cv2.fillPoly(img, [pts], (30, 60, 170), cv2.LINE_AA, 4)
        h = np.round(((np.array([150, 110]) * size / 256.0 - c) @ rot.T + c + t)).astype(int)
        cv2.circle(img, (int(h[0]), int(h[1])), int(14 * size / 256), (205, 205, 205), -1, cv2.LINE_AA)
        out.append(img)
    return out


def run(images: List[np.ndarray], align: str = "rigid", size: int = 1024, resize: int = 256,
        crop: Optional[int] = None, repeats: int = 3) -> Dict:
    """Milliseconds per ``size``² image (medians): wall and CPU time of each step."""
    cv2.setNumThreads(1)
    images = [cv2.resize(im, (size, size), interpolation=cv2.INTER_LINEAR) for im in images]
    plain = Preprocess(resize, crop)
    squares = [plain.square(im) for im in images]
    t0 = time.perf_counter()
    alignment = make_alignment(align).fit(squares)
    fit_s = time.perf_counter() - t0
    pre = plain.with_alignment(alignment)
    amap = np.random.default_rng(0).random((pre.size, pre.size)).astype(np.float32)

    def timed(fn) -> Dict[str, float]:
        wall, cpu = [], []
        for _ in range(repeats):
            for x in range(len(images)):
                w0, c0 = time.perf_counter(), time.process_time()
                fn(x)
                wall.append(time.perf_counter() - w0)
                cpu.append(time.process_time() - c0)
        return {"wall_ms": 1000 * float(np.median(wall)), "cpu_ms": 1000 * float(np.median(cpu)),
                "cpu_ms_max": 1000 * float(np.max(cpu))}

    regs = [alignment.register(s) for s in squares]

    def align_step(i):
        reg = alignment.register(squares[i])
        alignment.warp(squares[i], reg)
    return {
        "align": align, "image_size": size, "resize": resize, "crop": crop, "n_images": len(images),
        "reference_seconds": fit_s, "registered": int(sum(r.ok for r in regs)),
        "alignment": timed(align_step),
        "map_back": timed(lambda i: pre.to_original(amap, (size, size), regs[i])),
        "frame_aligned": timed(lambda i: pre.framed(images[i])),
        "frame_plain": timed(lambda i: plain.frame(images[i])),
    }


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m inspector.research.align_benchmark", description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="?", help="a folder of good images or an MVTec category (default: generated parts)")
    p.add_argument("--align", choices=[a for a in ALIGNMENTS if a != "none"], default="rigid")
    p.add_argument("--size", type=int, default=1024, help="images are brought to this square first (default 1024)")
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--resize", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", metavar="OUT.json")
    args = p.parse_args(argv)
    if args.data:
        from ..core.datasets import training_images
        paths = training_images(args.data)
        paths = [paths[int(i)] for i in np.linspace(0, len(paths) - 1, min(args.images, len(paths))).round()]
        images = [read_image(q) for q in paths]
    else:
        images = _generated(args.images, args.size)
    r = run(images, args.align, args.size, args.resize, repeats=args.repeats)
    print(f"{r['align']} alignment of {r['image_size']}x{r['image_size']} images ({r['registered']} of "
          f"{r['n_images']} registered), one core; median ms per image (CPU time; wall time):")
    for key, label in (("alignment", "register + warp the frame"), ("map_back", "warp a map back"),
                       ("frame_aligned", "resize + align + crop"), ("frame_plain", "resize + crop, no alignment")):
        t = r[key]
        print(f"  {label:<28} {t['cpu_ms']:7.1f} CPU  {t['wall_ms']:7.1f} wall  (slowest CPU {t['cpu_ms_max']:.1f})")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

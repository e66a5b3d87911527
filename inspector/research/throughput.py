"""End-to-end speed of ``predict`` and ``watch``, measured on the commands as a user runs them.

``inspector benchmark --throughput DIR --model MODEL``:

- **predict, images per second**: ``inspector predict MODEL DIR… -o TMP`` runs as a subprocess on
  the folder given ``repeats`` times, and once on a single image; the difference of the two wall
  times over the difference of the image counts is the steady rate (decoding, scoring, overlays and
  the CSV included, the start of Python and the loading of the model left out); the rate with
  those included is printed too.  ``--against TREE`` times another checkout's ``predict``
  (``PYTHONPATH=TREE``) in the same session, alternating with this one, ``rounds`` times each;
  ``--batch-sizes`` times this one at several batch sizes.
- **watch, latency**: ``inspector watch MODEL TMP`` runs as a subprocess; images of DIR are
  written into TMP one at a time at ``rate`` per second; the latency of each is the time from its
  file being closed to its result line on the watcher's standard output.  The median, 90th
  percentile and maximum are printed.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..core.errors import InspectorError
from ..core.images import list_images


def _env(tree: Optional[str]) -> Dict[str, str]:
    env = dict(os.environ)
    if tree:
        env["PYTHONPATH"] = str(Path(tree).absolute())
    return env


def _predict_seconds(model, inputs: Sequence, tree: Optional[str], extra: Sequence[str] = ()) -> float:
    with tempfile.TemporaryDirectory(prefix="inspector-tp-") as out:
        cmd = [sys.executable, "-m", "inspector", "predict", str(Path(model).absolute()),
               *(str(Path(i).absolute()) for i in inputs), "-o", out, "-q", *extra]
        t0 = time.perf_counter()
        # run from the output folder: ``python -m`` puts the working directory first on sys.path, so
        # from a checkout's root it would import that checkout whatever PYTHONPATH names
        proc = subprocess.run(cmd, env=_env(tree), capture_output=True, text=True, cwd=out)
        seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise InspectorError(f"predict failed ({' '.join(cmd)}): {proc.stderr.strip().splitlines()[-1:]}")
    return seconds


def predict_rate(model, folder, tree: Optional[str] = None, repeats: int = 3,
                 batch_size: Optional[int] = None) -> Dict:
    """One measurement of ``predict`` (see the module's docstring)."""
    images = list_images(folder, recursive=True)
    if not images:
        raise InspectorError(f"no images in {folder}")
    extra = ["--batch-size", str(batch_size)] if batch_size else []
    n = len(images) * repeats
    big = _predict_seconds(model, [folder] * repeats, tree, extra)
    small = _predict_seconds(model, images[:1], tree, extra)
    return {"tree": tree or "this", "batch_size": batch_size, "images": n, "seconds": big,
            "seconds_one_image": small, "images_per_second": (n - 1) / max(1e-9, big - small),
            "images_per_second_with_start": n / big}


def watch_latency(model, folder, rate: float = 1.0, n: int = 30, settle: float = 1.0,
                  timeout: float = 120.0) -> Dict:
    """File closed → result line of ``inspector watch``, for ``n`` images of ``folder`` landing at ``rate``/s."""
    images = list_images(folder, recursive=True)[:n]
    if not images:
        raise InspectorError(f"no images in {folder}")
    with tempfile.TemporaryDirectory(prefix="inspector-watch-") as tmp:
        watched, out = Path(tmp) / "camera", Path(tmp) / "out"
        watched.mkdir()
        cmd = [sys.executable, "-m", "inspector", "watch", str(Path(model).absolute()), str(watched), "-o", str(out),
               "--settle", str(settle)]
        proc = subprocess.Popen(cmd, env=dict(os.environ, PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=tmp)
        arrived: Dict[str, float] = {}
        started = threading.Event()
        err: List[str] = []

        def read_out():
            for line in proc.stdout:
                t = time.perf_counter()
                if line.startswith("{"):
                    arrived[json.loads(line)["path"]] = t

        def read_err():
            for line in proc.stderr:
                err.append(line)
                if line.startswith("watching "):
                    started.set()

        threads = [threading.Thread(target=read_out, daemon=True), threading.Thread(target=read_err, daemon=True)]
        for t in threads:
            t.start()
        try:
            if not started.wait(timeout):
                raise InspectorError(f"watch did not start: {''.join(err[-3:])}")
            landed: Dict[str, float] = {}
            t_next = time.perf_counter()
            for i, src in enumerate(images):
                time.sleep(max(0.0, t_next - time.perf_counter()))
                dest = watched / f"{i:05d}{src.suffix}"
                with open(src, "rb") as f_in, open(dest, "wb") as f_out:
                    shutil.copyfileobj(f_in, f_out)
                landed[str(dest)] = time.perf_counter()
                t_next += 1.0 / rate
            deadline = time.perf_counter() + timeout
            while len(arrived) < len(landed) and time.perf_counter() < deadline and proc.poll() is None:
                time.sleep(0.05)
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        lat = {p: arrived[p] - landed[p] for p in landed if p in arrived}
    if not lat:
        raise InspectorError(f"watch gave no result: {''.join(err[-3:])}")
    first = lat.get(next(iter(landed)))
    ordered = sorted(lat.values())
    return {"images": len(landed), "results": len(ordered), "rate_per_second": rate,
            "median_seconds": statistics.median(ordered), "p90_seconds": ordered[int(0.9 * (len(ordered) - 1))],
            "max_seconds": ordered[-1], "first_seconds": first}


def run(args) -> int:
    """``inspector benchmark --throughput DIR --model MODEL`` (arguments from the CLI's parser)."""
    folder, model = Path(args.throughput), args.model
    if not model:
        raise InspectorError("--throughput needs --model MODEL (a model file)")
    if not Path(model).is_file():
        raise InspectorError(f"model file not found: {model}")
    report: Dict = {"folder": str(folder), "model": str(model), "cpus": os.cpu_count(), "predict": [], "watch": None}
    trees = [None] + ([args.against] if args.against else [])
    print(f"predict on {folder} ({len(list_images(folder, recursive=True))} images) x {args.repeats}, "
          f"{os.cpu_count()} CPUs; steady images/s (decode to CSV row and overlay) and with start-up:")
    for rnd in range(args.rounds):
        for tree in (trees if rnd % 2 == 0 else trees[::-1]):      # alternate: before/after, after/before
            tree_model = getattr(args, "against_model", None) if tree and getattr(args, "against_model", None) else model
            r = predict_rate(tree_model, folder, tree, args.repeats)
            report["predict"].append(r)
            print(f"  round {rnd + 1} {r['tree']:<28} {r['images_per_second']:7.2f} images/s   "
                  f"({r['images_per_second_with_start']:.2f} with start-up; {r['seconds']:.1f} s for {r['images']})",
                  flush=True)
    for bs in [int(b) for b in args.batch_sizes.split(",")] if args.batch_sizes else []:
        r = predict_rate(model, folder, None, args.repeats, batch_size=bs)
        report["predict"].append(r)
        print(f"  batch size {bs:<3} {r['images_per_second']:7.2f} images/s", flush=True)
    if args.latency_images:
        w = watch_latency(model, folder, args.rate, args.latency_images, args.settle)
        report["watch"] = w
        print(f"watch at {w['rate_per_second']:g} image/s, {w['results']}/{w['images']} results: latency file "
              f"closed -> result line: median {w['median_seconds']:.3f} s, 90th percentile "
              f"{w['p90_seconds']:.3f} s, max {w['max_seconds']:.3f} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0

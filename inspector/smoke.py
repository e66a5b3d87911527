"""``inspector smoke``: the packaged application checks itself, from its own folder alone.

It makes its own test images (inspector/project/demo.py), then runs this same program as a
recipient would: ``--version``, ``train`` and ``predict`` on them, the window up to its first paint,
and the GUI's whole loop offscreen (``screenshots --generated``: a project, training through the
wizard in a spawned worker process, inspection, review, a PDF report).  Nothing from a build
environment is needed: run ``./inspector smoke`` in the unpacked folder.  Exit status 0 when all
passed, 1 otherwise; each step's time is printed.

The GUI steps run on Qt's offscreen platform unless QT_QPA_PLATFORM is set (no display needed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List


def self_command() -> List[str]:
    """How to run this program again: the frozen executable, or this interpreter with ``-m inspector``."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-m", "inspector"]


class SmokeFailure(Exception):
    pass


def _run(step: str, args: List[str], env=None, timeout: float = 600.0, expect_rc: int = 0) -> str:
    t0 = time.perf_counter()
    try:
        out = subprocess.run(self_command() + args, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SmokeFailure(f"{step}: no answer after {timeout:.0f} s") from None
    text = out.stdout + out.stderr
    if out.returncode != expect_rc:
        tail = "\n".join(text.splitlines()[-20:])
        raise SmokeFailure(f"{step}: exit status {out.returncode}\n{tail}")
    print(f"smoke: {step}: ok ({time.perf_counter() - t0:.1f} s)", flush=True)
    return text


def run_checks(tmp: Path, gui: bool = True) -> None:
    version = _run("--version", ["--version"]).strip()
    print(f"smoke: {version}; {sys.executable}")
    from .project.demo import make_folder, make_mvtec
    data = make_mvtec(tmp / "data", n_train=8, size=64)
    parts = make_folder(tmp / "parts", n=4, n_bad=2, size=64)
    model = tmp / "m.inspector"
    _run("train", ["train", str(data), "-o", str(model), "--backbone", "resnet18", "--random-weights",
                   "--resize", "64", "-q"])
    out = tmp / "out"
    _run("predict", ["predict", str(model), str(parts), "-o", str(out), "-q"])
    rows = (out / "results.csv").read_text(encoding="utf-8").strip().splitlines()[1:]
    overlays = list(out.glob("*_overlay.png"))
    if len(rows) != 4 or len(overlays) != 4:
        raise SmokeFailure(f"predict: expected 4 results and 4 overlays, got {len(rows)} and {len(overlays)}")
    if not gui:
        return
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    from .gui.app import QUIT_AFTER_PAINT_ENV        # a constant: imports PySide6, not a window
    text = _run("window (to its first paint)", ["gui", str(parts)], env={**env, QUIT_AFTER_PAINT_ENV: "1"},
                timeout=120)
    if "first paint" not in text:
        raise SmokeFailure("window: it exited without painting:\n" + text[-2000:])
    shots = tmp / "shots"
    _run("GUI loop: project, wizard training (spawned worker), inspection, review, PDF report",
         ["screenshots", str(shots), "--generated"], env=env, timeout=900)
    for png in ("wizard_result", "viewer", "review", "mask"):
        if not (shots / f"{png}.png").is_file() or (shots / f"{png}.png").stat().st_size == 0:
            raise SmokeFailure(f"GUI loop: it wrote no {png}.png")
    pdf = shots / "report.pdf"
    if not pdf.is_file() or pdf.read_bytes()[:4] != b"%PDF":
        raise SmokeFailure("GUI loop: it wrote no PDF report")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="inspector smoke", description=__doc__.splitlines()[0])
    p.add_argument("--no-gui", action="store_true", help="only the command line (no window, no GUI loop)")
    p.add_argument("--keep", metavar="DIR", help="work in DIR and keep what was written (default: a temporary folder)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        if args.keep:
            Path(args.keep).mkdir(parents=True, exist_ok=True)
            run_checks(Path(args.keep), gui=not args.no_gui)
        else:
            with tempfile.TemporaryDirectory(prefix="inspector-smoke-") as tmp:
                run_checks(Path(tmp), gui=not args.no_gui)
    except SmokeFailure as exc:
        print(f"smoke: FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"smoke test passed in {time.perf_counter() - t0:.0f} s: the application starts, trains, predicts, "
          + ("opens its window, trains through the wizard and writes a PDF report" if not args.no_gui else
             "(window not checked: --no-gui)"))
    return 0

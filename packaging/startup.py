#!/usr/bin/env python3
"""Start-up times of Inspector: ``--help``, ``--version`` and the window's first paint.

    python3 packaging/startup.py dist/cpu/inspector/inspector       # a built package
    python3 packaging/startup.py                                    # this checkout (python -m inspector)

Standard library only, so any Python 3 runs it beside a package.  Each figure is the median of
--runs launches (wall time from spawning the process; for the window, until the application prints
its first paint: INSPECTOR_QUIT_AFTER_PAINT, gui/app.py).  The window uses Qt's offscreen platform
unless QT_QPA_PLATFORM is set.  The first run is reported separately: it includes reading the
files from disk when they are not cached.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time


def launch(cmd, env, marker=None, timeout=120.0):
    t0 = time.time()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    t1 = time.time()
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit status {out.returncode}\n{out.stderr[-2000:]}")
    if marker is None:
        return t1 - t0
    for line in out.stdout.splitlines():
        if line.startswith(marker):
            return float(line.split()[-1]) - t0
    raise SystemExit(f"{' '.join(cmd)}: no '{marker}' line in its output:\n{out.stdout[-2000:]}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("app", nargs="?", help="the packaged executable (default: python -m inspector here)")
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    cmd = [os.path.abspath(args.app)] if args.app else [sys.executable, "-m", "inspector"]
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    cases = [("--help", ["--help"], {}, None),
             ("--version", ["--version"], {}, None),
             ("window, first paint", ["gui"], {"INSPECTOR_QUIT_AFTER_PAINT": "1"}, "inspector: first paint at")]
    print(f"{' '.join(cmd)}  ({os.cpu_count()} CPUs, QT_QPA_PLATFORM={env['QT_QPA_PLATFORM']})")
    for name, extra, more, marker in cases:
        times = [launch(cmd + extra, {**env, **more}, marker) for _ in range(args.runs + 1)]
        print(f"{name:22s} median {statistics.median(times[1:]):.2f} s   min {min(times[1:]):.2f} s   "
              f"first {times[0]:.2f} s   ({args.runs} runs)")


if __name__ == "__main__":
    main()

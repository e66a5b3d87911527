#!/usr/bin/env bash
# The built application checks itself: packaging/smoke.sh [APP] (default dist/cpu/inspector/inspector).
# It runs the app's own self-check, `inspector smoke` (inspector/smoke.py): the app makes its own
# images, then starts, trains, predicts, paints its window and runs the GUI's whole loop offscreen
# (training through the wizard in a spawned worker process, a PDF report).  Nothing from the build
# venv is used, so a recipient runs the same check with `inspector/inspector smoke` in the unpacked
# folder.  build.sh calls this, so a build that cannot run fails at build time.  Here the check runs
# from a copy of the folder under a path with a space, with a clean environment and an empty HOME,
# as on a machine that never saw the build.
set -euo pipefail
cd "$(dirname "$0")/.."
app=${1:-dist/cpu/inspector/inspector}
folder=$(cd "$(dirname "$app")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/some dir" "$tmp/home"
cp -a "$folder" "$tmp/some dir/"
env -i HOME="$tmp/home" PATH=/usr/bin:/bin LANG=C.UTF-8 \
    "$tmp/some dir/$(basename "$folder")/$(basename "$app")" smoke

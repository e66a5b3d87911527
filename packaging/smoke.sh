#!/usr/bin/env bash
# Run the built application (dist/inspector/inspector) on generated images: it must start, train,
# predict, open its window, and train through the wizard (a spawned worker process). build.sh calls
# it, so a build that cannot run fails at build time.
set -euo pipefail
cd "$(dirname "$0")/.."
app=dist/inspector/inspector
py=${PYTHON:-.venv-build/bin/python}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$app" --version
"$py" -c "import sys; from inspector.project.demo import make_mvtec, make_folder
make_mvtec(sys.argv[1] + '/data', n_train=8, size=64); make_folder(sys.argv[1] + '/parts', n=4, n_bad=2, size=64)" "$tmp"
"$app" train "$tmp/data" -o "$tmp/m.inspector" --backbone resnet18 --random-weights --resize 64 -q
"$app" predict "$tmp/m.inspector" "$tmp/parts" -o "$tmp/out" -q
rows=$(($(wc -l < "$tmp/out/results.csv") - 1))
overlays=$(ls "$tmp/out"/*_overlay.png | wc -l)
[ "$rows" -eq 4 ] && [ "$overlays" -eq 4 ] || { echo "smoke: expected 4 results and 4 overlays, got $rows and $overlays" >&2; exit 1; }

# The window: still running after 15 s (timeout's 124) means it started and did not crash.
set +e
QT_QPA_PLATFORM=offscreen timeout 15 "$app" gui "$tmp/parts" > "$tmp/gui.log" 2>&1
rc=$?
set -e
[ "$rc" -eq 124 ] || { echo "smoke: the application window exited with status $rc:" >&2; cat "$tmp/gui.log" >&2; exit 1; }
# The GUI's whole loop, driven offscreen: a project, training through the wizard (which runs in a
# spawned process: the part a frozen app is most likely to break), inspection, review and the PDF
# report (also written in a spawned process).
QT_QPA_PLATFORM=offscreen timeout 600 "$app" screenshots "$tmp/shots" --generated > "$tmp/shots.log" 2>&1 \
    || { echo "smoke: the GUI loop failed:" >&2; tail -20 "$tmp/shots.log" >&2; exit 1; }
for png in wizard_result viewer review mask; do
    [ -s "$tmp/shots/$png.png" ] || { echo "smoke: the GUI loop wrote no $png.png" >&2; exit 1; }
done
head -c 4 "$tmp/shots/report.pdf" 2>/dev/null | grep -q '%PDF' \
    || { echo "smoke: the GUI loop wrote no PDF report" >&2; exit 1; }
echo "smoke test passed: $app starts, trains, predicts, opens its window, trains through the wizard" \
     "and writes a PDF report"

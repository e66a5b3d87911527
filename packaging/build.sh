#!/usr/bin/env bash
# Build the desktop application with PyInstaller (run from anywhere):
#
#   packaging/build.sh          the CPU package (default): dist/cpu/inspector/, no NVIDIA library
#   packaging/build.sh gpu      the GPU package: dist/gpu/inspector/, CUDA torch and its NVIDIA libraries
#
# Each flavour has its own build venv (.venv-build-cpu, .venv-build-gpu; VENV=DIR to use another).
# The CPU flavour needs pip to find torch's CPU wheel, TORCH_CPU (default torch==2.13.0+cpu): on
# this machine it lies in /opt/wheels; elsewhere add PyTorch's CPU index,
#   PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu packaging/build.sh
# Then the built application checks itself (inspector smoke: it makes its own images), and the
# last artefact is dist/inspector-VERSION-linux-x86_64-FLAVOUR.tar.gz (symlinks kept as links).
set -euo pipefail
cd "$(dirname "$0")/.."
flavour=${1:-cpu}
case "$flavour" in cpu|gpu) ;; *) echo "usage: packaging/build.sh [cpu|gpu]" >&2; exit 2;; esac
venv=${VENV:-.venv-build-$flavour}

if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
if [ "$flavour" = cpu ]; then
    # torchvision 0.28.0 is the release paired with torch 2.13 (its Python code only: its compiled
    # extensions are CUDA builds and are left out, see inspector.spec)
    "$venv/bin/python" -m pip install --quiet "${TORCH_CPU:-torch==2.13.0+cpu}" torchvision==0.28.0 -e ".[packaging]"
    "$venv/bin/python" -c "import torch, sys; sys.exit(f'{torch.__version__} is a CUDA build' if torch.version.cuda else 0)"
else
    "$venv/bin/python" -m pip install --quiet -e ".[packaging]"
fi

INSPECTOR_FLAVOUR=$flavour "$venv/bin/pyinstaller" --noconfirm --distpath "dist/$flavour" \
    --workpath "build/pyinstaller-$flavour" packaging/inspector.spec
cp LICENSE "dist/$flavour/inspector/LICENSE"
app=dist/$flavour/inspector/inspector
packaging/smoke.sh "$app"

version=$("$app" --version | awk '{print $2}')
archive=dist/inspector-$version-linux-x86_64-$flavour.tar.gz
# pigz where installed (gzip's output, on all cores)
tar -C "dist/$flavour" -cf - inspector | { command -v pigz >/dev/null && pigz -6 || gzip -6; } > "$archive"
echo "built: $app  ($(du -sh "dist/$flavour/inspector" | cut -f1) unpacked in" \
     "$(find "dist/$flavour/inspector" -type f | wc -l) files; try: $app --version)"
echo "archive: $archive  ($(du -h "$archive" | cut -f1); unpack: tar -xzf $(basename "$archive"), then inspector/inspector smoke)"

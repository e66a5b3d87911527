#!/usr/bin/env bash
# Build the desktop application with PyInstaller into dist/inspector/ (run from anywhere).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-build
.venv-build/bin/python -m pip install --quiet -e ".[packaging]"
.venv-build/bin/pyinstaller --noconfirm --distpath dist --workpath build/pyinstaller packaging/inspector.spec
packaging/smoke.sh
echo "built: dist/inspector/inspector  (try: dist/inspector/inspector --version)"

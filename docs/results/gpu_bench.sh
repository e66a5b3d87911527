#!/usr/bin/env bash
# Issue #19's GPU check, prepared for a session that is lent a GPU machine (the `device` tool); not run yet:
# no machine was lent to the session that wrote it. `inspector benchmark --data` on bottle with WRN-50
# (random weights: speed only), bank seconds and inference ms/image to set beside the paper's
# 0.17-0.22 s/image. The machine has torch, numba, OpenCV, scikit-learn and scipy; the rest travels.
#
# Here, once, in the repository root (what travels must stay under 64 MiB in all):
#   printf '/.whl/\n/.gpudata/\n' >> .git/info/exclude
#   P="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp -d .whl \
#      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
#   python3 -m pip download $P faiss-cpu simplejpeg jsonschema jsonschema-specifications referencing \
#      rpds-py watchdog
#   mkdir -p .gpudata/bottle/test/good .gpudata/bottle/train
#   cp -r ../shared/data/mvtec_ad/bottle/train/good .gpudata/bottle/train/
#   cp ../shared/data/mvtec_ad/bottle/test/good/00[0-9].png .gpudata/bottle/test/good/
#   du -sh .whl .gpudata                      # together under 64 MiB
# Then one device call: run(command="bash docs/results/gpu_bench.sh", carry=[".whl", ".gpudata"],
# timeout_s=420), and give the machine back.
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))"
OUT=${OUT:-/tmp/out}
python3 -m inspector benchmark --data .gpudata/bottle --backbone wide_resnet50_2 --random-weights \
    --json "$OUT/gpu_bottle_wrn50.json"
python3 -m inspector benchmark --data .gpudata/bottle --backbone wide_resnet50_2 --random-weights \
    --option coreset_group_rows=0 --json "$OUT/gpu_bottle_wrn50_exact.json"

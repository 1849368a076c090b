#!/usr/bin/env bash
# The benchmarks in one command (not part of the test suite). Arguments go to `python -m benchmarks`.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1
exec .venv/bin/python -m benchmarks "$@"

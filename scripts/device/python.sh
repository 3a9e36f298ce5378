#!/usr/bin/env bash
# The PyTorch binding against build-dev: its GPU tests (python/run_device_tests.sh), bench/compare.py
# (sigjit's binding, TritonSigmoid, SDPA; --quick unless COMPARE_FULL=1) and bench/first_call.py
# (first call, memory, ragged batch). No C++ GPU tests. Logs, compare.csv/png, first_call.json in $OUT.
set -uo pipefail
export OUT=${OUT:-$PWD/.out} && mkdir -p "$OUT"
cd "$(dirname "$0")/../.." || exit 1
run=scripts/device_run.sh
$run build || exit 1
$run python
quick=(--quick)
[ "${COMPARE_FULL:-0}" = 1 ] && quick=()
$run pybench compare.py --out "$OUT" "${quick[@]}" 2>&1 | grep -v Warning | tail -40
$run pybench first_call.py --out "$OUT" 2>&1 | tail -20

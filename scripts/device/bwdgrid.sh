#!/usr/bin/env bash
# The default backward's matrix on this device (sm90, bulk dQ), then sigjit's and TritonSigmoid's
# backward grids (+ sigjit's deterministic mode) in one call, for bench/RESULTS-backward.md.
# Logs, CSV and summary.md in $OUT.
set -uo pipefail
export OUT=${OUT:-$PWD/.out} && mkdir -p "$OUT"
cd "$(dirname "$0")/../.." || exit 1
run=scripts/device_run.sh
$run build || exit 1
$run gpu-tests 'Matrix/BackwardMatrixSm90BulkDq.*' "${FIRST_TIMEOUT_S:-150}" gpu_tests_bulk_dq.log
timeout 150 $run bench --direction bwd
timeout 60 $run bench --direction bwd --deterministic --seq 1024,4096,16384 --pad 0
timeout "${TRITON_TIMEOUT_S:-240}" $run triton --direction bwd
$run summarize

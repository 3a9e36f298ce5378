#!/usr/bin/env bash
# Every GPU test (knobs as in quick.sh), then sigjit's whole forward grid (+ causal and varlen at
# L 4096/16384) and TritonSigmoid at the anchor points of shared/anchors-h100.md, for RESULTS.md
# (fits one ~7-minute call). Logs, CSV, summary.md and RESULTS.md in $OUT.
set -uo pipefail
export OUT=${OUT:-$PWD/.out} && mkdir -p "$OUT"
cd "$(dirname "$0")/../.." || exit 1
run=scripts/device_run.sh
$run build || exit 1
$run sigjit compile --head-dim 128 --arch sm_90 --layout padded | tee "$OUT/compile.txt"  # cold compile time
[ -z "${FIRST_FILTER:-}" ] || $run gpu-tests "$FIRST_FILTER" "${FIRST_TIMEOUT_S:-150}" gpu_tests_first.log
$run gpu-tests all "${GPU_TESTS_TIMEOUT_S:-0}"
$run bench --reps 20
$run bench --seq 4096,16384 --pad 0 --causal --reps 20
$run bench --seq 4096,16384 --pad 25 --layout varlen --reps 20
$run triton --seq 1024,4096,16384 --pad 0 --rep-ms 100
$run triton --seq 4096,16384 --pad 25 --rep-ms 100
$run summarize "bash scripts/device/final.sh"

#!/usr/bin/env bash
# The one call that checks everything: builds, runs every GPU test, then benchmarks sigjit and
# TritonSigmoid forward and backward at L 4096/16384 (BENCH_SEQ), hd 64/128, dense; logs in $OUT.
# The whole suite no longer fits one 10-minute call: GTEST_FILTER narrows it, GPU_TESTS_TIMEOUT_S
# caps it, GTEST_TOTAL_SHARDS=3 GTEST_SHARD_INDEX=0 (then 1, 2) splits it. FIRST_FILTER runs first
# in its own process under FIRST_TIMEOUT_S, so that a new kernel's hang cannot eat the call.
set -uo pipefail
export OUT=${OUT:-$PWD/.out} && mkdir -p "$OUT"
cd "$(dirname "$0")/../.." || exit 1
run=scripts/device_run.sh
$run build || exit 1
$run sigjit compile --head-dim 128 --arch sm_90 --layout padded | tee "$OUT/compile.txt"  # cold compile time
[ -z "${FIRST_FILTER:-}" ] || $run gpu-tests "$FIRST_FILTER" "${FIRST_TIMEOUT_S:-150}" gpu_tests_first.log
$run gpu-tests all "${GPU_TESTS_TIMEOUT_S:-0}"
seq=${BENCH_SEQ:-4096,16384}
SIGJIT_BACKWARD_PATH=fused $run bench --direction fwd,bwd --seq "$seq" --pad 0
$run bench --direction bwd --deterministic --seq "$seq" --pad 0
$run triton --direction fwd,bwd --seq "$seq" --pad 0
$run summarize "bash scripts/device/quick.sh"

#!/usr/bin/env bash
# Issue 22's FP8 forward on the device, in the calls the 10-minute limit allows. Logs and CSVs in $OUT.
#   fp8.sh check   build; the FP8 GPU tests (Fp8Forward: every layout x hd 64/128 x causal x score
#                  bias x GQA against fp64 of the dequantized inputs, 4096 and 16384, refusals)
#                  under FP8_TIMEOUT_S; the rate microbenchmark (fp8_rates.sh); the downstream check
#                  (bench/fp8_downstream.py: cosine similarity of a layer stack's output, FP8 vs bf16)
#   fp8.sh bench   build; the FP8 and bf16 forwards over the dense grid (hd 64 and 128, causal and
#                  not) and 25 % padded, each FMA-sigmoid split (FP8_TILES_128/64), in one call
set -uo pipefail
export OUT=${OUT:-$PWD/.out} && mkdir -p "$OUT"
cd "$(dirname "$0")/../.." || exit 1
run=scripts/device_run.sh
seq=${FP8_SEQ:-1024,2048,4096,8192,16384}
tiles128=${FP8_TILES_128:-default;h128x128c2s3o_f1;h128x128c2s3o_pp_f1;h128x128c2s3o_f2}
tiles64=${FP8_TILES_64:-default;h192x128c3s2_f1;h128x128c2s3o_pp_f1;h192x128c3s2_f2}

check() {
  $run build || exit 1
  $run gpu-tests '*Fp8*' "${FP8_TIMEOUT_S:-240}" gpu_tests_fp8.log
  [ "${DRY_RUN:-0}" = 1 ] && return
  grep -E '^\[fp8\]' "$OUT/gpu_tests_fp8.log" | sort -t= -k3 -g | tail -5
  bash scripts/device/fp8_rates.sh
  timeout 120 $run pybench fp8_downstream.py --out "$OUT/fp8_downstream.md"
}

bench() {
  $run build || exit 1
  for causal in "" --causal; do
    $run bench --direction fwd --dtype fp8 --head-dim 128 --seq "$seq" --pad 0 $causal --tiles "$tiles128"
    $run bench --direction fwd --dtype fp8 --head-dim 64 --seq "$seq" --pad 0 $causal --tiles "$tiles64"
    $run bench --direction fwd --head-dim 64,128 --seq "$seq" --pad 0 $causal
  done
  $run bench --direction fwd --dtype fp8 --head-dim 64,128 --seq "$seq" --pad 25
  $run bench --direction fwd --head-dim 64,128 --seq "$seq" --pad 25
  $run summarize "bash scripts/device/fp8.sh bench"
}

case "${1:-}" in
  check | bench) "$1" ;;
  *) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 2 ;;
esac

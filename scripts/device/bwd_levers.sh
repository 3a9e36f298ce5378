#!/usr/bin/env bash
# Issue 21's backward levers on the device, each tunable against the current default, in the calls
# the 10-minute limit allows (the four verbs fit one 30-minute session). Logs, CSVs and summary.md
# in $OUT.
#   bwd_levers.sh check     build; the GPU correctness suites of the levers: BackwardMatrixSm90
#                           EarlyScores, DqWriter and DqWriterEarlyScores (the dense/padded/varlen
#                           matrix with GQA, causal, score bias, lengths 1 and 17, 4096 and 16384,
#                           against fp64, poisoned gradients, run twice) and BackwardMatrixOrdered
#                           (the deterministic mode on the ordered dQ reduction: also bitwise run to
#                           run), each under SUITE_TIMEOUT_S; then the SASS of the lever tiles
#   bwd_levers.sh sanitize  build; compute-sanitizer memcheck, racecheck and synccheck on two small
#                           cases of the combined lever (e_w) and one of the ordered reduction; then
#                           the top-left cases through every dQ path, early scores and the ordered
#                           deterministic mode
#   bwd_levers.sh bench     build; sigjit's backward with the default tile and each lever
#                           (LEVER_TILES_128, LEVER_TILES_64) over the dense grid (causal and not)
#                           and 25 % padded, the deterministic mode on the two-kernel pair and on
#                           the ordered reduction, then TritonSigmoid's and cuDNN SDPA's backward in
#                           the same call (compare.py)
#   bwd_levers.sh ragged    the padded/varlen split on the ragged single-cell batch (bench/ragged_split.py:
#                           forward, forward+backward, the floor of the padding's zero writes)
#   bwd_levers.sh profile   ncu of the last tile of each list at L 16384 (scripts/device/profile.sh),
#                           for bench/PROFILE-backward.md's predicted-vs-measured table
set -uo pipefail
export OUT=${OUT:-$PWD/.out} && mkdir -p "$OUT"
cd "$(dirname "$0")/../.." || exit 1
run=scripts/device_run.sh
tiles128=${LEVER_TILES_128:-hb128x64c2s2o_r;hb128x64c2s2oe_r;hb128x64c2s2o_w;hb128x64c2s2oe_w}
tiles64=${LEVER_TILES_64:-hb128x128c2s2_r;hb128x128c2s2e_r;hb128x128c2s2_w;hb128x128c2s2e_w}
seq=${LEVER_SEQ:-512,1024,2048,4096,8192,16384}

check() {
  $run build || exit 1
  for suite in Sm90EarlyScores Sm90DqWriter Sm90DqWriterEarlyScores Ordered; do
    SIGJIT_BACKWARD_PATH=fused $run gpu-tests "Matrix/BackwardMatrix$suite.*" "${SUITE_TIMEOUT_S:-130}" "gpu_tests_$suite.log"
  done
  $run gpu-tests 'BackwardOrdered.*' 60 gpu_tests_ordered_refusal.log
  [ "${DRY_RUN:-0}" = 1 ] && return
  for tile in ${tiles128//;/ }; do
    $run sigjit compile --head-dim 128 --arch sm_90a --direction bwd_fused --tile "$tile" --out "$OUT/sass_$tile" >/dev/null
    cuobjdump --dump-sass "$OUT/sass_$tile"/*.cubin >"$OUT/sass_$tile.txt" 2>&1
    echo "$tile: HGMMA $(grep -c HGMMA "$OUT/sass_$tile.txt"), DEPBAR $(grep -c 'WARPGROUP.DEPBAR' "$OUT/sass_$tile.txt"), UTMAREDG $(grep -c UTMAREDG "$OUT/sass_$tile.txt")"
    rm -rf "$OUT/sass_$tile"
  done
}

sanitize() {
  local suite=Matrix/BackwardMatrixSm90DqWriterEarlyScores ordered=Matrix/BackwardMatrixOrdered
  $run build || exit 1
  $run sanitize "$suite.*dense_d64_bf16_causal_logn_exact_q200*:$suite.*varlen_d128_fp16_causal_logn_sb_gqa_exact*:$ordered.*varlen_d128_fp16_causal_logn_sb_gqa_exact*" 80
  $run gpu-tests 'TopLeft/BackwardTopLeft.*' "${TOP_LEFT_TIMEOUT_S:-240}" gpu_tests_top_left.log
}

bench() {
  $run build || exit 1
  $run bench --direction bwd --head-dim 128 --seq "$seq" --pad 0,25 --tiles "$tiles128"
  $run bench --direction bwd --head-dim 128 --seq "$seq" --pad 0 --causal --tiles "$tiles128"
  $run bench --direction bwd --head-dim 64 --seq "$seq" --pad 0,25 --tiles "$tiles64"
  $run bench --direction bwd --head-dim 64 --seq "$seq" --pad 0 --causal --tiles "$tiles64"
  $run bench --direction bwd --deterministic --seq 1024,4096,16384 --pad 0
  # Its own CSV: the rows of both deterministic paths are labelled sigjit-det.
  SIGJIT_BACKWARD_PATH=ordered $run bench --direction bwd --deterministic --seq 1024,4096,16384 --pad 0 --csv "$OUT/bench_det_ordered.csv"
  timeout "${COMPARE_TIMEOUT_S:-300}" $run pybench compare.py --out "$OUT/compare" --impl triton-sigmoid,sdpa-cudnn --direction bwd \
    --seq "$seq" --pad 0
  $run summarize "bash scripts/device/bwd_levers.sh bench"
}

profile() {
  [ "${DRY_RUN:-0}" = 1 ] && { PROFILE_HD="128 64" bash scripts/device/profile.sh; return; }
  PROFILE_HD=128 PROFILE_ARGS="--direction bwd --seq 16384 --pad 0 --warmup 2 --reps 2 --tiles ${tiles128##*;}" bash scripts/device/profile.sh
  mv "$OUT/profile.tgz" "$OUT/profile_hd128.tgz"
  PROFILE_HD=64 PROFILE_ARGS="--direction bwd --seq 16384 --pad 0 --warmup 2 --reps 2 --tiles ${tiles64##*;}" bash scripts/device/profile.sh
  mv "$OUT/profile.tgz" "$OUT/profile_hd64.tgz"
}

ragged() {
  $run build || exit 1
  timeout 240 $run pybench ragged_split.py --out "$OUT/ragged_split.md"
}

case "${1:-}" in
  check | sanitize | bench | ragged | profile) "$1" ;;
  *) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# compute-sanitizer memcheck, racecheck and synccheck over small sm90 (and sm80) forward and
# backward cases, then the SASS of the sm90 default kernels (cuobjdump: HGMMA, no HMMA, TMA loads).
# Logs and SASS in $OUT.
set -uo pipefail
export OUT=${OUT:-$PWD/.out} && mkdir -p "$OUT"
cd "$(dirname "$0")/../.." || exit 1
run=scripts/device_run.sh
$run build || exit 1
$run sanitize 'Matrix/ForwardMatrixSm90.*dense_d64_bf16_*q200*:Matrix/ForwardMatrixSm90.*varlen_d128_fp16_causal*:Matrix/ForwardMatrix.*padded_d64_bf16_causal*:Matrix/BackwardMatrix.*dense_d64_bf16_causal*' 170
[ "${DRY_RUN:-0}" = 1 ] && exit 0  # the SASS step below reads what compile wrote
echo "=== $(date +%T) SASS of the sm90 defaults (cuobjdump)"
for hd in 64 128 256; do
  $run sigjit compile --head-dim $hd --arch sm_90a --out "$OUT/sass_hd$hd" >/dev/null
  cubin=$(ls "$OUT/sass_hd$hd"/*.cubin | head -1)
  cuobjdump --dump-sass "$cubin" >"$OUT/sass_hd$hd.txt" 2>&1
  echo "hd $hd: HGMMA $(grep -c HGMMA "$OUT/sass_hd$hd.txt"), HMMA $(grep -c 'HMMA\.' "$OUT/sass_hd$hd.txt"), UTMALDG $(grep -c UTMALDG "$OUT/sass_hd$hd.txt")"
done

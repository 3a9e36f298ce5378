#!/usr/bin/env bash
# Issue 22's first device step: the rates bench/MODEL-fp8.md's time model rests on (wgmma e4m3 and
# bf16, MUFU tanh and ex2, the e4m3x2 conversion, FFMA, the FMA-only sigmoid), per SM per clock,
# from bench/fp8_rates.cu. Log in $OUT/fp8_rates.log. About 20 s with the build.
set -uo pipefail
export OUT=${OUT:-$PWD/.out} && mkdir -p "$OUT"
cd "$(dirname "$0")/../.." || exit 1
if [ "${DRY_RUN:-0}" = 1 ]; then
  echo "dry-run: nvcc -gencode=arch=compute_90a,code=sm_90a bench/fp8_rates.cu, then run it under nvidia-smi's clocks"
  exit 0
fi
nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -I templates bench/fp8_rates.cu -o "$OUT/fp8_rates.bin" || exit 1
{ nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader; "$OUT/fp8_rates.bin"; } 2>&1 | tee "$OUT/fp8_rates.log"
# Which MUFU instructions each unit became (a packed PTX op may be split into scalar ones).
if command -v cuobjdump >/dev/null; then
  cuobjdump -sass "$OUT/fp8_rates.bin" | grep -E 'Function|MUFU' | sed 's/^ *//' | awk '/Function/ {f=$0; n=0} /MUFU/ && n < 4 {print f " :: " $0; n++}' | tee -a "$OUT/fp8_rates.log"
fi
rm -f "$OUT/fp8_rates.bin"

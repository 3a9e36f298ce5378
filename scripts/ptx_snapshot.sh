#!/usr/bin/env bash
# Compiles a fixed, representative set of kernels (every family, direction and feature, defaults
# and tuner variants) with a given `sigjit` binary and keeps their .cu and .ptx under OUTDIR, so
# that a refactoring can show it left the generated code byte-identical:
#   scripts/ptx_snapshot.sh old/sigjit /tmp/ptx-old; scripts/ptx_snapshot.sh build/sigjit /tmp/ptx-new
#   diff -r -x report.txt /tmp/ptx-old /tmp/ptx-new   (report.txt: paths and compile times)
# No GPU needed (NVRTC only). About one to two minutes per core.
set -euo pipefail
(($# == 2)) || { echo "usage: $0 SIGJIT_BINARY OUTDIR" >&2; exit 2; }
bin=$1 out=$2
mkdir -p "$out"
cases=(
  "fwd90_hd64:--arch sm_90a --head-dim 64"
  "fwd90_hd128:--arch sm_90a --head-dim 128"
  "fwd90_hd256:--arch sm_90a --head-dim 256"
  "fwd90_hd128_padded_causal:--arch sm_90a --head-dim 128 --layout padded --causal"
  "fwd90_hd128_varlen_sb_exact:--arch sm_90a --head-dim 128 --layout varlen --score-bias --sigmoid exact --bias scalar"
  "fwd90_hd64_topleft:--arch sm_90a --head-dim 64 --causal --causal-align top-left --dtype fp16"
  "fwd90_pp_f1_p:--arch sm_90a --head-dim 128 --tile h128x128c2s2o_pp_f1_p"
  "fwd90_c3:--arch sm_90a --head-dim 64 --tile h192x128c3s2"
  "fwd90_pp:--arch sm_90a --head-dim 128 --layout padded --tile h128x96c2s3o_pp"
  "bwd90_hd64:--arch sm_90a --head-dim 64 --direction bwd_fused"
  "bwd90_hd128:--arch sm_90a --head-dim 128 --direction bwd_fused --layout varlen --causal"
  "bwd90_atomic:--arch sm_90a --head-dim 128 --direction bwd_fused --tile hb128x64c2s2o"
  "bwd90_topleft:--arch sm_90a --head-dim 128 --direction bwd_fused --causal --causal-align top-left"
  "dqconv90:--arch sm_90a --head-dim 128 --direction bwd_dq_convert"
  "fwd80_hd32:--arch sm_80 --head-dim 32"
  "fwd80_hd64_causal:--arch sm_80 --head-dim 64 --causal"
  "fwd80_hd96:--arch sm_80 --head-dim 96 --dtype fp16"
  "fwd80_hd128_sb_exact:--arch sm_80 --head-dim 128 --score-bias --sigmoid exact"
  "fwd80_hd256:--arch sm_80 --head-dim 256 --layout varlen"
  "fwd80_qs:--arch sm_80 --head-dim 128 --tile m128n64w8s3qs"
  "fwd86_hd128:--arch sm_86 --head-dim 128 --layout padded"
  "fwd90_sm80family:--arch sm_90 --head-dim 128"
  "bwd80_fused:--arch sm_80 --head-dim 128 --direction bwd_fused"
  "bwd80_dkdv:--arch sm_80 --head-dim 64 --direction bwd_dkdv --layout padded"
  "bwd80_dq:--arch sm_80 --head-dim 128 --direction bwd_dq --causal --causal-align top-left"
  "dqconv80:--arch sm_80 --head-dim 64 --direction bwd_dq_convert --layout varlen"
)
for c in "${cases[@]}"; do
  name=${c%%:*} args=${c#*:}
  dir=$out/$name
  rm -rf "$dir" && mkdir -p "$dir"
  # shellcheck disable=SC2086  # args are words by design
  "$bin" compile $args --out "$dir" >"$dir/report.txt" 2>&1 || { echo "FAILED: $name ($args)"; cat "$dir/report.txt"; exit 1; }
  rm -f "$dir"/*.cubin  # the cubin embeds nothing PTX does not; keep the snapshot small
  echo "$name"
done

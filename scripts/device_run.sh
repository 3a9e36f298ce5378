#!/usr/bin/env bash
# One call on the GPU machine: build, run every GPU test, then benchmark sigjit and TritonSigmoid
# in the same process tree. Logs and CSVs go to $OUT (the device tool returns that folder).
#   scripts/device_run.sh [wheel|quick|grid|sweep|final|tune|hopper|hopperfinal|short|hd64|order|causal|sanitize|python|backward|bwdgrid]   (default quick)
#     wheel: the pip wheel (build/dist, carried) installed and tested on the GPU, C++ top-left
#            causal cases, bench/first_call.py (issue 17)
#     quick: GPU tests + benchmark fwd and bwd at L 4096/16384, hd 64/128, dense
#     grid:  GPU tests + TritonSigmoid's full forward grid (0/25/50 % padding) + causal + varlen
#     sweep: tile-config sweep at the grid's key points (no tests)
#     final: GPU tests + sigjit's full forward grid (+ causal, varlen) + TritonSigmoid at the
#            anchor points of shared/anchors-h100.md (fits one ~7-minute call)
#     tune:  `sigjit tune --preset single-cell --direction fwd` (TUNE_DIRECTIONS) into an empty cache,
#            timed, then `sigjit verify --gpu`
#     hopper: the sm90 default's matrix and every sm90 tunable's (under timeouts), then a sweep of
#            stages, key tiles, ping-pong and persistent scheduling next to TritonSigmoid
#     hopperfinal: the sm90 defaults' matrix, compute-sanitizer (memcheck, racecheck, synccheck)
#            on small sm90 cases, sigjit's and TritonSigmoid's forward grids (under a deadline)
#     short: L 512-2048: the pp/c3p variants' matrix (+ the defaults' unless SKIP_MATRIX=1,
#            compute-sanitizer with SANITIZE=1), the persistent defaults against the long-sequence
#            tiles in one binary, the GEMM ceiling, TritonSigmoid
#     hd64: an A/B of the defaults against BASELINE_TREE (when carried), a sweep of three
#            consumer warpgroups (c3) and 192-key tiles (w192) next to TritonSigmoid, their matrix,
#            an ncu profile of the hd 64 default, persistent tiles at 25 % padding (L 512-2048)
#     order: the persistent schedule's tile order: the persistent variants' and the defaults' matrix,
#            the defaults at L 512-2048 in this tree and BASELINE_TREE, hd 128 causal _p, TritonSigmoid
#     causal: the persistent causal order and defaults: the persistent variants' and the defaults'
#            matrix, compute-sanitizer on small persistent causal cases, the causal defaults against
#            one CTA per tile at L 512-16384 (and BASELINE_TREE's), TritonSigmoid causal
#     sanitize: compute-sanitizer memcheck, racecheck and synccheck over small sm90 (and sm80)
#            forward and backward cases; cuobjdump SASS of the sm90 default kernels (HGMMA, no HMMA)
#     python: the PyTorch binding's GPU tests, bench/compare.py (--quick unless COMPARE_FULL=1)
#            and bench/first_call.py (no C++ GPU tests)
#     bwdgrid: the default backward's matrix on this device, then sigjit's and TritonSigmoid's
#            backward grids (+ the deterministic mode) in one call, for RESULTS-backward.md
#     backward: the sm90 backward's bulk-dQ (_r) matrix under a timeout, a small backward tune
#            (every candidate checked against the baseline), sigjit's backward grid, compare.py's
#            backward points next to TritonSigmoid, a profile of the binding's first call, and
#            first_call.py's ragged batch (no other tests)
# GTEST_FILTER in the environment narrows the GPU tests (gtest reads it); GPU_TESTS_TIMEOUT_S caps
# them so that the benchmark after them still runs; the whole GPU suite no
# longer fits one 10-minute call, so split it with gtest's own sharding: GTEST_TOTAL_SHARDS=3
# GTEST_SHARD_INDEX=0 (then 1, 2), one call each.
# The sm90 fused backward (gated by kSm90BackwardVerified) first, under a timeout (a barrier bug
# hangs): FIRST_FILTER='Matrix/BackwardMatrixSm90.*' FIRST_TIMEOUT_S=300 GTEST_FILTER='Matrix/BackwardMatrixSm90.*' bash scripts/device_run.sh quick
# Needs, carried from the dev machine: .deps (headers the image lacks: scripts/fetch_device_deps.sh)
# and .whl (the triton-sigmoid wheel).
set -uo pipefail
mode=${1:-quick}
OUT=${OUT:-$PWD/.out}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
step() { echo "=== $(date +%T) $*"; }
# GPU tests under a time limit (a barrier or phase bug hangs rather than fails): gpu_tests SECONDS
# FILTER LOG LABEL
gpu_tests() {
  timeout "$1" ./build-dev/tests/sigjit_gpu_tests --gtest_brief=1 --gtest_filter="$2" >"$OUT/$3" 2>&1
  echo "$4 exit code $? (124: timed out, a hang)"; grep -E "FAILED|Failure|tests from.*total|PASSED" "$OUT/$3" | head -10
}
# compute-sanitizer's memcheck, racecheck and synccheck over the GPU tests FILTER: sanitize SECONDS FILTER
sanitize() {
  for tool in ${SANITIZE_TOOLS:-memcheck racecheck synccheck}; do
    step "compute-sanitizer --tool $tool"
    timeout "$1" compute-sanitizer --tool "$tool" --error-exitcode 99 ./build-dev/tests/sigjit_gpu_tests --gtest_brief=1 --gtest_filter="$2" >"$OUT/sanitize_$tool.log" 2>&1
    echo "$tool exit code $? (99: the tool found errors, 124: timed out)"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|FAILED|PASSED" "$OUT/sanitize_$tool.log" | head -5
  done
}
new_csv() {
  csv="$OUT/bench.csv"
  echo "impl,device,hd,L,pad,layout,causal,tile,dir,ms,min_ms,max_ms,tflops" >"$csv"
}

step "environment"
{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv; nvcc --version | tail -2; cmake --version | head -1; python3 -c "import torch, triton; print(\"torch\", torch.__version__, \"triton\", triton.__version__)"; python3 -c "import matplotlib; print(\"matplotlib\", matplotlib.__version__)" || echo "matplotlib: not installed"; } 2>&1 | tee "$OUT/env.txt"

ssl=()
if [ ! -f /usr/include/openssl/evp.h ]; then  # headers carried in .deps, the image's own libcrypto
  ssl=(-DOPENSSL_INCLUDE_DIR="$PWD/.deps/usr/include" -DOPENSSL_CRYPTO_LIBRARY="$(ls /usr/lib/x86_64-linux-gnu/libcrypto.so* | head -1)")
fi
build_dev() {
  step "build"
  cmake -S . -B build-dev -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$PWD/.deps/usr" "${ssl[@]}" >"$OUT/build.log" 2>&1 &&
    ninja -C build-dev sigjit_cli sigjit_gpu_tests sigjit_bench sigjit_shared sigjit_abi_dump >>"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }  # not the CPU tests: CI runs those
}
[ "$mode" = wheel ] && [ "${CPP:-1}" = 0 ] || build_dev  # the wheel mode needs a build only for its C++ tests

if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl >/dev/null 2>&1 && export PYTHONPATH=/tmp/site
fi

# BASELINE_TREE: an older export (scripts/device_snapshot.sh into another folder, carried) built
# into build-baseline for an A/B in one call.
build_baseline() {
  if [ -n "${BASELINE_TREE:-}" ] && [ -d "$BASELINE_TREE" ]; then
    step "build the baseline tree"
    { cmake -S "$BASELINE_TREE" -B build-baseline -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$PWD/.deps/usr" "${ssl[@]}" &&
      ninja -C build-baseline sigjit_bench; } >"$OUT/build_baseline.log" 2>&1 || tail -5 "$OUT/build_baseline.log"
  fi
}

# The persistent variants' matrix (VARIANT_FILTER narrows it) and the defaults' (MATRIX=0 skips
# it), each under its timeout.
persistent_matrices() {
  local v='Variants/ForwardSm90Tunables.MatchesFp64Reference'
  gpu_tests ${VARIANTS_TIMEOUT_S:-150} "${VARIANT_FILTER:-$v/p_*:$v/ppp_*:$v/pno_*:$v/c3p_*}" persistent_variants.log "persistent variants"
  if [ "${MATRIX:-1}" = 1 ]; then
    gpu_tests ${MATRIX_TIMEOUT_S:-130} '*/ForwardMatrixSm90.*' sm90_matrix.log "sm90 default matrix"
    grep -E "^\[case\]" "$OUT/sm90_matrix.log" | awk '{print $3}' | sed 's/rel_error=//' | sort -g | tail -1 | sed 's/^/worst rel_error: /'
  fi
}

if [ "$mode" = wheel ]; then
  # The pip package on the GPU (issue 17): the wheel built on the dev machine (build/dist,
  # carried: `pip wheel . -w build/dist`), installed into a fresh target with nothing of the
  # build tree on the path; its NVRTC is the image's toolkit (the NVIDIA NVRTC wheel is 90 MB,
  # over the carry limit; CI tests that route). Then the binding's GPU tests from the installed
  # package (TritonSigmoid's calls pasted unchanged against its kernels, CUDA graphs,
  # torch.compile), the C++ top-left causal cases, and bench/first_call.py.
  site=/tmp/sigjit-wheel
  step "install $(ls build/dist/sigjit-*.whl 2>/dev/null | head -1) into $site"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target $site build/dist/sigjit-*.whl || exit 1
  tests=$(mktemp -d) && cp tests/python/test_torch_gpu.py tests/python/test_binding_cpu.py "$tests"/
  export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
  (cd "$tests" && python3 -c "import sigjit, sys; print('sigjit', sigjit.__version__, sigjit.library_path(), sigjit.version())") 2>&1 | tee -a "$OUT/env.txt"
  if [ "${PYTHON:-1}" = 1 ]; then
    step "binding GPU tests from the installed wheel"
    (cd "$tests" && timeout ${PYTHON_TIMEOUT_S:-330} python3 -m unittest -v ${PYTHON_TESTS:-test_torch_gpu test_binding_cpu}) >"$OUT/python_wheel.log" 2>&1
    echo "python tests exit code $?"; grep -E "^(OK|FAILED)|(ERROR|FAIL): |skipped '" "$OUT/python_wheel.log" | head -30
    grep -E "^\[case\] (drop-in|cuda graph|vs TritonSigmoid)" "$OUT/python_wheel.log" | head -60
  fi
  if [ "${CPP:-1}" = 1 ]; then
    step "C++ GPU tests: top-left causal"
    gpu_tests ${TOPLEFT_TIMEOUT_S:-120} "${TOPLEFT_FILTER:-*TopLeft*:*top_left*}" topleft.log "top-left causal"
  fi
  if [ "${FIRST_CALL:-1}" = 1 ]; then
    step "first call: sigjit (installed wheel) and TritonSigmoid, fresh processes, cold and warm cache"
    timeout ${FIRST_CALL_TIMEOUT_S:-240} python3 bench/first_call.py --out "$OUT" --only first ${FIRST_CALL_ARGS:-} 2>&1 | tee "$OUT/first_call.log"
  fi
  exit 0
fi

if [ "$mode" = order ]; then
  # The persistent schedule's tile order (templates/sigjit/sm90_tile_schedule.h) and the short-
  # sequence defaults built on it: the persistent variants' matrix and the defaults' (MATRIX=0
  # skips it), then the defaults at L 512-2048 in this tree and BASELINE_TREE (when carried), twice,
  # each tree with its own kernel cache (see hd64); hd 128 causal with and without _p;
  # TritonSigmoid in the same call (TRITON=0 skips it).
  build_baseline
  persistent_matrices
  new_csv
  step "A/B: the defaults at L 512-2048, this tree then the baseline, twice"
  for round in 1 2; do
    for b in build-dev build-baseline; do
      [ -x "$b/bench/sigjit-bench" ] || continue
      [ $b = build-dev ] && out=$csv || out=$OUT/baseline.csv
      SIGJIT_CACHE_DIR=/tmp/sigjit-order-$b timeout 90 ./$b/bench/sigjit-bench --seq ${ORDER_SEQ:-512,1024,2048} --pad 0,25,50 --csv "$out" |
        tail -n +3 | sed "s/^/$b $round /"
    done
  done
  step "hd 128 causal: one CTA per tile against persistent (longest rows first)"
  timeout 40 ./build-dev/bench/sigjit-bench --head-dim 128 --seq ${ORDER_SEQ:-512,1024,2048} --pad 0 --causal --csv "$OUT/causal.csv" \
    --tiles 'h128x128c2s3o;h128x128c2s3o_p' | tail -n +3
  if [ "${TRITON:-1}" = 1 ]; then
    timeout ${TRITON_TIMEOUT_S:-150} python3 bench/triton_bench.py --seq ${ORDER_SEQ:-512,1024,2048} --pad 0,25,50 --csv "$csv" 2>&1 | grep -v Warning | tail -2
  fi
  python3 bench/summarize.py "$csv" >"$OUT/summary.md"; grep -E "^\| (64|128) \|" "$OUT/summary.md" | head -40
  exit 0
fi

if [ "$mode" = causal ]; then
  # The persistent causal order (units of a query tile and its mirror, sm90_tile_schedule.h) and
  # the causal defaults built on it: the persistent variants' matrix and the defaults' (MATRIX=0
  # skips it), compute-sanitizer on small persistent causal cases (odd and even query tile
  # counts, ragged), then causal hd 64 and hd 128: the defaults against one CTA per tile and
  # persistent forced, at L 512-4096 (dense and 25 % padded) and 8192-16384 (dense); with
  # BASELINE_TREE carried, its defaults too (its own kernel cache); TritonSigmoid causal at the
  # grid's points (TRITON=0 skips it).
  build_baseline
  persistent_matrices
  v='Variants/ForwardSm90Tunables.MatchesFp64Reference'
  sanitize ${SANITIZE_TIMEOUT_S:-40} "$v/p_dense_d128_bf16_causal_logn_exact_q*:$v/c3p_dense_d64_bf16_causal_logn_exact_q*:$v/p_varlen_d128_bf16_causal_logn_exact_q1_17*"
  new_csv
  seqs=${CAUSAL_SEQ:-512,1024,2048,4096}
  step "causal: the defaults, one CTA per tile, persistent forced"
  for b in build-dev build-baseline; do
    [ -x "$b/bench/sigjit-bench" ] || continue
    [ $b = build-dev ] && out=$csv || out=$OUT/baseline.csv
    SIGJIT_CACHE_DIR=/tmp/sigjit-causal-$b timeout 60 ./$b/bench/sigjit-bench --head-dim 64,128 --seq $seqs --pad 0,25 --causal --csv "$out" | tail -n +3 | sed "s/^/$b /"
  done
  export SIGJIT_CACHE_DIR=/tmp/sigjit-causal-build-dev
  [ "${FORCED_64:-1}" = 1 ] && timeout 60 ./build-dev/bench/sigjit-bench --head-dim 64 --seq $seqs --pad 0,25 --causal --csv "$csv" --tiles 'h192x128c3s2' | tail -n +3
  timeout 60 ./build-dev/bench/sigjit-bench --head-dim 128 --seq $seqs --pad 0,25 --causal --csv "$csv" --tiles "${FORCED_128:-h128x128c2s3o}" | tail -n +3
  if [ "${LONG:-1}" = 1 ]; then
    timeout 30 ./build-dev/bench/sigjit-bench --head-dim 128 --seq 512 --pad 25 --causal --csv "$csv" --tiles 'h128x128c2s3o_p' | tail -n +3
    timeout 60 ./build-dev/bench/sigjit-bench --head-dim 64 --seq 8192,16384 --pad 0 --causal --csv "$csv" --tiles 'h192x128c3s2;h192x128c3s2_p' | tail -n +3
    timeout 60 ./build-dev/bench/sigjit-bench --head-dim 128 --seq 8192,16384 --pad 0 --causal --csv "$csv" --tiles 'h128x128c2s3o;h128x128c2s3o_p' | tail -n +3
  fi
  unset SIGJIT_CACHE_DIR
  if [ "${TRITON:-1}" = 1 ]; then
    timeout ${TRITON_TIMEOUT_S:-80} python3 bench/triton_bench.py --seq 4096,16384 --pad 0 --causal --csv "$csv" 2>&1 | grep -v Warning | tail -4
    timeout 40 python3 bench/triton_bench.py --head-dim 128 --seq 1024,2048 --pad 0 --causal --csv "$csv" 2>&1 | grep -v Warning | tail -2
  fi
  python3 bench/summarize.py "$csv" >"$OUT/summary.md"; grep -E "^\| (64|128) \|" "$OUT/summary.md" | head -40
  exit 0
fi

if [ "$mode" = tune ]; then
  step "tune the single-cell preset into an empty cache"
  export SIGJIT_CACHE_DIR=/tmp/sigjit-preset-cache
  rm -rf "$SIGJIT_CACHE_DIR"
  start=$(date +%s)
  timeout "${TUNE_TIMEOUT_S:-480}" ./build-dev/sigjit tune --preset single-cell --direction "${TUNE_DIRECTIONS:-fwd}" >"$OUT/tune_preset.log" 2>&1
  echo "tune exit code $? after $(($(date +%s) - start)) s" | tee -a "$OUT/tune_preset.log"
  tail -30 "$OUT/tune_preset.log"
  ./build-dev/sigjit list >"$OUT/tune_list.txt" 2>&1; echo "entries: $(($(wc -l <"$OUT/tune_list.txt") - 1))"
  step "verify --gpu"
  ./build-dev/sigjit verify --gpu 2>&1 | tee "$OUT/tune_verify.log" | tail -8
  exit 0
fi

if [ "$mode" = hopper ]; then
  step "GPU tests: the sm90 default's matrix (hang probe), then every sm90 tunable"
  gpu_tests 200 '*/ForwardMatrixSm90.*:Shapes/HopperPrimitives.*' sm90_matrix.log "sm90 default matrix"
  gpu_tests 200 'Variants/ForwardSm90Tunables.*' sm90_tunables.log "sm90 tunables"
  new_csv
  step "tile sweep (stages, key tile, ping-pong, persistent)"
  timeout 100 ./build-dev/bench/sigjit-bench --head-dim 128 --seq 4096,16384 --pad 0 --csv "$csv" \
    --tiles 'h128x128c2s2o;h128x128c2s3o;h128x128c2s2o_pp;h128x128c2s3o_pp;h128x96c2s2o_pp;h128x96c2s3o_pp;h128x64c2s3o_pp;h128x96c2s3o_pp_p;h128x96c2s3_pp'
  timeout 80 ./build-dev/bench/sigjit-bench --head-dim 64 --seq 4096,16384 --pad 0 --csv "$csv" \
    --tiles 'h128x128c2s3o;h128x128c2s2o_pp;h128x128c2s3o_pp;h128x128c2s4o_pp;h128x96c2s3o_pp;h128x64c2s4o_pp;h128x128c2s3o_pp_p'
  timeout 30 ./build-dev/bench/sigjit-bench --head-dim 64,128 --seq 512,1024 --pad 0,50 --csv "$csv"
  timeout 50 ./build-dev/bench/sigjit-bench --head-dim 64,128 --seq 512,1024 --pad 0,50 --csv "$csv" --tiles 'h128x96c2s3o_pp_p;h128x128c2s3o_pp_p'
  python3 bench/triton_bench.py --seq 512,1024,4096,16384 --pad 0,50 --csv "$csv" 2>&1 | grep -v Warning
  exit 0
fi

if [ "$mode" = hopperfinal ]; then
  # Fits one 10-minute call: every step has a limit, TritonSigmoid's grid gets what is left.
  deadline=$(($(date +%s) + ${FINAL_BUDGET_S:-470}))
  left() { local l=$((deadline - $(date +%s) - ${1:-0})); echo $((l > 10 ? l : 10)); }
  step "GPU tests: the sm90 defaults' matrix"
  gpu_tests ${MATRIX_TIMEOUT_S:-150} '*/ForwardMatrixSm90.*' sm90_matrix.log "sm90 default matrix"
  m='Matrix/ForwardMatrixSm90.MatchesFp64Reference'
  small="$m/dense_d64_bf16_causal_logn_sb_gqa_exact_q200_200_k200_200_strided:$m/padded_d64_bf16_full_logn_exact_q1_17_200_1000_k1_30_200_777"
  small="$small:$m/varlen_d128_fp16_causal_logn_exact_q1_17_200_1000_k1_30_200_777:Variants/ForwardSm90Tunables.MatchesFp64Reference/c3p_varlen_d64_bf16_causal_logn_exact_q1_17*"
  small="$small:$m/dense_d128_bf16_full_logn_gqa_exact_q200_200_k333_333_strided"
  # small sm90 cases: hd 64's persistent three-warpgroup defaults (with and without score bias),
  # hd 128 causal varlen, persistent c3, hd 128's persistent short-sequence default (GQA)
  sanitize ${SANITIZE_TIMEOUT_S:-40} "$small"
  new_csv
  step "benchmark: sigjit's and TritonSigmoid's forward grid (+ causal, varlen)"
  hds=${GRID_HEAD_DIMS:-64,128}  # a shorter call: GRID_HEAD_DIMS=64
  timeout 120 ./build-dev/bench/sigjit-bench --head-dim "$hds" --csv "$csv"
  timeout 30 ./build-dev/bench/sigjit-bench --seq 4096,16384 --pad 0 --causal --csv "$csv" | tail -n +3
  timeout 30 ./build-dev/bench/sigjit-bench --seq 4096,16384 --pad 25 --layout varlen --csv "$csv" | tail -n +3
  timeout 40 python3 bench/matmul_ceiling.py --csv "$csv"  # RESULTS.md's ceiling column
  # TritonSigmoid before the swept tiles: on the H200 (call 12) its grid did not finish when it
  # came last, and the ratios matter more than the sweep.
  timeout "$(left 75)" python3 bench/triton_bench.py --head-dim "$hds" --csv "$csv" 2>&1 | grep -v Warning | tail -4
  timeout "$(left 50)" python3 bench/triton_bench.py --seq 4096,16384 --pad 0 --causal --csv "$csv" 2>&1 | grep -v Warning | tail -2
  timeout "$(left 25)" ./build-dev/bench/sigjit-bench --head-dim 64 --seq 4096,16384 --pad 0 --csv "$csv" --tiles 'h192x96c3s3;h192x128c3s3;h128x128c2s2o_pp' | tail -n +3
  timeout "$(left)" ./build-dev/bench/sigjit-bench --head-dim 64 --seq 512,1024,2048 --pad 0,25 --csv "$csv" --tiles 'h128x128c2s2o_pp;h128x128c2s3o' | tail -n +3
  python3 bench/summarize.py "$csv" --results "$OUT/RESULTS.md" --env "$OUT/env.txt" --command "bash scripts/device_run.sh $mode" >/dev/null
  python3 bench/summarize.py "$csv" >"$OUT/summary.md"; grep -E "^\| (64|128) \|" "$OUT/summary.md" | head -60
  exit 0
fi

if [ "$mode" = short ]; then
  # Short sequences (L 512-2048) in one call: the matrix of the ping-pong and persistent c3
  # variants (the defaults' matrix too unless SKIP_MATRIX=1), compute-sanitizer on small cases
  # (SANITIZE=1), then in one binary the defaults (persistent there: sm90_persistent_pays) against
  # the long-sequence tiles forced, TritonSigmoid and the GEMM ceiling in the same call.
  if [ "${SKIP_MATRIX:-0}" != 1 ]; then
    step "GPU tests: the sm90 defaults' matrix (with the Edges lengths)"
    gpu_tests ${MATRIX_TIMEOUT_S:-130} '*/ForwardMatrixSm90.*' sm90_matrix.log "sm90 default matrix"
    grep -E "^\[case\]" "$OUT/sm90_matrix.log" | awk '{print $3}' | sed 's/rel_error=//' | sort -g | tail -1 | sed 's/^/worst rel_error: /'
  fi
  step "GPU tests: ping-pong and persistent c3 variants"
  gpu_tests ${VARIANTS_TIMEOUT_S:-150} 'Variants/ForwardSm90Tunables.*/pp_*:Variants/ForwardSm90Tunables.*/c3p_*' sm90_variants.log "pp and c3p variants"
  grep -cE "^\[       OK \]" "$OUT/sm90_variants.log" | sed 's/^/variant cases passed: /'; tail -3 "$OUT/sm90_variants.log"
  if [ "${SANITIZE:-0}" = 1 ]; then
    m='Matrix/ForwardMatrixSm90.MatchesFp64Reference'
    small="$m/dense_d64_bf16_causal_logn_sb_gqa_exact_q200_200_k200_200_strided:$m/padded_d64_bf16_full_logn_exact_q1_17_200_1000_k1_30_200_777"
    sanitize 40 "$small:$m/varlen_d128_fp16_causal_logn_exact_q1_17_200_1000_k1_30_200_777"
  fi
  new_csv
  step "benchmark: the defaults and the long-sequence tiles at L 512-2048, the GEMM ceiling, TritonSigmoid"
  timeout 90 ./build-dev/bench/sigjit-bench --seq 512,1024,2048 --pad 0,25,50 --csv "$csv" | tail -n +3
  timeout 30 ./build-dev/bench/sigjit-bench --seq 512,1024,2048 --pad 0 --causal --csv "$csv" | tail -n +3
  timeout 50 ./build-dev/bench/sigjit-bench --head-dim 64 --seq 512,1024,2048 --pad 0,25 --csv "$OUT/forced.csv" --tiles 'h192x128c3s2;h192x128c3s2_p' | tail -n +3
  timeout 40 ./build-dev/bench/sigjit-bench --head-dim 128 --seq 512,1024,2048 --pad 25 --csv "$OUT/forced.csv" --tiles 'h128x128c2s3o;h128x96c2s3o_p' | tail -n +3
  timeout 40 python3 bench/matmul_ceiling.py --csv "$csv"
  timeout ${TRITON_TIMEOUT_S:-150} python3 bench/triton_bench.py --seq 512,1024,2048 --pad 0,25,50 --head-dim "${TRITON_HEAD_DIMS:-64,128}" --csv "$csv" 2>&1 | grep -v Warning | tail -2
  python3 bench/summarize.py "$csv" >"$OUT/summary.md"; grep -E "^\| (64|128) \||ceiling" "$OUT/summary.md" | head -40
  exit 0
fi

if [ "$mode" = hd64 ]; then
  # BASELINE_TREE: an older export (scripts/device_snapshot.sh into another folder, carried) whose
  # sigjit-bench runs the same default points right after this tree's, for an A/B in one call.
  # Each tree gets its own kernel cache: with identical templates the two share a fingerprint,
  # and one tree's stored entries would serve the other (2026-12-03: an A/B that measured nothing).
  build_baseline
  new_csv
  if [ -x build-baseline/bench/sigjit-bench ]; then
    step "A/B: the defaults, this tree then the baseline, twice"
    for round in 1 2; do
      for b in build-dev build-baseline; do
        SIGJIT_CACHE_DIR=/tmp/sigjit-ab-$b timeout 40 ./$b/bench/sigjit-bench --seq 4096,16384 --pad 0 --csv "$OUT/ab_$b.csv" | tail -n +3 | sed "s/^/$b $round /"
      done
    done
  fi
  step "sweep: hd 64 dense (c3, 192-key tiles, the default)"
  timeout 100 ./build-dev/bench/sigjit-bench --head-dim 64 --seq 4096,16384 --pad 0 --csv "$csv" \
    --tiles 'h128x128c2s2o_pp;h128x192c2s2o_pp;h128x192c2s3o_pp;h128x192c2s2o;h192x128c3s2o;h192x128c3s3o;h192x96c3s2o;h192x96c3s3o;h192x128c3s2;h192x64c3s3o'
  timeout 40 ./build-dev/bench/sigjit-bench --head-dim 128 --seq 4096,16384 --pad 0 --csv "$csv" --tiles 'h128x128c2s3o;h192x64c3s2o;h192x64c3s3o;h192x64c3s4o'
  timeout 60 python3 bench/triton_bench.py --seq 2048,4096,16384 --pad 0 --csv "$csv" 2>&1 | grep -v Warning | tail -3
  step "GPU tests: three consumer warpgroups (c3, c3p) and 192-key tiles (w192)"
  gpu_tests 120 'Variants/ForwardSm90Tunables.*/c3*:Variants/ForwardSm90Tunables.*/w192_*' sm90_c3_w192.log "c3, c3p and w192 matrix"
  step "ncu: the hd 64 default at L 16384 (one launch)"
  timeout 90 ncu --clock-control none --kernel-name regex:sigjit_fwd --launch-skip 1 --launch-count 1 --set full -o "$OUT/ncu_hd64" \
    ./build-dev/bench/sigjit-bench --head-dim 64 --seq 16384 --pad 0 --warmup 1 --reps 1 >"$OUT/ncu_hd64_run.log" 2>&1
  echo "ncu exit code $?"
  ncu --import "$OUT/ncu_hd64.ncu-rep" --page details --print-details all >"$OUT/ncu_hd64_details.txt" 2>&1
  ncu --import "$OUT/ncu_hd64.ncu-rep" --page raw >"$OUT/ncu_hd64_raw.txt" 2>&1
  grep -E "pipe_(tensor|xu|fma|alu|fp16|uniform|shared).*pct_of_peak_sustained_active |issue_active.avg.pct|inst_executed_pipe_xu.sum |smsp__inst_executed.sum " "$OUT/ncu_hd64_raw.txt" | head -30
  step "sweep: 25 % padding at L 512-2048 (persistent, one and three consumers)"
  timeout 60 ./build-dev/bench/sigjit-bench --seq 512,1024,2048 --pad 25 --csv "$csv" \
    --tiles 'default;h128x128c2s2o_p;h64x128c1s2o_p;h64x64c1s3o_p;h192x96c3s2o_p'
  timeout 20 ./build-dev/bench/sigjit-bench --seq 512,1024,2048 --pad 0 --csv "$csv" | tail -n +3
  timeout 80 python3 bench/triton_bench.py --seq 512,1024,2048 --pad 0,25 --csv "$csv" 2>&1 | grep -v Warning | tail -3
  python3 bench/summarize.py "$csv" >"$OUT/summary.md"
  exit 0
fi

if [ "$mode" = sanitize ]; then
  small='Matrix/ForwardMatrixSm90.*dense_d64_bf16_*q200*:Matrix/ForwardMatrixSm90.*varlen_d128_fp16_causal*:Matrix/ForwardMatrix.*padded_d64_bf16_causal*:Matrix/BackwardMatrix.*dense_d64_bf16_causal*'
  sanitize 170 "$small"
  step "SASS of the sm90 defaults (cuobjdump)"
  for hd in 64 128 256; do
    ./build-dev/sigjit compile --head-dim $hd --arch sm_90a --out "$OUT/sass_hd$hd" >/dev/null
    cubin=$(ls "$OUT/sass_hd$hd"/*.cubin | head -1)
    cuobjdump --dump-sass "$cubin" >"$OUT/sass_hd$hd.txt" 2>&1
    echo "hd $hd: HGMMA $(grep -c HGMMA "$OUT/sass_hd$hd.txt"), HMMA $(grep -c 'HMMA\.' "$OUT/sass_hd$hd.txt"), UTMALDG $(grep -c UTMALDG "$OUT/sass_hd$hd.txt")"
  done
  exit 0
fi

if [ "$mode" = backward ]; then
  step "GPU tests: the sm90 backward with bulk dQ reductions (_r)"
  gpu_tests "${FIRST_TIMEOUT_S:-130}" 'Matrix/BackwardMatrixSm90BulkDq.*' gpu_tests_bulk_dq.log "sm90 backward (bulk dQ) matrix"
  step "backward tune (small workload, every candidate checked)"
  SIGJIT_CACHE_DIR=/tmp/sigjit-bwd-tune timeout "${TUNE_TIMEOUT_S:-100}" ./build-dev/sigjit tune --direction bwd --head-dim 64,128 --layout padded,varlen --causal --seq 2048 --seconds-per-candidate 0.2 >"$OUT/tune_bwd.log" 2>&1
  echo "tune exit code $?"; grep -E "best|rejected|tuned" "$OUT/tune_bwd.log" | tail -8
  new_csv
  step "benchmark: sigjit's backward grid"
  ./build-dev/bench/sigjit-bench --direction bwd --csv "$csv"
  ./build-dev/bench/sigjit-bench --direction bwd --deterministic --seq 4096,16384 --pad 0 --csv "$csv" | tail -n +3
  export SIGJIT_LIBRARY=$PWD/build-dev/libsigjit.so PYTHONPATH=$PWD/python:${PYTHONPATH:-}
  step "compare: backward, sigjit binding and TritonSigmoid"
  timeout 170 python3 bench/compare.py --out "$OUT" --quick --direction bwd --impl sigjit,triton-sigmoid 2>&1 | grep -v Warning | tail -14
  step "first call of the binding, profiled (cold, then warm)"
  export SIGJIT_CACHE_DIR=/tmp/sigjit-first-call SIGJIT_VERBOSE_COMPILE=1 SIGJIT_VERBOSE_CACHE=1
  for state in cold warm; do timeout 30 python3 bench/first_call.py --child sigjit --profile >"$OUT/first_call_profile_$state.txt" 2>&1; grep RESULT "$OUT/first_call_profile_$state.txt"; done
  unset SIGJIT_CACHE_DIR SIGJIT_VERBOSE_COMPILE SIGJIT_VERBOSE_CACHE
  step "ragged batch forward+backward"
  timeout 60 python3 bench/first_call.py --out "$OUT" --only ragged 2>&1 | tail -5
  step "summary"
  python3 bench/summarize.py "$csv" | tee "$OUT/summary.md"
  exit 0
fi

if [ "$mode" = bwdgrid ]; then
  step "GPU tests: the default backward (sm90, bulk dQ) on this device"
  gpu_tests "${FIRST_TIMEOUT_S:-150}" 'Matrix/BackwardMatrixSm90BulkDq.*' gpu_tests_bulk_dq.log "sm90 backward (bulk dQ) matrix"
  new_csv
  step "benchmark: sigjit's backward grid, the deterministic mode, TritonSigmoid's backward grid"
  timeout 150 ./build-dev/bench/sigjit-bench --direction bwd --csv "$csv"
  timeout 60 ./build-dev/bench/sigjit-bench --direction bwd --deterministic --seq 1024,4096,16384 --pad 0 --csv "$csv" | tail -n +3
  timeout "${TRITON_TIMEOUT_S:-240}" python3 bench/triton_bench.py --direction bwd --csv "$csv" 2>&1 | grep -v Warning | tail -3
  step "summary"
  python3 bench/summarize.py "$csv" | tee "$OUT/summary.md"
  exit 0
fi

if [ "$mode" = python ]; then
  step "python binding tests"
  bash python/run_device_tests.sh build-dev "$OUT" 2>&1 | tail -25
  step "compare: sigjit binding, TritonSigmoid, SDPA"
  export SIGJIT_LIBRARY=$PWD/build-dev/libsigjit.so PYTHONPATH=$PWD/python:${PYTHONPATH:-}
  quick=--quick
  [ "${COMPARE_FULL:-0}" = 1 ] && quick=
  python3 bench/compare.py --out "$OUT" $quick 2>&1 | grep -v Warning | tail -40
  step "first call, memory, ragged batch"
  python3 bench/first_call.py --out "$OUT" 2>&1 | tail -20
  exit 0
fi

if [ "$mode" != sweep ]; then
  step "cold compile time"
  ./build-dev/sigjit compile --head-dim 128 --arch sm_90 --layout padded | tee "$OUT/compile.txt"
  if [ -n "${FIRST_FILTER:-}" ]; then  # e.g. a new kernel family: its own process, under a timeout, so a hang cannot eat the call
    step "GPU tests first: $FIRST_FILTER"
    timeout "${FIRST_TIMEOUT_S:-150}" ./build-dev/tests/sigjit_gpu_tests --gtest_brief=1 --gtest_filter="$FIRST_FILTER" >"$OUT/gpu_tests_first.log" 2>&1
    echo "exit code $?"
    grep -E "FAILED|Failure|rror" "$OUT/gpu_tests_first.log" | head -15
  fi
  step "GPU tests"
  timeout "${GPU_TESTS_TIMEOUT_S:-0}" ./build-dev/tests/sigjit_gpu_tests --gtest_brief=1 >"$OUT/gpu_tests.log" 2>&1  # 0: no limit
  echo "gpu tests exit code $?"
  grep -E "first call with a warm cache|^tuned .* vs default" "$OUT/gpu_tests.log"
  for m in atomic deterministic; do
    grep -E "^\[bwd $m" "$OUT/gpu_tests.log" | grep -o 'rel_error=[^ ]*' | sed 's/rel_error=//' | sort -g | tail -1 | sed "s/^/worst backward ($m) rel_error: /"
  done
  grep -E "^\[case\]" "$OUT/gpu_tests.log" | awk '{print $3}' | sed 's/rel_error=//' | sort -g | tail -1 | sed 's/^/worst rel_error: /'
  grep -E "FAILED|PASSED|SKIPPED|Failure|precompiled" "$OUT/gpu_tests.log" | head -40
fi

new_csv
case "$mode" in
  quick)
    step "benchmark (quick)"
    SIGJIT_BACKWARD_PATH=fused ./build-dev/bench/sigjit-bench --direction fwd,bwd --seq "${BENCH_SEQ:-4096,16384}" --pad 0 --csv "$csv"
    ./build-dev/bench/sigjit-bench --direction bwd --deterministic --seq "${BENCH_SEQ:-4096,16384}" --pad 0 --csv "$csv" | tail -n +3
    python3 bench/triton_bench.py --direction fwd,bwd --seq "${BENCH_SEQ:-4096,16384}" --pad 0 --csv "$csv" 2>&1 | grep -v Warning
    ;;
  grid)
    step "benchmark (TritonSigmoid grid)"
    ./build-dev/bench/sigjit-bench --csv "$csv"
    ./build-dev/bench/sigjit-bench --seq 4096,16384 --pad 0 --causal --csv "$csv"
    ./build-dev/bench/sigjit-bench --seq 4096,16384 --pad 25 --layout varlen --csv "$csv" | tail -n +3
    python3 bench/triton_bench.py --csv "$csv" --sdpa 2>&1 | grep -v Warning
    python3 bench/triton_bench.py --seq 4096,16384 --pad 0 --causal --csv "$csv" 2>&1 | grep -v Warning
    ;;
  final)
    step "benchmark (sigjit grid, TritonSigmoid anchors)"
    ./build-dev/bench/sigjit-bench --reps 20 --csv "$csv"
    ./build-dev/bench/sigjit-bench --seq 4096,16384 --pad 0 --causal --reps 20 --csv "$csv" | tail -n +3
    ./build-dev/bench/sigjit-bench --seq 4096,16384 --pad 25 --layout varlen --reps 20 --csv "$csv" | tail -n +3
    python3 bench/triton_bench.py --seq 1024,4096,16384 --pad 0 --rep-ms 100 --csv "$csv" 2>&1 | grep -v Warning
    python3 bench/triton_bench.py --seq 4096,16384 --pad 25 --rep-ms 100 --csv "$csv" 2>&1 | grep -v Warning
    ;;
  sweep)
    step "tile sweep"
    ./build-dev/bench/sigjit-bench --seq 2048,16384 --pad 0 --head-dim 64 --reps 15 --csv "$csv" \
      --tiles "${SWEEP_TILES_64:-m128n128w4s2;m128n128w4s3;m128n64w4s2;m128n64w4s2qs;m128n128w8s2}"
    ./build-dev/bench/sigjit-bench --seq 2048,16384 --pad 0 --head-dim 128 --reps 15 --csv "$csv" \
      --tiles "${SWEEP_TILES_128:-m128n32w4s2;m128n32w4s2qs;m128n32w4s3qs;m128n64w4s2qs;m128n128w8s2;m128n64w8s2qs;m64n64w2s2qs}"
    python3 bench/triton_bench.py --seq 2048,16384 --pad 0 --csv "$csv" 2>&1 | grep -v Warning
    ;;
esac
step "summary"
python3 bench/summarize.py "$csv" --results "$OUT/RESULTS.md" --env "$OUT/env.txt" --command "bash scripts/device_run.sh $mode"; python3 bench/summarize.py "$csv" | tee "$OUT/summary.md"

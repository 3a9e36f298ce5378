#!/usr/bin/env bash
# The GPU machine's verbs. Each call does one thing and leaves its logs and CSVs in $OUT (the device
# tool returns that folder); the first call of a run records the machine in $OUT/env.txt.
# scripts/device/*.sh string the verbs into the runs we make: scripts/device/quick.sh builds, runs
# every GPU test and the benchmark in one call.
#
#   scripts/device_run.sh build                     configure and build build-dev (CLI, GPU tests, bench, libsigjit.so)
#   scripts/device_run.sh gpu-tests FILTER [TIMEOUT_S [LOG]]
#                                                   the GPU tests FILTER (gtest syntax; `all`: the whole suite, which
#                                                   GTEST_FILTER narrows and GTEST_TOTAL_SHARDS/GTEST_SHARD_INDEX split)
#                                                   under a time limit (default 0: none; a barrier bug hangs rather
#                                                   than fails), log $OUT/LOG (default gpu_tests.log)
#   scripts/device_run.sh sanitize FILTER [TIMEOUT_S]
#                                                   compute-sanitizer memcheck, racecheck and synccheck (SANITIZE_TOOLS)
#                                                   over the GPU tests FILTER, each under TIMEOUT_S (default 170)
#   scripts/device_run.sh bench ARGS...             build-dev's sigjit-bench ARGS, appending to $OUT/bench.csv
#   scripts/device_run.sh triton ARGS...            TritonSigmoid's benchmark (bench/triton_bench.py ARGS), same CSV
#   scripts/device_run.sh python                    the PyTorch binding's GPU tests (python/run_device_tests.sh)
#   scripts/device_run.sh pyunit TESTS [TIMEOUT_S]  the binding's GPU tests TESTS only (unittest names, e.g.
#                                                   test_torch_gpu.Fp8) under TIMEOUT_S (default 120), log in $OUT
#   scripts/device_run.sh pybench SCRIPT ARGS...    bench/SCRIPT (compare.py, first_call.py, matmul_ceiling.py, ...)
#                                                   with TritonSigmoid and the binding importable
#   scripts/device_run.sh sigjit ARGS...            build-dev's sigjit CLI, nothing added to its output
#   scripts/device_run.sh summarize [COMMAND]       $OUT/summary.md from $OUT/bench.csv; with the COMMAND that made the
#                                                   run, also $OUT/RESULTS.md (bench/summarize.py)
#
# bench and triton add `--csv $OUT/bench.csv` unless ARGS name a CSV; the first of them writes its header.
# WHEEL=1: python and pybench use the wheel build/dist/sigjit-*.whl (carried; `pip wheel . -w
# build/dist`) installed into /tmp/sigjit-wheel instead of python/ and build-dev; python then runs
# PYTHON_TESTS (default: test_torch_gpu test_binding_cpu) from a temp folder under PYTHON_TIMEOUT_S.
# DRY_RUN=1: check the arguments and print the verb instead of running it, also under a
# scripts/device/*.sh (no GPU needed: `DRY_RUN=1 bash scripts/device/quick.sh` lists its verbs).
# Needs, carried from the dev machine: .deps (headers the image lacks: scripts/fetch_device_deps.sh)
# and .whl (the triton-sigmoid wheel).
set -uo pipefail
OUT=${OUT:-$PWD/.out}
cd "$(dirname "$0")/.." || exit 1
csv=$OUT/bench.csv

usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  exit "${1:-2}"
}
step() { echo "=== $(date +%T) $*"; }

environment() {
  step "environment"
  { nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv; nvcc --version | tail -2; cmake --version | head -1; python3 -c "import torch, triton; print(\"torch\", torch.__version__, \"triton\", triton.__version__)"; python3 -c "import matplotlib; print(\"matplotlib\", matplotlib.__version__)" || echo "matplotlib: not installed"; } 2>&1 | tee "$OUT/env.txt"
}

build() {
  local ssl=()
  if [ ! -f /usr/include/openssl/evp.h ]; then  # headers carried in .deps, the image's own libcrypto
    ssl=(-DOPENSSL_INCLUDE_DIR="$PWD/.deps/usr/include" -DOPENSSL_CRYPTO_LIBRARY="$(ls /usr/lib/x86_64-linux-gnu/libcrypto.so* | head -1)")
  fi
  if [ ! -f /usr/include/hiredis/hiredis.h ]; then  # hiredis carried in .deps (scripts/fetch_device_deps.sh)
    ssl+=(-DSIGJIT_HIREDIS_LIBRARY="$(ls "$PWD"/.deps/usr/lib/*/libhiredis.so | head -1)" -DSIGJIT_HIREDIS_INCLUDE_DIR="$PWD/.deps/usr/include")
  fi
  step "build"
  cmake -S . -B build-dev -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$PWD/.deps/usr" "${ssl[@]}" >"$OUT/build.log" 2>&1 &&
    ninja -C build-dev sigjit_cli sigjit_gpu_tests sigjit_bench sigjit_shared sigjit_abi_dump >>"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; return 1; }  # not the CPU tests: CI runs those
}

# The GPU tests under a time limit: gpu_tests FILTER [SECONDS [LOG]]
gpu_tests() {
  local filter=$1 seconds=${2:-0} log=$OUT/${3:-gpu_tests.log} flag=()
  [ "$filter" = all ] || flag=(--gtest_filter="$filter")  # all: no flag, so gtest reads GTEST_FILTER
  step "GPU tests: $filter (limit ${seconds} s, 0: none)"
  timeout "$seconds" ./build-dev/tests/sigjit_gpu_tests --gtest_brief=1 "${flag[@]}" >"$log" 2>&1
  echo "gpu tests exit code $? (124: timed out, a hang)"
  grep -E "first call with a warm cache|^tuned .* vs default" "$log"
  for m in atomic deterministic; do
    grep -E "^\[bwd $m" "$log" | grep -o 'rel_error=[^ ]*' | sed 's/rel_error=//' | sort -g | tail -1 | sed "s/^/worst backward ($m) rel_error: /"
  done
  grep -E "^\[case\]" "$log" | awk '{print $3}' | sed 's/rel_error=//' | sort -g | tail -1 | sed 's/^/worst rel_error: /'
  grep -E "FAILED|PASSED|SKIPPED|Failure|precompiled|tests from.*total" "$log" | head -40
}

# compute-sanitizer's memcheck, racecheck and synccheck over the GPU tests FILTER: sanitize FILTER [SECONDS]
sanitize() {
  for tool in ${SANITIZE_TOOLS:-memcheck racecheck synccheck}; do
    step "compute-sanitizer --tool $tool"
    timeout "${2:-170}" compute-sanitizer --tool "$tool" --error-exitcode 99 ./build-dev/tests/sigjit_gpu_tests --gtest_brief=1 --gtest_filter="$1" >"$OUT/sanitize_$tool.log" 2>&1
    echo "$tool exit code $? (99: the tool found errors, 124: timed out)"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|FAILED|PASSED" "$OUT/sanitize_$tool.log" | head -5
  done
}

# The run's CSV, with its header, unless an earlier verb of the run wrote it.
new_csv() {
  [ -s "$csv" ] || echo "impl,device,hd,L,pad,layout,causal,tile,dir,ms,min_ms,max_ms,tflops" >"$csv"
}
# The `--csv $csv` that bench and triton add unless ARGS name a CSV (printed one per line).
csv_args() {
  local a
  for a in "$@"; do case $a in --csv | --csv=*) return 0 ;; esac; done
  new_csv
  printf '%s\n' --csv "$csv"
}

bench() {
  local extra
  mapfile -t extra < <(csv_args "$@")
  step "sigjit-bench $*"
  ./build-dev/bench/sigjit-bench "$@" "${extra[@]}"
}

# Installs wheels into DIR once per content (later verbs of the run reuse it): pip_target DIR WHEEL...
pip_target() {
  local dir=$1 stamp
  shift
  stamp=$dir/.installed-$(cat "$@" | cksum | cut -d' ' -f1)
  [ -f "$stamp" ] && return 0
  step "install $* into $dir"
  mkdir -p "$dir" && python3 -m pip install -q --upgrade --no-index --no-deps --no-compile --no-cache-dir --target "$dir" "$@" >"$OUT/pip_$(basename "$dir").log" 2>&1 &&
    touch "$stamp" || { tail -5 "$OUT/pip_$(basename "$dir").log"; return 1; }
}

# TritonSigmoid (.whl, into /tmp/site) and the binding on PYTHONPATH: the checkout's python/ with
# build-dev's libsigjit.so, or with WHEEL=1 the installed wheel with its own library.
binding_env() {
  local path=/tmp/site whl
  if [ -d .whl ]; then pip_target /tmp/site .whl/*.whl || echo "TritonSigmoid's wheel (.whl) not installed"; fi
  if [ "${WHEEL:-0}" = 1 ]; then
    whl=$(ls build/dist/sigjit-*.whl 2>/dev/null | head -1)
    [ -n "$whl" ] || { echo "WHEEL=1: no build/dist/sigjit-*.whl (carry build/dist: pip wheel . -w build/dist)"; return 1; }
    pip_target /tmp/sigjit-wheel "$whl" || return 1
    path=/tmp/sigjit-wheel:$path
  else
    path=$PWD/python:$path
    export SIGJIT_LIBRARY=${SIGJIT_LIBRARY:-$PWD/build-dev/libsigjit.so}
  fi
  export PYTHONPATH=$path${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
  if [ "${WHEEL:-0}" = 1 ] && ! grep -q "^sigjit " "$OUT/env.txt" 2>/dev/null; then  # from a folder without the checkout
    (cd /tmp && python3 -c "import sigjit; print('sigjit', sigjit.__version__, sigjit.library_path(), sigjit.version())") 2>&1 | tee -a "$OUT/env.txt"
  fi
}

triton() {
  local extra
  mapfile -t extra < <(csv_args "$@")
  binding_env
  step "TritonSigmoid: bench/triton_bench.py $*"
  python3 bench/triton_bench.py "$@" "${extra[@]}" 2>&1 | grep -v Warning
}

python_tests() {
  binding_env || return 1
  if [ "${WHEEL:-0}" != 1 ]; then
    step "the binding's GPU tests"
    bash python/run_device_tests.sh build-dev "$OUT" 2>&1 | tail -25
    return
  fi
  # From the installed package, nothing of the checkout on the path: TritonSigmoid's calls pasted
  # unchanged against its kernels, CUDA graphs, torch.compile.
  step "the binding's GPU tests from the installed wheel"
  local tests
  tests=$(mktemp -d) && cp tests/python/test_torch_gpu.py tests/python/test_binding_cpu.py "$tests"/
  # shellcheck disable=SC2086  # PYTHON_TESTS: a list of test modules
  (cd "$tests" && timeout "${PYTHON_TIMEOUT_S:-330}" python3 -m unittest -v ${PYTHON_TESTS:-test_torch_gpu test_binding_cpu}) >"$OUT/python_wheel.log" 2>&1
  echo "python tests exit code $?"; grep -E "^(OK|FAILED)|(ERROR|FAIL): |skipped '" "$OUT/python_wheel.log" | head -30
  grep -E "^\[case\] (drop-in|cuda graph|vs TritonSigmoid)" "$OUT/python_wheel.log" | head -60
}

pyunit() {
  local tests=$1 seconds=${2:-120}
  binding_env || return 1
  step "the binding's GPU tests $tests (limit $seconds s)"
  (cd tests/python && timeout "$seconds" python3 -m unittest -v "$tests") >"$OUT/python_${tests//./_}.log" 2>&1
  echo "python $tests exit code $? (124: timed out)"
  grep -E "^(OK|FAILED)|(ERROR|FAIL): |skipped '|^\[case\]" "$OUT/python_${tests//./_}.log" | head -30
}

pybench() {
  local script=$1
  shift
  binding_env || return 1
  step "bench/$script $*"
  python3 "bench/$script" "$@"
}

summarize() {
  [ -s "$csv" ] || { echo "summarize: no $csv (bench and triton write it)"; return 1; }
  step "summary"
  if [ $# -gt 0 ]; then python3 bench/summarize.py "$csv" --results "$OUT/RESULTS.md" --env "$OUT/env.txt" --command "$1"; fi
  python3 bench/summarize.py "$csv" | tee "$OUT/summary.md"
}

verb=${1:-}
[ $# -gt 0 ] && shift
case $verb in  # the arguments, checked before anything runs
  build | python) [ $# -eq 0 ] || usage ;;
  gpu-tests) [ $# -ge 1 ] && [ $# -le 3 ] && [[ ${2:-0} =~ ^[0-9]+$ ]] || usage ;;
  sanitize) [ $# -ge 1 ] && [ $# -le 2 ] && [[ ${2:-0} =~ ^[0-9]+$ ]] || usage ;;
  bench | triton | sigjit) ;;
  pybench) [ $# -ge 1 ] && [ -f "bench/$1" ] || usage ;;
  pyunit) [ $# -ge 1 ] && [ $# -le 2 ] && [[ $1 =~ ^[[:alnum:]_.]+$ ]] && [[ ${2:-0} =~ ^[0-9]+$ ]] || usage ;;
  summarize) [ $# -le 1 ] || usage ;;
  -h | --help | help) usage 0 ;;
  *) usage ;;
esac
if [ "${DRY_RUN:-0}" = 1 ]; then
  line="dry-run: scripts/device_run.sh $verb"
  for a in "$@"; do [[ $a =~ ^[[:alnum:]_./,:=+@%-]+$ ]] && line+=" $a" || line+=" $(printf %q "$a")"; done
  echo "$line"
  exit 0
fi
mkdir -p "$OUT"
[ "$verb" = sigjit ] && exec ./build-dev/sigjit "$@"
[ -s "$OUT/env.txt" ] || environment
case $verb in
  gpu-tests) gpu_tests "$@" ;;
  python) python_tests ;;
  *) "$verb" "$@" ;;
esac

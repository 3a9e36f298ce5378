#!/usr/bin/env bash
# Installs what a Debian 12 machine lacks, then configures and builds sigjit into build/.
#
#   ./setup.sh          install missing packages, configure (Release, Ninja), build
#   ./setup.sh --test   the same, then the CPU tests, the GPU tests (they skip without a GPU),
#                       the host code's tests under ASan+UBSan (build/asan), the three fuzz targets (build/fuzz),
#                       find_package(sigjit) consumers (C++17, C) built against an install tree,
#                       and the Python wheel: built (build/dist), installed into a fresh venv, tested
#   ./setup.sh --test --exhaustive
#                       the same, the compile sweeps over the whole feature product
#                       (SIGJIT_TEST_EXHAUSTIVE=1): about 1,900 kernels more than the
#                       covering subset CI compiles, some 20 minutes more on 2 cores
#
# Assumes the CUDA toolkit under /usr/local/cuda (or CUDAToolkit_ROOT) and cmake + g++ present.
# Safe to run again: installs nothing that is there, reconfigures and rebuilds incrementally.
set -euo pipefail

cd "$(dirname "$0")"
ROOT=$PWD
BUILD=$ROOT/build

run_tests=0
for arg in "$@"; do
  case $arg in
    --test) run_tests=1 ;;
    --exhaustive) export SIGJIT_TEST_EXHAUSTIVE=1 ;;
    -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (use --test, --exhaustive or --help)" >&2; exit 2 ;;
  esac
done

# Each step says when it starts (minutes:seconds since this script began): CI's budget is 90
# minutes on 2 cores, and the log shows where it goes.
say() { printf '==> [%d:%02d] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }
jobs=$(nproc 2>/dev/null || echo 4)

# ---- packages -------------------------------------------------------------------------------
packages=(ninja-build nlohmann-json3-dev libfmt-dev libcli11-dev libssl-dev libgtest-dev googletest libgmock-dev llvm-14-tools python3-venv
  clang-14 libclang-rt-14-dev  # clang + libFuzzer: --test's fuzz targets (build/fuzz)
  libhiredis-dev redis-server)  # the remote cache tier's Redis client, and the server its CPU tests start on 127.0.0.1
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then missing+=("$p"); fi
done
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  sudo=()
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null || { echo "setup.sh: not root and no sudo; install as root: apt-get install ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  say "packages: all present"
fi

# ---- CUDA toolkit ---------------------------------------------------------------------------
cmake_cuda=()
if [[ -n ${CUDAToolkit_ROOT:-} ]]; then
  cmake_cuda=(-DCUDAToolkit_ROOT="$CUDAToolkit_ROOT")
elif ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  cmake_cuda=(-DCUDAToolkit_ROOT=/usr/local/cuda)
fi

# ---- cuobjdump + nvdisasm (the SASS checks of the Hopper kernels) -----------------------------
# Part of the CUDA toolkit, but not of every install (this machine's lacks them): then NVIDIA's
# wheels from PyPI, unpacked into build/tools (no Python environment is touched).
tools=$BUILD/tools/cuda-binutils
if ! command -v cuobjdump >/dev/null && [[ ! -x /usr/local/cuda/bin/cuobjdump ]] && ! compgen -G "$tools/nvidia/*/bin/cuobjdump" >/dev/null; then
  say "installing cuobjdump and nvdisasm from PyPI (nvidia-cuda-cuobjdump, nvidia-cuda-nvdisasm) into $tools"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$tools" "nvidia-cuda-cuobjdump==13.*" "nvidia-cuda-nvdisasm==13.*" 2>&1 |
    grep -v "Running pip as the 'root' user" || true
  compgen -G "$tools/nvidia/*/bin/cuobjdump" >/dev/null || say "could not install them; the SASS test will skip with a message"
fi

# ---- configure + build ----------------------------------------------------------------------
if [[ -f $BUILD/CMakeCache.txt ]] && ! grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja$' "$BUILD/CMakeCache.txt"; then
  echo "setup.sh: $BUILD was configured with another generator; remove it (rm -rf build) and run again" >&2
  exit 1
fi
say "configuring build/ (Release, Ninja)"
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_EXPORT_COMPILE_COMMANDS=ON "${cmake_cuda[@]}" >/dev/null
say "building"
cmake --build "$BUILD" -j "$jobs"
say "built $BUILD/sigjit"

((run_tests)) || exit 0

# ---- tests ----------------------------------------------------------------------------------
# Every step runs even when an earlier one fails; the exit status says whether all passed.
failed=()
check() {
  local name=$1
  shift
  "$@" || failed+=("$name")
}
consumer() {
  # Only the install prefix on CMAKE_PREFIX_PATH, no CUDA toolkit hint, and sigjit's private
  # dependencies made unfindable: sigjit::sigjit_shared must need none of them.
  local no_deps=() dep
  for dep in fmt nlohmann_json OpenSSL CUDAToolkit; do no_deps+=(-DCMAKE_DISABLE_FIND_PACKAGE_$dep=ON); done
  rm -rf "$BUILD/install" "$BUILD/consumer"
  cmake --install "$BUILD" --prefix "$BUILD/install" >/dev/null &&
    cmake -S "$ROOT/tests/consumer" -B "$BUILD/consumer" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$BUILD/install" \
      "${no_deps[@]}" >/dev/null &&
    cmake --build "$BUILD/consumer" -j "$jobs" || return 1
  local links
  links=$(ninja -C "$BUILD/consumer" -t commands | grep -E ' -o sigjit_consumer(_c)? ')
  if grep -qiE 'fmt|nlohmann|ssl|crypto|cuda' <<<"$links"; then
    echo "consumer: the link line names a private dependency of sigjit:" >&2
    echo "$links" >&2
    return 1
  fi
  "$BUILD/consumer/sigjit_consumer" && "$BUILD/consumer/sigjit_consumer_c"
}

# The wheel (pyproject.toml, scikit-build-core), built in its own persistent build directory
# build/wheel: its configuration differs from build/'s (static libcrypto, header-only fmt, no
# tests), so it cannot reuse build/'s objects, but reruns are incremental and it compiles only
# the library and the CLI (no tests). Installed into a fresh venv with its NVRTC dependency from
# PyPI; tests/python/package/test_*.py then run from a temp directory with `python -I`, so
# `import sigjit` can only find the installed package.
wheel() {
  local venv=$BUILD/wheel-venv dist=$BUILD/dist tmp
  rm -rf "$venv" "$dist"
  python3 -m venv "$venv" || return 1
  local py=$venv/bin/python pip=("$venv/bin/python" -m pip --disable-pip-version-check --quiet)
  "${pip[@]}" wheel --no-deps -w "$dist" "$ROOT" >"$BUILD/wheel.log" 2>&1 || { tail -40 "$BUILD/wheel.log"; return 1; }
  local whl=("$dist"/sigjit-*.whl)
  say "wheel: ${whl[0]#"$ROOT"/} ($(du -h "${whl[0]}" | cut -f1)); installing it and nvidia-cuda-nvrtc into build/wheel-venv"
  "${pip[@]}" install "${whl[0]}" || return 1
  # TritonSigmoid's source, never imported (it needs torch and a GPU): the compatibility tests
  # read its signatures with ast.
  "${pip[@]}" install --no-deps "triton-sigmoid==0.1.2" || return 1
  tmp=$(mktemp -d)
  cp "$ROOT"/tests/python/package/test_*.py "$tmp"/
  local version out
  version=$(sed -n 's/^project(sigjit VERSION \([0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")
  out=$(cd "$tmp" && env -u SIGJIT_NVRTC_LIBRARY -u SIGJIT_LIBRARY -u SIGJIT_CLI SIGJIT_EXPECTED_VERSION="$version" \
    SIGJIT_SOURCE_DIR="$ROOT" SIGJIT_CACHE_DIR="$tmp/cache" PATH="$venv/bin:$PATH" \
    "$py" -I -m unittest discover -s . -p 'test_*.py' -v 2>&1)
  local rc=$?
  rm -rf "$tmp"
  if ((rc)) || ! grep -q '^OK' <<<"$out"; then
    echo "$out"
    say "wheel: tests FAILED"
    return 1
  fi
  say "wheel: $(sed -n 's/^Ran \([0-9]*\) tests\{0,1\}.*/\1/p' <<<"$out") tests passed $(grep '^OK' <<<"$out" | sed -n 's/^OK //p')"
}
# The host code that parses what the cache, bundles and callers hand it, under ASan+UBSan, in its
# own build directory build/asan (the default compiler; reruns are incremental): the library, the
# CLI and sigjit_host_tests (the store, bundle, CLI cache, validation and C API tests:
# tests/CMakeLists.txt), run without kernel compiles. Then the three fuzz targets (tests/fuzz: index
# files, bundles, remote tier records), built with clang-14 and libFuzzer in build/fuzz (only the
# store's and the record decoder's files and the harness: the library itself needs g++), each run
# for SIGJIT_FUZZ_SECONDS (default 40, so the step still fuzzes two minutes, as two targets at 60 did)
# from the checked-in seeds plus the corpus grown on earlier runs (build/fuzz/corpus); without
# clang, build/asan's replay drivers run the seeds. Any sanitizer report fails the step: reports
# are written under build/asan/sanitizer-reports, and it must stay empty.
sanitizers() {
  local dir=$BUILD/asan fuzz=$BUILD/fuzz secs=${SIGJIT_FUZZ_SECONDS:-40}
  cmake -S "$ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" -DSIGJIT_SANITIZE=ON \
    -DSIGJIT_BUILD_BENCH=OFF "${cmake_cuda[@]}" >"$BUILD/asan-configure.log" 2>&1 || { tail -20 "$BUILD/asan-configure.log"; return 1; }
  cmake --build "$dir" -j "$jobs" --target sigjit_host_tests sigjit_cli fuzz_index fuzz_bundle fuzz_record || return 1
  local fuzzers=$dir/tests/fuzz
  if command -v clang++-14 >/dev/null; then
    CXX=clang++-14 cmake -S "$ROOT/tests/fuzz" -B "$fuzz" -G Ninja >"$BUILD/fuzz-configure.log" 2>&1 &&
      cmake --build "$fuzz" -j "$jobs" || { tail -20 "$BUILD/fuzz-configure.log"; return 1; }
    fuzzers=$fuzz
  fi
  local reports=$dir/sanitizer-reports
  rm -rf "$reports" && mkdir -p "$reports"
  local opts=exitcode=86:log_path=$reports/report:print_stacktrace=1
  local env=(ASAN_OPTIONS="$opts:detect_leaks=1" UBSAN_OPTIONS="$opts:halt_on_error=1")
  local ok=1 t
  # TuneWithoutGpu compiles every candidate with NVRTC: the compile tests' job, not this step's.
  env "${env[@]}" "$dir/tests/sigjit_host_tests" --gtest_brief=1 --gtest_filter='-CliCache.TuneWithoutGpu*' || ok=0
  for t in index bundle record; do
    mkdir -p "$fuzz/corpus/$t"
    say "sanitizers: fuzz_$t for ${secs} s ($fuzzers)"
    env "${env[@]}" "$fuzzers/fuzz_$t" -max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 -max_len=16384 \
      -artifact_prefix="$reports/fuzz_$t-" "$fuzz/corpus/$t" "$ROOT/tests/fuzz/corpus/$t" >"$BUILD/fuzz_$t.log" 2>&1 || {
      tail -40 "$BUILD/fuzz_$t.log"
      ok=0
    }
    grep -E '^(Done|replayed)' "$BUILD/fuzz_$t.log" | tail -1
  done
  if compgen -G "$reports/*" >/dev/null; then
    say "sanitizers: reports in $reports:"
    head -c 20000 "$reports"/* >&2
    ok=0
  fi
  ((ok))
}

say "tests: CPU (label cpu) and GPU (label gpu: one entry, Skipped with the reason when there is no GPU)"
check "CTest" ctest --test-dir "$BUILD" --output-on-failure --no-tests=error -j "$jobs"
say "sanitizers: build/asan (ASan+UBSan): store, bundle, CLI cache, validation and C API tests, then the fuzz targets"
check "sanitizers" sanitizers
say "consumer: install into build/install, build tests/consumer (C++17 and C, sigjit::sigjit_shared) with find_package(sigjit), run them"
check "find_package consumer" consumer
say "wheel: pip wheel into build/dist, install into build/wheel-venv, run tests/python/package"
check "wheel" wheel

if ((${#failed[@]})); then
  printf -v list '%s, ' "${failed[@]}"
  say "FAILED: ${list%, }"
  exit 1
fi
say "all tests passed"

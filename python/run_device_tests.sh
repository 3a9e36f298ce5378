#!/usr/bin/env bash
# The Python binding's tests on a GPU machine: tests/python/test_binding_cpu.py (with torch
# present it also runs the tensor-argument checks) and tests/python/test_torch_gpu.py (against
# fp64 and TritonSigmoid's reference, gradients, torch.compile, training). One log per test file
# in OUT_DIR; the exit status is non-zero when any test failed. About 1-2 minutes on an H100
# (mostly NVRTC compiles, kept in the kernel cache for the next run, and one inductor compile).
#
#   python/run_device_tests.sh BUILD_DIR OUT_DIR
#
# Needs BUILD_DIR/libsigjit.so (target sigjit_shared), torch with CUDA, and for the TritonSigmoid
# comparisons triton_sigmoid importable (scripts/device_run.sh puts it on PYTHONPATH=/tmp/site).
set -uo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BUILD_DIR OUT_DIR" >&2; exit 2; }
build=$(cd "$1" && pwd) || exit 2
mkdir -p "$2" && out=$(cd "$2" && pwd) || exit 2
root=$(cd "$(dirname "$0")/.." && pwd)

export SIGJIT_LIBRARY=$build/libsigjit.so
export SIGJIT_ABI_DUMP=$build/tests/sigjit_abi_dump
export PYTHONPATH=$root/python${PYTHONPATH:+:$PYTHONPATH}
export PYTHONDONTWRITEBYTECODE=1
# The fused (dQ-atomics) backward awaits its GPU verification before it becomes the library's
# default for non-deterministic calls; these tests verify it.
export SIGJIT_BACKWARD_PATH=${SIGJIT_BACKWARD_PATH:-fused}
if [ ! -f "$SIGJIT_LIBRARY" ]; then
  echo "run_device_tests: $SIGJIT_LIBRARY missing; build the sigjit_shared target (cmake --build $build)" >&2
  exit 1
fi

status=0
cd "$root/tests/python"
for t in test_binding_cpu test_torch_gpu; do
  log=$out/python_$t.log
  timeout 900 python3 -m unittest -v "$t" >"$log" 2>&1
  rc=$?
  echo "python $t: exit $rc ($(grep -E '^(OK|FAILED)' "$log" | tail -1)) log: $log"
  grep -E "(ERROR|FAIL): " "$log" | head -20
  grep -E "skipped ['\"]" "$log" | sed 's/^/  /' | head -20
  [ $rc -eq 0 ] || { status=1; tail -40 "$log"; }
done
grep -E "^\[(case|train)\]" "$out/python_test_torch_gpu.log" >"$out/python_cases.txt" 2>/dev/null
echo "python cases: $(wc -l <"$out/python_cases.txt") lines in $out/python_cases.txt"
grep "^\[train\]" "$out/python_cases.txt"
exit $status

#!/usr/bin/env bash
# The pip package on the GPU (issue 17): the wheel built on the dev machine (build/dist, carried:
# `pip wheel . -w build/dist`) installed into a fresh target with nothing of the build tree on the
# path (its NVRTC is the image's toolkit; the NVIDIA NVRTC wheel is over the carry limit, CI tests
# that route). Then the binding's GPU tests from the installed package (PYTHON=0 skips them,
# PYTHON_TESTS narrows them), the C++ top-left causal cases (TOPLEFT_FILTER; CPP=0 skips them and
# the build) and bench/first_call.py's first call (FIRST_CALL=0 skips it, FIRST_CALL_ARGS adds to it).
set -uo pipefail
export OUT=${OUT:-$PWD/.out} && mkdir -p "$OUT"
cd "$(dirname "$0")/../.." || exit 1
run=scripts/device_run.sh
export WHEEL=1  # python and pybench: the installed wheel, not python/ and build-dev
[ "${CPP:-1}" = 0 ] || $run build || exit 1
[ "${PYTHON:-1}" = 0 ] || $run python
[ "${CPP:-1}" = 0 ] || $run gpu-tests "${TOPLEFT_FILTER:-*TopLeft*:*top_left*}" "${TOPLEFT_TIMEOUT_S:-120}" topleft.log
# shellcheck disable=SC2086  # FIRST_CALL_ARGS: extra arguments
[ "${FIRST_CALL:-1}" = 0 ] || timeout "${FIRST_CALL_TIMEOUT_S:-240}" $run pybench first_call.py --out "$OUT" --only first ${FIRST_CALL_ARGS:-} 2>&1 | tee "$OUT/first_call.log"

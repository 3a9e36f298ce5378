#!/usr/bin/env bash
# `sigjit tune --preset single-cell --direction fwd` (TUNE_DIRECTIONS) into an empty cache, timed
# (under TUNE_TIMEOUT_S), the entries it stored, then `sigjit verify --gpu`. Logs in $OUT.
set -uo pipefail
export OUT=${OUT:-$PWD/.out} && mkdir -p "$OUT"
cd "$(dirname "$0")/../.." || exit 1
run=scripts/device_run.sh
$run build || exit 1
echo "=== $(date +%T) tune the single-cell preset into an empty cache"
export SIGJIT_CACHE_DIR=/tmp/sigjit-preset-cache
rm -rf "$SIGJIT_CACHE_DIR"
start=$(date +%s)
timeout "${TUNE_TIMEOUT_S:-480}" $run sigjit tune --preset single-cell --direction "${TUNE_DIRECTIONS:-fwd}" >"$OUT/tune_preset.log" 2>&1
echo "tune exit code $? after $(($(date +%s) - start)) s" | tee -a "$OUT/tune_preset.log"
tail -30 "$OUT/tune_preset.log"
$run sigjit list >"$OUT/tune_list.txt" 2>&1; echo "entries: $(($(wc -l <"$OUT/tune_list.txt") - 1))"
echo "=== $(date +%T) verify --gpu"
$run sigjit verify --gpu 2>&1 | tee "$OUT/tune_verify.log" | tail -8

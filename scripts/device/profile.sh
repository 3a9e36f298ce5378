#!/usr/bin/env bash
# Nsight Compute profile of sigjit's kernels at one shape, in one call (issue 21's method,
# bench/PROFILE-backward.md): builds, then for each head dim in PROFILE_HD (default "128 64") runs
# `ncu --set full` on sigjit-bench (PROFILE_ARGS, default the backward at L 16384, TritonSigmoid's
# grid) over the launches matching PROFILE_KERNELS (an ncu regex, default bwd), and exports the
# report's details page, raw metrics (CSV) and per-instruction SASS source counters of the kernels
# matching PROFILE_SOURCE (default fused). Clocks are left alone (--clock-control none: METHOD.md).
# The device tool returns at most 8 files, so everything is packed into $OUT/profile.tgz.
set -uo pipefail
export OUT=${OUT:-$PWD/.out} && mkdir -p "$OUT"
cd "$(dirname "$0")/../.." || exit 1
hds=${PROFILE_HD:-128 64}
args=${PROFILE_ARGS:---direction bwd --seq 16384 --pad 0 --warmup 2 --reps 2}
kernels=${PROFILE_KERNELS:-bwd}
source_kernels=${PROFILE_SOURCE:-fused}
if [ "${DRY_RUN:-0}" = 1 ]; then
  for hd in $hds; do echo "dry-run: ncu --set full -k regex:$kernels sigjit-bench --head-dim $hd $args"; done
  exit 0
fi
scripts/device_run.sh build || exit 1
dir=$(mktemp -d)
for hd in $hds; do
  rep=$dir/bwd_d$hd
  # shellcheck disable=SC2086  # args: words by design
  timeout "${PROFILE_TIMEOUT_S:-120}" ncu --clock-control none --set full -k "regex:$kernels" --launch-skip 2 --launch-count 2 -o "$rep" \
    ./build-dev/bench/sigjit-bench --head-dim "$hd" $args >"$dir/ncu_d$hd.log" 2>&1
  echo "ncu hd $hd exit code $?"
  tail -3 "$dir/ncu_d$hd.log"
  [ -f "$rep.ncu-rep" ] || continue
  ncu -i "$rep.ncu-rep" --page details >"$dir/details_d$hd.txt" 2>&1
  ncu -i "$rep.ncu-rep" --page raw --csv >"$dir/raw_d$hd.csv" 2>&1
  ncu -i "$rep.ncu-rep" --page source --csv --print-source sass --kernel-name "regex:$source_kernels" >"$dir/source_d$hd.csv" 2>&1
  grep -E "sigjit_|Duration|Compute \(SM\) Throughput|Registers Per Thread|Achieved Occupancy" "$dir/details_d$hd.txt" | head -12
done
tar czf "$OUT/profile.tgz" -C "$dir" . && rm -rf "$dir"
echo "profile: $OUT/profile.tgz ($(du -h "$OUT/profile.tgz" | cut -f1))"

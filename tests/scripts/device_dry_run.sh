#!/usr/bin/env bash
# Every mode of every device script (scripts/device/*.sh) under DRY_RUN=1: it must exit 0 and
# print only the device_run.sh verbs it would run, never run a GPU tool or trip over its own
# shell (an unset variable, a shadowed one, a missing file). Why: the device is lent for minutes
# per session, and a script that fails there costs that session's GPU time; here it costs nothing.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
failures=0 runs=0
for script in "$root"/scripts/device/*.sh; do
  # The modes: the case pattern that dispatches "$1" (none: the script has one job).
  modes=$(sed -nE 's/^  ([a-z0-9_ |]+)\) "\$1" ;;$/\1/p' "$script" | tr -d ' ' | tr '|' ' ')
  for mode in ${modes:-""}; do
    runs=$((runs + 1))
    log=$(DRY_RUN=1 OUT="$out" PATH="/usr/bin:/bin" timeout 30 bash "$script" $mode 2>&1)
    rc=$?
    bad=$(grep -E 'command not found|No such file|unbound variable|syntax error|cannot stat' <<<"$log" | head -3)
    if [ $rc -ne 0 ] || [ -n "$bad" ] || ! grep -q '^dry-run:' <<<"$log"; then
      failures=$((failures + 1))
      printf 'FAIL %s %s (exit %d)\n%s\n' "${script#$root/}" "${mode:-(no mode)}" "$rc" "$log" >&2
    fi
  done
done
echo "$runs device script runs dry, $failures failed"
[ "$runs" -gt 20 ] && [ "$failures" -eq 0 ]

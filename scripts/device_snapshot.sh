#!/usr/bin/env bash
# Exports HEAD (committed work only) into .snap/ for the device tool to carry, so a GPU run never
# builds someone's half-edited working tree. The device copy's .git may be stale, so the export
# happens here. Then, on the device (carry .deps, .whl and .snap):
#   cd .snap && ln -s ../.deps .deps && ln -s ../.whl .whl && bash scripts/device/quick.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .snap
mkdir .snap
git archive HEAD | tar -x -C .snap
echo "exported $(git rev-parse --short HEAD) into .snap/ ($(du -sh .snap | cut -f1))"

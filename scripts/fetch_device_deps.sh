#!/usr/bin/env bash
# Fetches the header-only dependencies that the GPU machine lacks (it has no package registry)
# into .deps/ (git-ignored), for the working tree to carry there:
#   .deps/usr/include/nlohmann, .deps/usr/include/CLI        the headers
#   .deps/usr/share/cmake/{nlohmann_json,CLI11}/              their CMake package configs
#   .deps/usr/include/openssl                                  OpenSSL 3 headers (the device has libcrypto.so.3)
#   .deps/usr/include/hiredis, .deps/usr/lib/*/libhiredis.*    hiredis (the remote tier's client; the image has none)
# Use on that machine with: cmake ... -DCMAKE_PREFIX_PATH=$PWD/.deps/usr
# Run here (Debian 12, with apt): apt-get download needs no root; the packages' own versions
# (bookworm: nlohmann-json 3.11.2, CLI11 2.1.2) satisfy CMakeLists.txt's minimums.
set -euo pipefail

cd "$(dirname "$0")/.."
DEST=$PWD/.deps
packages=(nlohmann-json3-dev libcli11-dev libssl-dev libhiredis-dev libhiredis0.14)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "==> apt-get download ${packages[*]}"
if ! log=$(cd "$tmp" && apt-get download -qq "${packages[@]}" 2>&1); then
  grep -v "unsandboxed as root" <<<"$log" >&2 || true
  echo "fetch_device_deps.sh: apt-get download failed; run 'apt-get update' and try again" >&2
  exit 1
fi
shopt -s nullglob
debs=("$tmp"/*.deb)
if ((${#debs[@]} != ${#packages[@]})); then
  echo "fetch_device_deps.sh: downloaded ${#debs[@]} of ${#packages[@]} packages; run 'apt-get update' and try again" >&2
  exit 1
fi
mkdir -p "$DEST"
for deb in "${debs[@]}"; do
  echo "==> dpkg -x $(basename "$deb") .deps/"
  dpkg -x "$deb" "$DEST"
done
# OpenSSL's arch-specific headers live beside the others on the device's include path only if
# merged: copy them into .deps/usr/include/openssl (the device links its own libcrypto.so.3).
cp -n "$DEST"/usr/include/x86_64-linux-gnu/openssl/* "$DEST"/usr/include/openssl/ 2>/dev/null || true
rm -f "$DEST"/usr/lib/x86_64-linux-gnu/lib{ssl,crypto}.{a,so}
for need in usr/include/nlohmann/json.hpp usr/include/CLI/CLI.hpp usr/include/openssl/evp.h usr/include/openssl/configuration.h usr/include/hiredis/hiredis.h; do
  [[ -f $DEST/$need ]] || { echo "fetch_device_deps.sh: $need missing after extraction" >&2; exit 1; }
done
configs=("$DEST"/usr/share/cmake/*/)
configs=("${configs[@]%/}")
echo "==> .deps/usr ready (CMake packages: ${configs[*]##*/}); configure with -DCMAKE_PREFIX_PATH=\$PWD/.deps/usr"

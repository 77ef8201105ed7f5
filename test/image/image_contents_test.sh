#!/usr/bin/env bash
# The image's tree records every Debian package it takes files from: scripts/collect-closure.sh
# (what the Dockerfile runs) is run on the built driver binary into a temporary tree, and the
# scanner-style listing (scripts/image-packages.py) must name, with this system's installed
# version, the package of every shared library in the tree.
#   image_contents_test.sh SOURCE_DIR DRIVER_BINARY
set -euo pipefail
src=$1 bin=$2
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
"$src/scripts/collect-closure.sh" "$bin" "$tree/root" 9.9.9 >/dev/null
"$src/scripts/image-packages.py" "$tree/root" > "$tree/listing"
fail=0
for lib in $(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3}'); do
  real=$(readlink -f "$lib")
  pkg=""
  for p in "$lib" "$real" "${lib#/usr}" "${real#/usr}" "/usr$lib" "/usr$real"; do
    pkg=$(dpkg-query -S "$p" 2>/dev/null | awk -F': ' 'NR == 1 {print $1}' | cut -d, -f1) && [ -n "$pkg" ] && break
  done
  [ -n "$pkg" ] || { echo "FAIL: no package owns $lib on this system"; fail=1; continue; }
  want="$(dpkg-query -W -f='${Package} ${Version} ${Architecture}' "$pkg")"
  grep -qxF "$want" "$tree/listing" || { echo "FAIL: $lib: listing lacks '$want'"; fail=1; }
done
grep -q '^ibverbs-providers ' "$tree/listing" || { echo "FAIL: the EFA provider's package is not listed"; fail=1; }
grep -q '"name": "efa-dra-driver", "versionInfo": "9.9.9"' "$tree/root/usr/share/sbom/efa-dra-driver.spdx.json" \
  || { echo "FAIL: the SBOM does not name the driver at its version"; fail=1; }
[ "$fail" -eq 0 ] && echo "image lists $(wc -l < "$tree/listing") packages, each library's package at its version"
exit "$fail"

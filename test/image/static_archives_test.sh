#!/usr/bin/env bash
# Code linked in from a static archive is in the image although no file of its package is:
# given the linker's map (the Release build writes efa-dra-driver.map), scripts/collect-closure.sh
# must record the package that ships the archive. The map here is a real one: a program linked
# with zlib's static archive (zlib1g-dev, a build dependency of gRPC's -dev packages), so the
# listing must name zlib1g-dev at this system's version, which the shared-library closure of the
# driver never brings (its libz.so is zlib1g's).
#   static_archives_test.sh SOURCE_DIR DRIVER_BINARY
set -euo pipefail
src=$1 bin=$2
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
archive=$(readlink -f "$(gcc -print-file-name=libz.a)")
[ -f "$archive" ] || { echo "FAIL: no libz.a here (zlib1g-dev)"; exit 1; }
printf '#include <zlib.h>\nint main(void) { return zlibVersion()[0] == 0; }\n' > "$tree/prog.c"
gcc "$tree/prog.c" -o "$tree/prog" "$archive" -Wl,-Map="$tree/prog.map"
grep -q "^${archive}(" "$tree/prog.map" || { echo "FAIL: the linker map names no member of $archive"; exit 1; }

"$src/scripts/collect-closure.sh" "$bin" "$tree/root" 9.9.9 "$tree/prog.map" >/dev/null
"$src/scripts/image-packages.py" "$tree/root" > "$tree/listing"
want=$(dpkg-query -W -f='${Package} ${Version} ${Architecture}' zlib1g-dev)
grep -qxF "$want" "$tree/listing" || { echo "FAIL: listing lacks '$want' (the archive's package)"; cat "$tree/listing"; exit 1; }
grep -q '"name": "zlib1g-dev"' "$tree/root/usr/share/sbom/efa-dra-driver.spdx.json" \
  || { echo "FAIL: the SBOM lacks zlib1g-dev"; exit 1; }
# An unreadable map is an error that names it, not an image without those packages.
if "$src/scripts/collect-closure.sh" "$bin" "$tree/root2" 9.9.9 "$tree/missing.map" 2> "$tree/err"; then
  echo "FAIL: a missing link map was accepted"; exit 1
fi
grep -q "missing.map" "$tree/err" || { echo "FAIL: the error does not name the map: $(cat "$tree/err")"; exit 1; }
echo "the archive's package is recorded: $want"

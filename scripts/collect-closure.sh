#!/usr/bin/env bash
# Collects the driver binary and exactly the files it loads into a root tree for a `scratch`
# image (the Dockerfile's collect stage runs it), and records what that tree holds so image
# scanners can see it:
#   - the binary's ldd closure, the EFA provider libibverbs dlopens, the CA bundle;
#   - /var/lib/dpkg/status.d/<package>: the dpkg status stanza of every Debian package a file
#     was taken from (the layout distroless images use, which trivy/syft/grype read);
#   - /usr/share/sbom/efa-dra-driver.spdx.json: the same packages as an SPDX 2.3 document.
#
#   - the Debian packages whose static archives the binary was linked with (their code is in
#     the binary, so a scanner must see them as well), from the linker's map file LINK_MAP.
#
#   collect-closure.sh BINARY OUTDIR [VERSION] [LINK_MAP]
#
# Runs on the Debian system the binary was built on (it asks that system's dpkg which package
# owns each file). It does not run the binary; the Dockerfile proves the tree with chroot.
# A binary for another architecture (cross-built with multiarch: the arm64 image is made on
# x86-64) is handled the same way, against that architecture's libraries (/usr/lib/<triplet>,
# packages name:arch): its closure comes from its own loader run in trace mode under
# qemu-user (qemu-<cpu>-static must be installed), which is what ldd does natively.
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: collect-closure.sh BINARY OUTDIR [VERSION] [LINK_MAP]" >&2
  exit 2
fi
bin=$1 out=$2 version=${3:-unknown} link_map=${4:-}
[ -z "$link_map" ] || [ -r "$link_map" ] || { echo "collect-closure: cannot read the link map $link_map" >&2; exit 1; }
[ -x "$bin" ] || { echo "collect-closure: $bin: not an executable file" >&2; exit 1; }
mkdir -p "$out"

# The binary's architecture, from its ELF header: the multiarch triplet its libraries live
# under, and for a foreign one its loader and the qemu-user that runs that loader here.
machine=$(od -An -tu2 -j18 -N2 "$bin" | tr -d ' ')
case $machine in
  62) triplet=x86_64-linux-gnu loader=/lib64/ld-linux-x86-64.so.2 cpu=x86_64 ;;
  183) triplet=aarch64-linux-gnu loader=/lib/ld-linux-aarch64.so.1 cpu=aarch64 ;;
  *) echo "collect-closure: $bin: ELF machine $machine not supported" >&2; exit 1 ;;
esac
emulator=""
if [ "$cpu" != "$(uname -m)" ]; then
  emulator=$(command -v "qemu-$cpu-static") \
    || { echo "collect-closure: $bin is $cpu: needs qemu-$cpu-static (qemu-user-static)" >&2; exit 1; }
fi
# trace FILE...: what the loader maps for each FILE, in ldd's format.
trace() {
  if [ -z "$emulator" ]; then
    ldd "$@"
    return
  fi
  local f
  for f in "$@"; do
    echo "$f:"
    LD_TRACE_LOADED_OBJECTS=1 "$emulator" "$loader" "$f"
  done
}

provider=$(echo /usr/lib/$triplet/libibverbs/libefa-rdmav*.so)
[ -e "$provider" ] || { echo "collect-closure: no libibverbs EFA provider (libefa-rdmav*.so)" >&2; exit 1; }

# Files are copied dereferenced into their canonical (/usr) directory; /lib and /lib64 become
# the usual merged-/usr links. Every source path is remembered to look up its package.
sources=()
put() {
  local d
  d=$out$(readlink -f "$(dirname "$1")")
  mkdir -p "$d"
  cp -L "$1" "$d/$(basename "$1")"
  sources+=("$1")
}
for lib in $(trace "$bin" "$provider" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// && $2 ~ /^\(/ {print $1}' | sort -u); do
  put "$lib"
done
mkdir -p "$out/usr/bin" "$out$(dirname "$provider")" "$out/etc/libibverbs.d" "$out/etc/ssl/certs" "$out/tmp"
cp "$bin" "$out/usr/bin/efa-dra-driver"
# libibverbs' EFA provider is Debian's link to libefa: it stays a link to the same libefa file
# the binary links (efadv), so the loader maps one copy, not two.
libefa=$(trace "$bin" | awk '$1 ~ /^libefa\.so/ {print $1}')
ln -sfn "../$libefa" "$out$(dirname "$provider")/$(basename "$provider")"
sources+=("$provider")
cp /etc/libibverbs.d/efa.driver "$out/etc/libibverbs.d/"
sources+=(/etc/libibverbs.d/efa.driver)
cp /etc/ssl/certs/ca-certificates.crt "$out/etc/ssl/certs/"
ln -sfn usr/lib "$out/lib"
ln -sfn usr/lib64 "$out/lib64"
chmod 1777 "$out/tmp"

# owner PATH: the package (name:arch) that ships PATH. Packages register a library under /lib
# or /usr/lib, through a link or its target, so every spelling is tried.
owner() {
  local p=$1 real alt
  real=$(readlink -f "$p")
  for alt in "$p" "$real" "${p#/usr}" "${real#/usr}" "/usr$p" "/usr$real"; do
    dpkg-query -S "$alt" 2>/dev/null | awk -F': ' 'NR == 1 {print $1}' | cut -d, -f1 && return 0
  done
  return 1
}
pkgs=()
for s in "${sources[@]}"; do
  p=$(owner "$s") || true
  [ -n "$p" ] || { echo "collect-closure: no Debian package owns $s" >&2; exit 1; }
  pkgs+=("$p")
done
# Archives the linker took members from are named at the start of a map line, "ARCHIVE(member)".
if [ -n "$link_map" ]; then
  for archive in $(grep -oE '^/[^ ()]+\.a\(' "$link_map" | sed 's/($//' | sort -u); do
    p=$(owner "$archive") || true
    [ -n "$p" ] || { echo "collect-closure: no Debian package owns $archive (linked into $bin)" >&2; exit 1; }
    pkgs+=("$p")
  done
fi
# The CA bundle is generated by ca-certificates' postinst, so no package lists the file itself.
dpkg-query -W ca-certificates >/dev/null 2>&1 && pkgs+=(ca-certificates)

mkdir -p "$out/var/lib/dpkg/status.d" "$out/usr/share/sbom"
mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | sort -u)
sbom_pkgs=""
for p in "${pkgs[@]}"; do
  name=$(dpkg-query -W -f='${Package}' "$p")
  dpkg-query -s "$p" | grep -v '^Conffiles:\|^ /' > "$out/var/lib/dpkg/status.d/$name"
  ver=$(dpkg-query -W -f='${Version}' "$p")
  arch=$(dpkg-query -W -f='${Architecture}' "$p")
  src=$(dpkg-query -W -f='${source:Package}' "$p")
  [ -z "$sbom_pkgs" ] || sbom_pkgs+=","
  sbom_pkgs+=$(printf '\n    {"SPDXID": "SPDXRef-Package-deb-%s", "name": "%s", "versionInfo": "%s", "downloadLocation": "NOASSERTION", "sourceInfo": "Debian source package %s", "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": "pkg:deb/debian/%s@%s?arch=%s&distro=debian-12"}]}' \
    "$name" "$name" "$ver" "$src" "$name" "$ver" "$arch")
done
sbom_pkgs+=$(printf ',\n    {"SPDXID": "SPDXRef-Package-efa-dra-driver", "name": "efa-dra-driver", "versionInfo": "%s", "downloadLocation": "NOASSERTION", "licenseDeclared": "Apache-2.0"}' "$version")
created=$(date -u ${SOURCE_DATE_EPOCH:+-d @$SOURCE_DATE_EPOCH} +%Y-%m-%dT%H:%M:%SZ)
cat > "$out/usr/share/sbom/efa-dra-driver.spdx.json" <<JSON
{
  "spdxVersion": "SPDX-2.3",
  "dataLicense": "CC0-1.0",
  "SPDXID": "SPDXRef-DOCUMENT",
  "name": "efa-dra-driver-image-${version}",
  "documentNamespace": "https://github.com/efa-dra-driver/efa-dra-driver/spdx/image-${version}",
  "creationInfo": {"created": "${created}", "creators": ["Tool: scripts/collect-closure.sh"]},
  "packages": [${sbom_pkgs}
  ]
}
JSON
echo "collect-closure: $(du -sh "$out" | cut -f1) in $out, ${#pkgs[@]} Debian packages recorded"

#!/usr/bin/env bash
# Builds the efa-dra-driver image with podman, also on a machine without registry access:
# when the base image is not available locally, it is made from the Debian archive with
# debootstrap (minbase bookworm) and imported as localhost/debian:bookworm-slim.
#
#   scripts/build-image.sh [--arch amd64|arm64|all] [--target STAGE] [TAG]
#
# --arch   the image's architecture; default: this machine's. A foreign one (arm64 on x86-64)
#          is cross-compiled in the build stage, not emulated (see the Dockerfile); its config
#          says os=linux, architecture=<arch>.
# TAG      with one --arch, the image's tag as given. Default: localhost/efa-dra-driver:<version>
#          for this machine's architecture, localhost/efa-dra-driver:<version>-<arch> for
#          another (so the two never overwrite each other).
#          With --arch all: builds TAG-amd64 and TAG-arm64 (default TAG as above without suffix);
#          combine them with `podman manifest create TAG && podman manifest add TAG ...`.
# --target STAGE  builds the Dockerfile's STAGE instead of the image (unit-tests: the test image
#          scripts/test-arm64.sh runs), with the same arguments, so it shares the image's cached
#          layers; TAG is then required and no image checks are made.
#
# Uses runc and explicit ulimits (crun and the default limits fail on some hosts; see
# docs/install.md). Runs the image's `version` (a foreign image through qemu-user-static on
# its mounted tree, when installed) and prints its size at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

host_arch=$(dpkg --print-architecture 2>/dev/null || uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/')
arch=$host_arch
tag=""
target=""
while [ $# -gt 0 ]; do
  case $1 in
    --arch) arch=${2:?--arch needs amd64, arm64 or all}; shift 2 ;;
    --arch=*) arch=${1#--arch=}; shift ;;
    --target) target=${2:?--target needs a stage name}; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "build-image: unknown option $1" >&2; exit 2 ;;
    *) tag=$1; shift ;;
  esac
done
case $arch in
  amd64|arm64|all) ;;
  *) echo "build-image: --arch must be amd64, arm64 or all (got $arch)" >&2; exit 2 ;;
esac

# IMAGE_VERSION (scripts/release.sh sets it): the version the image's label and SBOM carry;
# default the source's (CMakeLists.txt). It changes only the collect and final stages.
version=${IMAGE_VERSION:-$(sed -n 's/^project(efa-dra-driver VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)}
[ -z "$target" ] || [ -n "$tag" ] || { echo "build-image: --target needs a TAG" >&2; exit 2; }
if [ "$arch" = all ]; then
  [ -z "$target" ] || { echo "build-image: --target takes one --arch" >&2; exit 2; }
  base_tag=${tag:-localhost/efa-dra-driver:${version}}
  for a in amd64 arm64; do
    "$0" --arch "$a" "$base_tag-$a"
  done
  exit 0
fi
if [ -z "$tag" ]; then
  tag=localhost/efa-dra-driver:${version}
  [ "$arch" = "$host_arch" ] || tag+=-$arch
fi
base=${BASE_IMAGE:-localhost/debian:bookworm-slim}
podman_run_flags=(--runtime /usr/sbin/runc)
build_flags=(--ulimit nofile=20000:20000 --ulimit nproc=1000:1000)

if ! podman image exists "$base"; then
  command -v debootstrap >/dev/null || { echo "build-image: needs debootstrap (apt-get install debootstrap)" >&2; exit 1; }
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
  mirror=${mirror:-http://deb.debian.org/debian}
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  echo "build-image: making $base with debootstrap from $mirror"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
  tar -C "$root" -c . | podman import - "$base" >/dev/null
fi

commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
# --platform sets TARGETARCH and the image's architecture; BUILDPLATFORM (where the build and
# collect stages run) is given because podman 4.3 does not set it (newer ones set the same).
podman "${podman_run_flags[@]}" build "${build_flags[@]}" \
  --build-arg BASE_IMAGE="$base" --build-arg VERSION="$version" --build-arg GIT_COMMIT="$commit" \
  --build-arg BUILD_JOBS="${BUILD_JOBS:-$(nproc)}" --platform "linux/$arch" --build-arg BUILDPLATFORM="linux/$host_arch" \
  ${target:+--target "$target"} -t "$tag" .
[ -z "$target" ] || exit 0
got=$(podman image inspect "$tag" --format '{{.Os}}/{{.Architecture}}')
[ "$got" = "linux/$arch" ] || { echo "build-image: $tag is $got, not linux/$arch" >&2; exit 1; }
# The image is `scratch` + the binary's closure: running `version` proves the loader finds
# every library. A foreign image runs under qemu-user with its own tree as the root for the
# loader's lookups.
if [ "$arch" = "$host_arch" ]; then
  podman "${podman_run_flags[@]}" run --rm "${build_flags[@]}" "$tag" version
elif qemu=$(command -v "qemu-$(echo "$arch" | sed 's/arm64/aarch64/; s/amd64/x86_64/')-static"); then
  root=$(podman image mount "$tag")
  "$qemu" -L "$root" "$root/usr/bin/efa-dra-driver" version
  podman image unmount "$tag" >/dev/null
else
  echo "build-image: no qemu-user-static here to run the $arch image's version (its collect stage ran it)"
fi
size=$(podman image inspect "$tag" --format '{{.Size}}')
gz=$(podman save "$tag" 2>/dev/null | gzip -c | wc -c)
echo "build-image: $tag: $size bytes, about $gz bytes gzip-compressed (what a registry stores)"


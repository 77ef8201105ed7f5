#!/usr/bin/env bash
# Builds the efa-dra-driver image with podman, also on a machine without registry access:
# when the base image is not available locally, it is made from the Debian archive with
# debootstrap (minbase bookworm) and imported as localhost/debian:bookworm-slim.
#
#   scripts/build-image.sh [TAG]        default TAG: localhost/efa-dra-driver:<version>
#
# Uses runc and explicit ulimits (crun and the default limits fail on some hosts; see
# docs/install.md). Runs the image's `version` and prints its size at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^project(efa-dra-driver VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
tag=${1:-localhost/efa-dra-driver:${version}}
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
podman "${podman_run_flags[@]}" build "${build_flags[@]}" \
  --build-arg BASE_IMAGE="$base" --build-arg VERSION="$version" --build-arg GIT_COMMIT="$commit" \
  -t "$tag" .
# The image is `scratch` + the binary's closure: running `version` proves the loader finds
# every library.
podman "${podman_run_flags[@]}" run --rm "${build_flags[@]}" "$tag" version
size=$(podman image inspect "$tag" --format '{{.Size}}')
gz=$(podman save "$tag" 2>/dev/null | gzip -c | wc -c)
echo "build-image: $tag: $size bytes, about $gz bytes gzip-compressed (what a registry stores)"


#!/usr/bin/env bash
# Installs Debian packages for building for TARGET_ARCH (a Debian architecture: amd64, arm64)
# on this machine, whose architecture may differ (the Dockerfile's build stage runs on the
# build platform and cross-compiles).
#
#   apt-install-for-target.sh TARGET_ARCH PACKAGE...
#
# Native (TARGET_ARCH is this machine's): the packages exactly as named.
# Cross: the target's architecture is added to dpkg (Debian multiarch), every -dev package is
# installed for the target (name:arch; Debian's -dev packages are Multi-Arch: same, except
# libyaml-cpp-dev, which then is the target's only), every other package (compilers, cmake,
# protoc, grpc_cpp_plugin: tools that run during the build) for this machine, and the cross
# toolchain (crossbuild-essential-<arch>) is added.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: apt-install-for-target.sh TARGET_ARCH PACKAGE..." >&2; exit 2; }
target=$1
shift
host=$(dpkg --print-architecture)
packages=()
if [ "$target" = "$host" ]; then
  packages=("$@")
else
  dpkg --add-architecture "$target"
  for p in "$@"; do
    case $p in
      *-dev) packages+=("$p:$target") ;;
      *) packages+=("$p") ;;
    esac
  done
  packages+=("crossbuild-essential-$target")
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}"

#!/usr/bin/env bash
# Installs the Debian bookworm packages needed to build, test and package efa-dra-driver.
# Idempotent: installs only what is missing. Runs apt-get as root (directly or through sudo).
#
#   install-deps.sh             the build, the unit/e2e suite and the image
#   install-deps.sh --cluster   also what the real-cluster tier runs on (test/e2e/cluster):
#                               runc, CNI plugins, iproute2/iptables, debootstrap for the image,
#                               the OCI registry releases are published to (docker-registry),
#                               socat, which makes it reachable from the cluster's namespace,
#                               and qemu-user-static (release.sh builds the arm64 image too)
#   install-deps.sh --arm64     also what the arm64 tier runs on (scripts/test-arm64.sh):
#                               qemu-user-static (run explicitly, no binfmt_misc needed),
#                               debootstrap for the image's base
# (the flags combine)
set -euo pipefail

packages=(
  # toolchain
  g++ cmake ninja-build pkg-config git
  # compile cache (CMakeLists.txt uses it when present; CI's four builds share it)
  ccache
  # fuzz targets: clang with libFuzzer (in compiler-rt)
  clang libclang-rt-14-dev
  # libraries (docs/dependencies.md says which one does what)
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libibverbs-dev libnl-3-dev libnl-route-3-dev
  nlohmann-json3-dev libspdlog-dev libcli11-dev libyaml-cpp-dev
  libssl-dev libcpp-httplib-dev
  libgtest-dev libgmock-dev
  # test tools: CDI schema validation, YAML lint, openssl for test certs (Helm for the chart
  # tests is built from the Go module proxy: test/e2e/cluster/build-components.sh)
  python3 python3-yaml python3-jsonschema yamllint openssl
  # real CDI consumer for the container test
  podman runc busybox-static
)

for group in "$@"; do
  case $group in
    --cluster) packages+=(debootstrap containernetworking-plugins iproute2 iptables util-linux curl gcc libc6-dev
                          docker-registry socat qemu-user-static) ;;
    --arm64) packages+=(qemu-user-static debootstrap) ;;
    *) echo "install-deps: unknown group $group (--cluster, --arm64)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"

#!/usr/bin/env bash
# The arm64 tier (p6e-gb200's Grace CPUs): the arm64 image is cross-built on this x86-64
# machine (scripts/build-image.sh --arch arm64) and checked here under qemu-user, in two parts:
#   a) both images' `discover` on every bundled topology (test/fixtures/topologies): the arm64
#      binary under qemu-aarch64-static (its own image tree as the loader's root) and the amd64
#      one in a chroot of its image tree must print the same JSON, device by device and as
#      ResourceSlices; and the arm64 image's status.d/SBOM must list the same packages as
#      amd64's, each as an arm64 (or arch all) package;
#   b) the unit tests of the pure modules (discovery, slices, claims, neuron), cross-built for
#      arm64 in the Dockerfile's unit-tests stage (it starts from the image's build stage, so
#      podman's layer cache shares the toolchain and the Release build), run by ctest inside
#      that image, every test binary and every program they start under qemu-aarch64-static.
#      Any skipped test fails the tier.
#
#   scripts/test-arm64.sh      (root: chroot, podman image mount)
#
# Needs podman, runc, qemu-user-static (it runs scripts/install-deps.sh --arm64); no binfmt_misc registration:
# qemu is always invoked explicitly. Exit 0 when every comparison and test passed.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --arm64
qemu=$(command -v qemu-aarch64-static) \
  || { echo "test-arm64: needs qemu-aarch64-static (apt-get install qemu-user-static)" >&2; exit 1; }
[ "$(uname -m)" = x86_64 ] || { echo "test-arm64: runs on x86-64 (it compares with the amd64 image)" >&2; exit 1; }
version=$(sed -n 's/^project(efa-dra-driver VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
amd64_tag=localhost/efa-dra-driver:${version}
arm64_tag=localhost/efa-dra-driver:${version}-arm64
tests_tag=localhost/efa-dra-driver-unit-tests:${version}-arm64
podman_run_flags=(--runtime /usr/sbin/runc)
limits=(--ulimit nofile=20000:20000 --ulimit nproc=1000:1000)

work=$(mktemp -d)
containers=()
cleanup() {
  local c
  for c in "${containers[@]}"; do podman rm -f "$c" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

started=$SECONDS
echo "--- images (podman's layer cache makes an unchanged one a no-op)"
scripts/build-image.sh --arch amd64 "$amd64_tag"
scripts/build-image.sh --arch arm64 "$arm64_tag"
images_done=$SECONDS

# root_of TAG DIR: the image's root filesystem, unpacked into DIR.
root_of() {
  local c
  c=$(podman create "$1" version)
  containers+=("$c")
  mkdir -p "$2"
  podman export "$c" | tar -x -C "$2"
}
root_of "$amd64_tag" "$work/amd64"
root_of "$arm64_tag" "$work/arm64"
# ELF e_machine 183: AArch64.
[ "$(od -An -tu2 -j18 -N2 "$work/arm64/usr/bin/efa-dra-driver" | tr -d ' ')" = 183 ] \
  || { echo "test-arm64: the arm64 image's binary is not an aarch64 ELF" >&2; exit 1; }

# The arm64 image's scanner-visible packages (status.d and SBOM, read as a scanner would): the
# same Debian packages as amd64's, each the arm64 build (or arch all), plus the cross
# toolchain's libgcc-12-dev-arm64-cross: AArch64 code calls libgcc's outline atomics
# (__aarch64_cas4_relax & co., linked from its libgcc.a into the static gRPC/abseil code), which
# x86-64 code never needs. Any other difference fails.
scripts/image-packages.py "$work/amd64" > "$work/amd64.packages"
scripts/image-packages.py "$work/arm64" > "$work/arm64.packages"
cut -d' ' -f1 "$work/amd64.packages" > "$work/amd64.names"
cut -d' ' -f1 "$work/arm64.packages" | grep -vx 'libgcc-12-dev-arm64-cross' > "$work/arm64.names"
packages_ok=1
if awk '$3 != "arm64" && $3 != "all" {bad = 1; print "test-arm64: not an arm64 package: " $0} END {exit bad}' \
     "$work/arm64.packages" \
   && cmp -s "$work/amd64.names" "$work/arm64.names"; then
  echo "arm64 image: $(wc -l < "$work/arm64.packages") packages recorded, each arm64 or all, the same names as amd64's (+ the cross libgcc)"
else
  packages_ok=0
  diff "$work/amd64.names" "$work/arm64.names" || true
fi

run_amd64() { chroot "$work/amd64" /usr/bin/efa-dra-driver "$@"; }
run_arm64() { "$qemu" -L "$work/arm64" "$work/arm64/usr/bin/efa-dra-driver" "$@"; }

echo "--- a) discover on every bundled topology: arm64 (qemu) against amd64"
fixtures=0 differing=0
for yaml in test/fixtures/topologies/*.yaml; do
  fixture=$(basename "$yaml" .yaml)
  fixtures=$((fixtures + 1))
  result="identical"
  for view in devices slices; do
    args=(discover --fixture "$fixture" -o json)
    [ "$view" = devices ] || args+=(--slices --node-name arm64-tier)
    out=$work/$fixture.$view
    if ! run_amd64 "${args[@]}" > "$out.amd64" 2> "$out.amd64.err"; then
      result="amd64 failed ($view): $(head -c 300 "$out.amd64.err")"
      break
    fi
    if ! run_arm64 "${args[@]}" > "$out.arm64" 2> "$out.arm64.err"; then
      result="arm64 failed ($view): $(head -c 300 "$out.arm64.err")"
      break
    fi
    if ! cmp -s "$out.amd64" "$out.arm64"; then
      result="DIFFERENT ($view):"$'\n'"$(diff -u "$out.amd64" "$out.arm64" | head -40)"
      break
    fi
  done
  if [ "$result" = identical ]; then
    devices=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["devices"]))' "$work/$fixture.devices.amd64")
    slice_bytes=$(wc -c < "$work/$fixture.slices.amd64")
    echo "$fixture: identical JSON ($devices devices; ResourceSlices $slice_bytes bytes)"
  else
    differing=$((differing + 1))
    echo "$fixture: $result"
  fi
done
echo "a) $((fixtures - differing)) of $fixtures topologies identical on arm64 and amd64"
compare_done=$SECONDS

echo "--- b) unit tests of discovery, slices, claims, neuron, cross-built for arm64, under qemu"
scripts/build-image.sh --arch arm64 --target unit-tests "$tests_tag"
log=$work/ctest.log
# Excluded, for a reason of the test container, not of arm64 or qemu-user: the two CdiPodmanTest
# tests run podman on the CDI spec the preparer wrote, and the test image has no podman (it
# would be podman in podman); they skip with
#   "/usr/bin/podman is missing (apt-get install podman runc busybox-static)".
# They run in every x86-64 tier (the spec is the same code on both architectures).
excluded='^CdiPodmanTest\.(TheContainerSeesExactlyTheAllocatedEfas|TwoClaimsInOneContainerGetTheUnionOfTheirEfas)$'
rc=0
# NET_ADMIN: KernelWatcherTest creates a dummy netdev in the container's network namespace;
# MKNOD (not in podman 4's default set): the mknod tests make char devices in their temp trees.
# bash's `time`: the CPU the tests took, next to the wall time, for the tier's cost figures.
# /tmp on a tmpfs (exec, dev: the tests run programs and make char devices in their trees): the
# tests fsync each checkpoint and CDI spec they write, which on the overlay over this VM's ext4
# cost more kernel time than the tests' own work under qemu.
podman "${podman_run_flags[@]}" run --rm "${limits[@]}" --cap-add NET_ADMIN --cap-add MKNOD \
  --tmpfs /tmp:rw,exec,dev,size=4g,mode=1777 "$tests_tag" \
  bash -c 'time ctest --test-dir /build-tests -L "^(discovery|slices|claims|neuron)\$" -E "$1" \
             --output-on-failure -j2' ctest "$excluded" 2>&1 | tee "$log" || rc=$?
# No skip is allowed here (an empty allow-list): a test that stops running under qemu fails.
python3 test/check_skips.py /dev/null "$log" || rc=1
summary=$(grep -E '^[0-9]+% tests passed' "$log" || echo "no ctest summary")
tests_done=$SECONDS

echo "--- arm64 tier"
echo "images $((images_done - started)) s, discover comparison $((compare_done - images_done)) s, unit tests $((tests_done - compare_done)) s"
echo "a) discover: $((fixtures - differing))/$fixtures topologies identical"
echo "b) unit tests under qemu: $summary"
[ "$differing" -eq 0 ] && [ "$rc" -eq 0 ] && [ "$packages_ok" -eq 1 ]

# efa-dra-driver image, for amd64 or arm64 (`--platform linux/<arch>`). Stages:
#   build    compiles the driver from source on Debian bookworm; it runs on the build
#            platform and cross-compiles when the target differs (Debian multiarch: the
#            target's -dev packages, crossbuild-essential, cmake/toolchain-*.cmake), so an
#            arm64 image is built on x86-64 without emulating the compiler;
#   collect  copies out the binary and exactly the files it loads: its ldd closure, the EFA
#            provider libibverbs dlopens, and the CA bundle, and proves the result runs;
#   unit-tests  (only with --target unit-tests) the pure modules' unit tests built for the
#            target, run under qemu-user when it is foreign (scripts/test-arm64.sh);
#   final    `scratch` + that tree.
# Why the ldd closure and not the runtime packages by name: design.md §7 sets an image budget
# of 40 MB, and bookworm-slim alone is about 75 MB before a single library; the closure is the
# libraries the binary actually maps, all from the same Debian packages the build linked
# against. The price: no shell and no apt in the image; scanners read the packages from the
# distroless-style /var/lib/dpkg/status.d (the versions are those of the build stage's bookworm
# packages; rebuild the image to pick up a Debian security update).
#
#   scripts/build-image.sh [--arch amd64|arm64|all]   (podman, offline-capable; see the script)
#   docker buildx build --platform linux/arm64 -t efa-dra-driver .  (with registry access)
ARG BASE_IMAGE=debian:bookworm-slim

FROM --platform=$BUILDPLATFORM ${BASE_IMAGE} AS build
# TARGETARCH: the image's architecture (Debian and OCI spell amd64/arm64 alike).
ARG TARGETARCH
# The toolchain and -dev packages first: this layer is cached across source changes.
COPY scripts/apt-install-for-target.sh /usr/local/bin/
RUN apt-install-for-target.sh "${TARGETARCH:-$(dpkg --print-architecture)}" \
      g++ cmake ninja-build pkg-config \
      libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc \
      libibverbs-dev libnl-3-dev libnl-route-3-dev nlohmann-json3-dev libspdlog-dev \
      libcli11-dev libyaml-cpp-dev libssl-dev libcpp-httplib-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt CMakePresets.json ./
COPY cmake cmake
COPY proto proto
COPY include include
COPY src src
COPY data data
COPY test/fixtures/topologies test/fixtures/topologies
ARG GIT_COMMIT=unknown
# BUILD_JOBS: compile jobs (scripts/build-image.sh passes the machine's core count; empty: the
# build tool's default, which is cores + 2 for ninja).
ARG BUILD_JOBS=""
# Warnings are enforced by CI's builds; an image build must not fail on a new compiler's one.
# /etc/efadra-cross, for the later stages: the target, and the toolchain file and tool prefix
# when cross-compiling (empty natively).
RUN target=${TARGETARCH:-$(dpkg --print-architecture)}; cross=""; prefix=""; \
    if [ "$target" != "$(dpkg --print-architecture)" ]; then \
      case $target in \
        arm64) cross=-DCMAKE_TOOLCHAIN_FILE=/src/cmake/toolchain-aarch64-linux-gnu.cmake; prefix=aarch64-linux-gnu- ;; \
        *) echo "no cross toolchain for $target" >&2; exit 1 ;; \
      esac; \
    fi; \
    printf 'target=%s\ncross=%s\nprefix=%s\n' "$target" "$cross" "$prefix" > /etc/efadra-cross \
    && cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DEFADRA_BUILD_TESTS=OFF \
      -DEFADRA_BUILD_BENCH=OFF -DEFADRA_WERROR=OFF -DEFADRA_GIT_COMMIT=${GIT_COMMIT} $cross \
    && cmake --build /build --target efa-dra-driver --parallel ${BUILD_JOBS} \
    && ${prefix}strip /build/efa-dra-driver

FROM build AS collect
# ca-certificates: for API servers reached through a kubeconfig with a public CA (in-cluster,
# the ServiceAccount's own ca.crt is used).
# qemu-user-static (foreign targets only): collect-closure.sh asks the target's loader for the
# closure, and the proof below runs the binary, through it.
RUN . /etc/efadra-cross; qemu=""; [ -z "$prefix" ] || qemu=qemu-user-static; \
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      ca-certificates $qemu && rm -rf /var/lib/apt/lists/*
# scripts/collect-closure.sh copies the binary's ldd closure, the EFA provider libibverbs
# dlopens and the CA bundle into /out, and records each Debian package it took files from in
# /out/var/lib/dpkg/status.d/<package> and an SPDX SBOM (/out/usr/share/sbom), so scanners see
# the image's packages and versions. chroot then proves the tree runs (a foreign binary through
# a static qemu-user copied into the tree for that one run: nothing else from this stage is
# visible to the loader).
COPY scripts/collect-closure.sh /usr/local/bin/
ARG VERSION=0.1.0
# The link map (Release links gRPC, protobuf and abseil from static archives) names the archives
# whose objects are in the binary: their packages are recorded too.
RUN /usr/local/bin/collect-closure.sh /build/efa-dra-driver /out "${VERSION}" /build/efa-dra-driver.map \
    && . /etc/efadra-cross && if [ -z "$prefix" ]; then chroot /out /usr/bin/efa-dra-driver version; \
    else cp "/usr/bin/qemu-${prefix%%-*}-static" /out/tmp/qemu && chroot /out /tmp/qemu /usr/bin/efa-dra-driver version \
      && rm /out/tmp/qemu; fi

# The pure modules' unit tests (discovery, slices, claims, neuron and the modules they need),
# built for the target like the driver; scripts/test-arm64.sh runs them (`ctest` under
# qemu-user for a foreign target, via the toolchain file's CMAKE_CROSSCOMPILING_EMULATOR).
# discover's command tests run the image's own binary (/build/efa-dra-driver).
FROM build AS unit-tests
RUN . /etc/efadra-cross; qemu=""; [ -z "$prefix" ] || qemu=qemu-user-static; \
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libgtest-dev:$target libgmock-dev:$target python3 python3-yaml python3-jsonschema iproute2 $qemu \
    && rm -rf /var/lib/apt/lists/*
COPY test test
ARG BUILD_JOBS=""
RUN . /etc/efadra-cross \
    && cmake -S . -B /build-tests -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-O1 \
      -DEFADRA_MODULES="core;sysfstree;neuron;discovery;kube;apidouble;slices;observe;claims" \
      -DEFADRA_BUILD_BENCH=OFF $cross \
    && cmake --build /build-tests --target efadra_discovery_test efadra_slices_test \
      efadra_claims_test efadra_neuron_test claims_crash_child --parallel ${BUILD_JOBS} \
    && cp /build/efa-dra-driver /build-tests/
CMD ["ctest", "--test-dir", "/build-tests", "-L", "^(discovery|slices|claims|neuron)$", \
     "--output-on-failure", "-j2"]

FROM scratch
ARG VERSION=0.1.0
ARG GIT_COMMIT=unknown
LABEL org.opencontainers.image.title="efa-dra-driver" \
      org.opencontainers.image.description="Kubernetes DRA driver for AWS Elastic Fabric Adapter devices" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/efa-dra-driver/efa-dra-driver" \
      org.opencontainers.image.base.name="scratch"
COPY --from=collect /out /
ENTRYPOINT ["/usr/bin/efa-dra-driver"]
CMD ["run"]

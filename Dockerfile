# efa-dra-driver image. Three stages:
#   build    compiles the driver from source on Debian bookworm;
#   collect  copies out the binary and exactly the files it loads: its ldd closure, the EFA
#            provider libibverbs dlopens, and the CA bundle, and proves the result runs;
#   final    `scratch` + that tree.
# Why the ldd closure and not the runtime packages by name: design.md §7 sets an image budget
# of 40 MB, and bookworm-slim alone is about 75 MB before a single library; the closure is the
# libraries the binary actually maps, all from the same Debian packages the build linked
# against. The price: no shell and no apt in the image; scanners read the packages from the
# distroless-style /var/lib/dpkg/status.d (the versions are those of the build stage's bookworm
# packages; rebuild the image to pick up a Debian security update).
#
#   scripts/build-image.sh            (podman, offline-capable; see the script)
#   docker build -t efa-dra-driver .  (with registry access)
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
# The toolchain and -dev packages first: this layer is cached across source changes.
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
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
# Warnings are enforced by CI's builds; an image build must not fail on a new compiler's one.
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DEFADRA_BUILD_TESTS=OFF \
      -DEFADRA_BUILD_BENCH=OFF -DEFADRA_WERROR=OFF -DEFADRA_GIT_COMMIT=${GIT_COMMIT} \
    && cmake --build /build --target efa-dra-driver \
    && strip /build/efa-dra-driver

FROM build AS collect
# ca-certificates: for API servers reached through a kubeconfig with a public CA (in-cluster,
# the ServiceAccount's own ca.crt is used).
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      ca-certificates && rm -rf /var/lib/apt/lists/*
# scripts/collect-closure.sh copies the binary's ldd closure, the EFA provider libibverbs
# dlopens and the CA bundle into /out, and records each Debian package it took files from in
# /out/var/lib/dpkg/status.d/<package> and an SPDX SBOM (/out/usr/share/sbom), so scanners see
# the image's packages and versions. chroot then proves the tree runs.
COPY scripts/collect-closure.sh /usr/local/bin/
ARG VERSION=0.1.0
RUN /usr/local/bin/collect-closure.sh /build/efa-dra-driver /out "${VERSION}" \
    && chroot /out /usr/bin/efa-dra-driver version

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

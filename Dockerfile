# efa-dra-driver image. Three stages:
#   build    compiles the driver from source on Debian bookworm;
#   collect  copies out the binary and exactly the files it loads: its ldd closure, the EFA
#            provider libibverbs dlopens, and the CA bundle, and proves the result runs;
#   final    `scratch` + that tree.
# Why the ldd closure and not the runtime packages by name: design.md §7 sets an image budget
# of 40 MB, and bookworm-slim alone is about 75 MB before a single library; the closure is the
# libraries the binary actually maps, all from the same Debian packages the build linked
# against. The price: no shell, no apt and no dpkg database in the image, so image scanners
# that read dpkg status see no packages (the versions are those of the build stage's
# bookworm packages; rebuild the image to pick up a Debian security update).
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
      libcli11-dev libyaml-cpp-dev libcurl4-openssl-dev libssl-dev libcpp-httplib-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt CMakePresets.json ./
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
# Files are copied dereferenced into their canonical (/usr) directory; /lib and /lib64 become
# the usual merged-/usr links. libibverbs dlopens its EFA provider <libdir>/libibverbs/
# libefa-rdmav*.so, which Debian ships as a link to libefa: it stays a link to the same libefa
# file the binary links (efadv), so the loader maps one copy, not two.
RUN set -eu; \
    bin=/build/efa-dra-driver; \
    provider=$(echo /usr/lib/*/libibverbs/libefa-rdmav*.so); \
    put() { d=/out$(readlink -f "$(dirname "$1")"); mkdir -p "$d"; cp -L "$1" "$d/${2:-$(basename "$1")}"; }; \
    for lib in $(ldd "$bin" "$provider" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// && $2 ~ /^\(/ {print $1}' | sort -u); do \
      put "$lib"; \
    done; \
    mkdir -p /out/usr/bin "/out$(dirname "$provider")" /out/etc/libibverbs.d /out/etc/ssl/certs /out/tmp; \
    cp "$bin" /out/usr/bin/efa-dra-driver; \
    libefa=$(ldd "$bin" | awk '$1 ~ /^libefa\.so/ {print $1}'); \
    ln -s "../$libefa" "/out$(dirname "$provider")/$(basename "$provider")"; \
    cp /etc/libibverbs.d/efa.driver /out/etc/libibverbs.d/; \
    cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/; \
    ln -s usr/lib /out/lib; ln -s usr/lib64 /out/lib64; \
    chmod 1777 /out/tmp; \
    chroot /out /usr/bin/efa-dra-driver version; \
    du -sh /out

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

#!/usr/bin/env bash
# Builds the upstream components of the real-cluster tier from the Go module proxy, at the
# versions in versions.env, into a cache outside the repository:
#
#   ${EFA_DRA_E2E_CACHE:-${XDG_CACHE_HOME:-~/.cache}/efa-dra-driver-e2e}/<key>/bin
#
# <key> is the Kubernetes version plus a hash of versions.env and the components' go.mod/go.sum,
# so a changed pin builds anew and an unchanged one is reused (nothing is rebuilt when the
# directory is complete). The Go module and build caches live next to it (go/), not in ~/go.
# Our own Go test tools are rebuilt every time (Go's build cache makes that a few seconds):
# accel-driver (the GPU/Neuron DRA driver double), dra-cel (the scheduler's DRA CEL code over a
# device list, test/compat) and vap-cel (cel-go over the chart's admission policy, test/chart).
#
#   build-components.sh            build what is missing, print the bin directory last
#   build-components.sh --update   rewrite components/*/go.mod and go.sum from versions.env
#   build-components.sh --print-bin   only print the bin directory (nothing is built)
#   build-components.sh --only helm   build one component or tool (the chart tests need only
#                                     Helm, the compatibility tests only dra-cel)
#
# Needs Go >= 1.26 (Kubernetes 1.36's go.mod says so). runc, the CNI plugins and iproute2
# come from Debian (up.sh checks for them).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"

staging_version="v0.${KUBERNETES_VERSION#v1.}"
cache_root=${EFA_DRA_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/efa-dra-driver-e2e}
# Bump when the build flags in build() change, so that cached binaries are rebuilt.
recipe=1
key_hash=$( (echo "recipe $recipe"; cat "$here/versions.env" "$here"/components/*/go.mod \
             "$here"/components/*/go.sum 2>/dev/null || true) | sha256sum | cut -c1-10)
bin="$cache_root/$KUBERNETES_VERSION-$key_hash/bin"

export GOMODCACHE="$cache_root/go/mod" GOCACHE="$cache_root/go/build"
export GOFLAGS="-mod=readonly -trimpath" CGO_ENABLED=0 GOTOOLCHAIN=local GOWORK=off

# name | module | version | packages to build
components() {
  echo "kubernetes|k8s.io/kubernetes|$KUBERNETES_VERSION|k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubectl"
  echo "etcd|go.etcd.io/etcd/server/v3|$ETCD_VERSION|go.etcd.io/etcd/server/v3"
  echo "helm|helm.sh/helm/v3|$HELM_VERSION|helm.sh/helm/v3/cmd/helm"
  echo "containerd|github.com/containerd/containerd/v2|$CONTAINERD_VERSION|github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 github.com/containerd/containerd/v2/cmd/ctr"
}

# The Kubernetes staging modules (k8s.io/api, k8s.io/client-go, ...): k8s.io/kubernetes maps
# them to ./staging in its own go.mod, which a consumer does not see, so each one is replaced
# with its published v0.<minor>.<patch>.
staging_modules() {
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  sed -n 's#^\t\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod"
}

check_go() {
  command -v go >/dev/null || { echo "build-components: needs Go >= 1.26 (go not on PATH)" >&2; exit 3; }
  local v
  v=$(go env GOVERSION | sed 's/^go//')
  if [ "$(printf '%s\n1.26\n' "$v" | sort -V | head -1)" != "1.26" ]; then
    echo "build-components: needs Go >= 1.26, found go$v" >&2
    exit 3
  fi
}

update() {
  local name module version packages dir
  while IFS='|' read -r name module version packages; do
    dir="$here/components/$name"
    mkdir -p "$dir"
    printf '// Pins %s %s for the real-cluster tier (test/e2e/cluster/build-components.sh).\nmodule efadra.test/cluster/components/%s\n\ngo 1.26.0\n' \
      "$module" "$version" "$name" > "$dir/go.mod"
    rm -f "$dir/go.sum"
    (cd "$dir"
     go mod edit -require "$module@$version"
     if [ "$name" = kubernetes ]; then
       for staging in $(staging_modules); do go mod edit -replace "$staging=$staging@$staging_version"; done
     fi
     for p in $packages; do go mod edit -tool "$p"; done
     GOFLAGS=-mod=mod go mod tidy)
    echo "build-components: components/$name pins $module $version"
  done < <(components)
}

# Every go.mod must require exactly the version versions.env names.
check_pins() {
  local name module version packages pinned
  while IFS='|' read -r name module version packages; do
    pinned=$(cd "$here/components/$name" && go list -m -f '{{.Version}}' "$module")
    if [ "$pinned" != "$version" ]; then
      echo "build-components: versions.env says $module $version but components/$name/go.mod has $pinned; run $0 --update" >&2
      exit 2
    fi
  done < <(components)
}

build() { # [ONLY]
  local name module version packages start ldflags tags out only=${1:-}
  mkdir -p "$bin"
  while IFS='|' read -r name module version packages; do
    [ -z "$only" ] || [ "$name" = "$only" ] || continue
    if [ -f "$bin/.built-$name" ]; then
      echo "build-components: $name $version: cached"
      continue
    fi
    ldflags="-s -w" tags=""
    case "$name" in
      kubernetes)
        local minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
        ldflags+=" -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION"
        ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
        ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
        # client-go's copy: what kubectl version prints as its client.
        ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION"
        ldflags+=" -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor" ;;
      helm) ldflags+=" -X helm.sh/helm/v3/internal/version.version=$version" ;;
      containerd)
        ldflags+=" -X github.com/containerd/containerd/v2/version.Version=$version"
        # The btrfs, devmapper and zfs snapshotters need cgo and headers; overlayfs is used.
        tags="no_btrfs no_devmapper no_zfs" ;;
    esac
    start=$(date +%s)
    # go build names a binary after its package path; etcd's ends in "server/v3".
    out="$bin/"; [ "$name" = etcd ] && out="$bin/etcd"
    (cd "$here/components/$name" && go build -tags "$tags" -ldflags "$ldflags" -o "$out" $packages)
    echo "build-components: $name $version: built in $(( $(date +%s) - start )) s"
    touch "$bin/.built-$name"
  done < <(components)
  for tool in "accel-driver:$here/accel-driver" "dra-cel:$here/../../compat/dra-cel" \
              "vap-cel:$here/../../compat/vap-cel"; do
    [ -z "$only" ] || [ "${tool%%:*}" = "$only" ] || continue
    start=$(date +%s)
    (cd "${tool#*:}" && go build -ldflags "-s -w" -o "$bin/${tool%%:*}" .)
    echo "build-components: ${tool%%:*} (our test tool): built in $(( $(date +%s) - start )) s"
  done
}

only=""
case "${1:-}" in
  --print-bin) echo "$bin"; exit 0 ;;
  --update) check_go; update; exit 0 ;;
  --only) only=${2:?--only needs a component name}
          # grep without -q reads all its input: with -q it may exit at the first match and
          # the writer's SIGPIPE fails the pipeline under pipefail.
          { components | cut -d'|' -f1; echo accel-driver; echo dra-cel; echo vap-cel; } | grep -x "$only" >/dev/null ||
            { echo "build-components: no component $only" >&2; exit 2; } ;;
  "") ;;
  *) echo "usage: $0 [--update|--print-bin|--only NAME]" >&2; exit 2 ;;
esac

check_go
check_pins
total_start=$(date +%s)
build "$only"
[ -z "$only" ] || { echo "$bin/$only"; exit 0; }
echo "build-components: done in $(( $(date +%s) - total_start )) s; binaries:"
for f in "$bin"/*; do printf '  %-26s %s\n' "$(basename "$f")" "$(du -h "$f" | cut -f1)"; done
echo "$bin"

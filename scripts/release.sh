#!/usr/bin/env bash
# Publishes a release of efa-dra-driver to an OCI registry: the image for every architecture,
# combined into one image index (a manifest list) so one tag serves x86-64 and Grace (arm64)
# nodes, and the Helm chart as an OCI artifact whose defaults name that image.
#
#   scripts/release.sh [--arch all|amd64|arm64] [--sign-key cosign.key] [--plain-http]
#                      REGISTRY VERSION
#
#   REGISTRY  host[:port][/path], e.g. 123456789012.dkr.ecr.us-west-2.amazonaws.com
#             (log in first: `aws ecr get-login-password | podman login --username AWS
#             --password-stdin REGISTRY` and the same for `helm registry login`)
#   VERSION   SemVer (Helm requires it), e.g. 0.2.0
#
# What it pushes:
#   REGISTRY/efa-dra-driver:VERSION          image index (OCI), one image per --arch
#   REGISTRY/charts/efa-dra-driver:VERSION   the chart, version = appVersion = VERSION, with
#                                            image.repository = REGISTRY/efa-dra-driver, so
#                                            `helm install efa-dra-driver
#                                            oci://REGISTRY/charts/efa-dra-driver --version
#                                            VERSION` runs this very image with no values.
# With --sign-key (a cosign key pair's private key; COSIGN_PASSWORD in the environment), both
# are signed by digest with `cosign sign` (cosign from PATH, or COSIGN=/path/to/cosign); the
# signatures go to the same registry, no transparency log is written.
#
# Registries on a loopback address are spoken to over plain HTTP (as docker and containerd do
# by default for 127.0.0.0/8); --plain-http forces it for any other. HELM names the helm
# binary (default: helm on PATH). The last lines printed are the pushed references with their
# digests.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "release: $*" >&2; exit 1; }
usage() { sed -n '4,8p' "$0" >&2; exit 2; }

arches=all sign_key="" plain_http=false
while [ $# -gt 0 ]; do
  case $1 in
    --arch) arches=${2:?--arch needs a value}; shift 2 ;;
    --sign-key) sign_key=${2:?--sign-key needs a file}; shift 2 ;;
    --plain-http) plain_http=true; shift ;;
    -h|--help) usage ;;
    -*) die "unknown option $1" ;;
    *) break ;;
  esac
done
[ $# -eq 2 ] || usage
registry=${1%/} version=$2

# SemVer 2.0 (Helm refuses anything else as a chart version).
semver='^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$'
[[ $version =~ $semver ]] || die "VERSION '$version' is not SemVer (e.g. 0.2.0 or 0.2.0-rc.1)"
[[ $registry =~ ^[A-Za-z0-9.-]+(:[0-9]+)?(/[a-z0-9._/-]+)?$ ]] ||
  die "REGISTRY '$registry' is not host[:port][/path]"
case $arches in
  all) arches=(amd64 arm64) ;;
  amd64|arm64) arches=("$arches") ;;
  *) die "--arch must be all, amd64 or arm64, not '$arches'" ;;
esac
host=${registry%%/*}
case ${host%:*} in 127.*|localhost|'[::1]') plain_http=true ;; esac

helm_bin=${HELM:-helm}
command -v "$helm_bin" > /dev/null || die "needs helm (set HELM=/path/to/helm)"
command -v podman > /dev/null || die "needs podman"
if [ -n "$sign_key" ]; then
  [ -r "$sign_key" ] || die "cannot read the signing key $sign_key"
  cosign_bin=${COSIGN:-cosign}
  command -v "$cosign_bin" > /dev/null || die "--sign-key needs cosign (set COSIGN=/path/to/cosign)"
fi
tls_flags=() helm_flags=() cosign_flags=()
if $plain_http; then
  tls_flags=(--tls-verify=false) helm_flags=(--plain-http) cosign_flags=(--allow-insecure-registry --allow-http-registry)
fi

source_version=$(sed -n 's/^project(efa-dra-driver VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
if [ "${version%%[-+]*}" != "$source_version" ]; then
  echo "release: note: VERSION $version is not the source's version $source_version (CMakeLists.txt);" \
       "the image is labelled $version, the binary reports $source_version" >&2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- images, one per architecture, then the index that holds them.
image=$registry/efa-dra-driver:$version
index=localhost/efa-dra-driver-release:$version
podman manifest exists "$index" && podman manifest rm "$index" > /dev/null
podman manifest create "$index" > /dev/null
for arch in "${arches[@]}"; do
  local_tag=localhost/efa-dra-driver:$version-$arch
  # build-image.sh fails unless the image it made says linux/$arch.
  IMAGE_VERSION=$version scripts/build-image.sh --arch "$arch" "$local_tag"
  podman manifest add "$index" "containers-storage:$local_tag" > /dev/null
done
podman manifest push --all --format oci "${tls_flags[@]}" --digestfile "$work/index.digest" \
  "$index" "docker://$image"
index_digest=$(cat "$work/index.digest")

# --- the chart: this version, and the image just pushed as its default.
cp -r deploy/helm/efa-dra-driver "$work/chart"
values=$work/chart/values.yaml
grep -q '^  repository: ' "$values" || die "$values has no image.repository line to set"
sed -i "0,/^  repository: .*/s||  repository: $registry/efa-dra-driver|" "$values"
"$helm_bin" package "$work/chart" --version "$version" --app-version "$version" \
  --destination "$work" > /dev/null
chart_tgz=$work/efa-dra-driver-$version.tgz
"$helm_bin" push "$chart_tgz" "oci://$registry/charts" "${helm_flags[@]}" 2>&1 | tee "$work/push.log"
chart_digest=$(sed -n 's/^Digest: //p' "$work/push.log")
[ -n "$chart_digest" ] || die "helm push printed no digest"

if [ -n "$sign_key" ]; then
  for ref in "$registry/efa-dra-driver@$index_digest" "$registry/charts/efa-dra-driver@$chart_digest"; do
    "$cosign_bin" sign --yes --key "$sign_key" --tlog-upload=false "${cosign_flags[@]}" "$ref"
  done
fi

echo "release: image $image@$index_digest (${arches[*]})"
echo "release: chart oci://$registry/charts/efa-dra-driver:$version@$chart_digest"
[ -n "$sign_key" ] && echo "release: both signed with $sign_key"
echo "release: install with: helm install efa-dra-driver oci://$registry/charts/efa-dra-driver" \
     "--version $version --namespace kube-system${helm_flags:+ ${helm_flags[*]}}"

#!/usr/bin/env bash
# Validates the chart as Helm renders it (default values and every optional object) and
# docs/examples against Kubernetes' structural schema with ../shared/tools/k8s-schema. That tool
# lives outside the repository: without it this test is skipped (exit 77) and says so. (The
# real-cluster tier checks the same objects with a server-side dry run.)
# Usage: k8s_schema_check.sh HELM REPO_ROOT SHARED_DIR KUBE_VERSION
set -euo pipefail
helm=$1 root=$2 shared=$3 kube_version=$4
check="$shared/tools/k8s-schema/check.py"
if [[ ! -f $check ]]; then
  echo "SKIP: $check not found (it is in ../shared next to the project, not in the repository)"
  exit 77
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export HOME=$out
render() { "$helm" template efa "$root/deploy/helm/efa-dra-driver" --kube-version "$kube_version" "$@"; }
render > "$out/default.yaml"
render --set metrics.service.enabled=true --set stateDir=/var/lib/efa > "$out/options.yaml"
render --set hostNetwork=false --set updateStrategy.maxSurge=0 \
  --set updateStrategy.maxUnavailable=1 --set extraTolerations[0].key=dedicated \
  --set extraTolerations[0].operator=Exists --set imagePullSecrets[0].name=regcred \
  --set serviceAccount.annotations.a=b --set podAnnotations.c=d \
  --set nodeSelector.node\\.kubernetes\\.io/instance-type=p5.48xlarge > "$out/pod-network.yaml"
/usr/bin/python3 "$check" "$out/default.yaml" "$out/options.yaml" "$out/pod-network.yaml" \
  "$root"/docs/examples/*.yaml

# Shared by up.sh, down.sh, install.sh, run.sh and the scenarios: where the cluster lives and
# how to reach it. Source it; it sets no shell options of its own.
#
# The whole cluster runs in a network namespace of its own (made by up.sh): etcd, the control
# plane, containerd, the kubelet and every pod see only that namespace's loopback, a veth
# holding the node address and the pods' bridge. Nothing in it has a route off the
# machine, so no component can reach (or wait on) a network it should not, and the standard
# ports (6443, 10250, 2379) cannot clash with anything on the host. Processes enter it with
# nsenter --net only, so they keep the host's mounts (/sys/fs/cgroup, /proc).

cluster_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$cluster_dir/../../.." && pwd)

WORK=${EFA_DRA_E2E_WORK:-/tmp/efa-dra-driver-cluster}
NETNS=${EFA_DRA_E2E_NETNS:-efa-dra-e2e}
NODE_NAME=${EFA_DRA_E2E_NODE:-efa-node-1}
# The node's address inside the namespace (on a veth) and the pods' subnet.
NODE_IP=10.250.0.1
POD_SUBNET=10.251.0.0/24
SERVICE_SUBNET=10.96.0.0/24
SERVICE_IP=10.96.0.1
# The OCI registry release.sh publishes to and containerd pulls from (up.sh starts it): on the
# host's loopback and, forwarded, on the namespace's, at the same address.
REGISTRY_PORT=${EFA_DRA_E2E_REGISTRY_PORT:-5000}
REGISTRY=127.0.0.1:$REGISTRY_PORT
# The release install.sh publishes there and installs, and the driver image it names.
RELEASE_VERSION=${EFA_DRA_E2E_RELEASE_VERSION:-0.2.0-test}
IMAGE=$REGISTRY/efa-dra-driver:$RELEASE_VERSION
# The DRA feature gates Kubernetes 1.36 still has, set explicitly on every component so a
# change of default in a later pin shows up as a flag error, not as a silent behaviour change.
# All are beta and on by default in 1.36 (pkg/features/kube_features.go); DRAAdminAccess and
# DRAPrioritizedList are GA there and DRADeviceTaintRules/DRAListTypeAttributes stay off.
feature_gates=(
  DRADeviceTaints=true DRAExtendedResource=true DRAConsumableCapacity=true
  DRAPartitionableDevices=true DRADeviceBindingConditions=true
  DRAResourceClaimDeviceStatus=true DRAResourceClaimGranularStatusAuthorization=true
  DRASchedulerFilterTimeout=true ResourceHealthStatus=true ResourceHealthStatusMessage=true
)
FEATURE_GATES=$(IFS=,; echo "${feature_gates[*]}")

BIN=$("$cluster_dir/build-components.sh" --print-bin)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '[%s] FATAL: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

# Runs a command in the cluster's network namespace.
in_ns() { nsenter --net="/var/run/netns/$NETNS" -- "$@"; }

# kubectl and helm as the cluster admin.
k() { in_ns "$BIN/kubectl" --kubeconfig "$WORK/kubeconfig" "$@"; }
helm() { in_ns env HOME="$WORK/helm-home" "$BIN/helm" --kubeconfig "$WORK/kubeconfig" "$@"; }
ctr() { "$BIN/ctr" --address "$WORK/containerd/containerd.sock" --namespace k8s.io "$@"; }

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every half second until it succeeds;
# fails naming DESCRIPTION and the command's last output when the time is up.
wait_for() {
  local seconds=$1 what=$2 deadline out
  shift 2
  deadline=$(( $(date +%s) + seconds ))
  until out=$("$@" 2>&1); do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "timed out after ${seconds}s waiting for $what; last output: $out" >&2
      return 1
    fi
    sleep 0.5
  done
}

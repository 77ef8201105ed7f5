#!/usr/bin/env bash
# Starts a single-node Kubernetes cluster of upstream components (built by
# build-components.sh) in a work directory: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kube-proxy, containerd and the kubelet, each a process with its log in
# $WORK/logs, all in the network namespace $NETNS (lib.sh says why). The node carries the
# sysfs and /dev trees of one EFA instance type (generated, with real char devices) under
# $WORK/node/<instance type> and the label node.kubernetes.io/instance-type.
#
#   up.sh [--topology p5.48xlarge]      (EFA_DRA_E2E_WORK picks the work dir)
#
# Writes $WORK/kubeconfig (admin) and $WORK/bin/{kubectl,helm} (wrappers that enter the
# namespace) and returns once the node is Ready. Needs root, the binaries, runc, the CNI
# plugins, openssl and a build of make_node_tree (run.sh builds it). down.sh undoes all of it.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

topology=p5.48xlarge
while [ $# -gt 0 ]; do
  case "$1" in
    --topology) topology=$2; shift 2 ;;
    *) die "usage: up.sh [--topology <instance type>]" ;;
  esac
done
build_dir=${EFA_DRA_BUILD_DIR:-$repo_root/build}

[ "$(id -u)" -eq 0 ] || die "up.sh needs root (network namespace, mknod, cgroups, containerd)"
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubectl containerd containerd-shim-runc-v2 ctr helm; do
  [ -x "$BIN/$b" ] || die "$BIN/$b missing: run $cluster_dir/build-components.sh first"
done
[ -x /usr/sbin/runc ] || die "runc missing (apt-get install runc)"
[ -x /usr/lib/cni/bridge ] || die "CNI plugins missing (apt-get install containernetworking-plugins)"
[ -x "$build_dir/test/e2e/make_node_tree" ] || die "$build_dir/test/e2e/make_node_tree missing (cmake --build --preset default)"
if [ -e "$WORK/pids" ]; then
  log "a cluster is (or was) running in $WORK; stopping it first"
  "$cluster_dir/down.sh"
fi

# A fresh cluster every time: etcd, kubelet and containerd state of an earlier run would bring
# back its pods and claims.
if awk -v work="$WORK" '$2 ~ "^"work"/" {found=1} END {exit !found}' /proc/mounts; then
  die "mounts under $WORK remain; run $cluster_dir/down.sh"
fi
rm -rf "$WORK"

started=$(date +%s)
log "work dir $WORK (node $NODE_NAME, topology $topology, network namespace $NETNS)"
mkdir -p "$WORK"/{pki,logs,pids,bin,etcd,cdi,cni/net.d,containerd,kubelet,images,helm-home}

# --- network namespace: loopback, the node address, nothing routed out. The address sits on
# one end of a veth pair whose other end stays in the namespace too (this kernel has no dummy
# interfaces; a veth gives the link a carrier, so it counts as up).
ip netns add "$NETNS"
ip -n "$NETNS" link set lo up
ip -n "$NETNS" link add node0 type veth peer name node0-peer
ip -n "$NETNS" addr add "$NODE_IP/24" dev node0
ip -n "$NETNS" link set node0-peer up
ip -n "$NETNS" link set node0 up
# A route for Service IPs: a local connect() needs one before kube-proxy's DNAT rewrites the
# destination to the API server (the peer end is in this namespace, so nothing leaves it).
ip -n "$NETNS" route add "$SERVICE_SUBNET" dev node0
# The kubelet and kube-proxy expect these; they are per namespace.
in_ns sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.route_localnet=1

# --- PKI: one CA; serving certificates for the API server and kubelet, client certificates
# for each component (their user names are what RBAC and the Node authorizer key on).
pki=$WORK/pki
openssl_quiet() { openssl "$@" 2>/dev/null; }
openssl_quiet req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
  -subj "/CN=efa-dra-e2e-ca" -keyout "$pki/ca.key" -out "$pki/ca.crt"
# cert NAME SUBJECT [SANs]
cert() {
  local name=$1 subject=$2 sans=${3:-}
  openssl_quiet req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$subject" \
    -keyout "$pki/$name.key" -out "$pki/$name.csr"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=digitalSignature,keyEncipherment"
    if [ -n "$sans" ]; then
      echo "extendedKeyUsage=serverAuth,clientAuth"
      echo "subjectAltName=$sans"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } > "$pki/$name.ext"
  openssl_quiet x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 30 -extfile "$pki/$name.ext" -out "$pki/$name.crt"
}
cert apiserver "/CN=kube-apiserver" \
  "IP:127.0.0.1,IP:$NODE_IP,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
cert kubelet-serving "/CN=$NODE_NAME" "IP:127.0.0.1,IP:$NODE_IP,DNS:$NODE_NAME"
cert admin "/O=system:masters/CN=e2e-admin"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
cert controller-manager "/CN=system:kube-controller-manager"
cert scheduler "/CN=system:kube-scheduler"
cert kube-proxy "/CN=system:kube-proxy"
cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME"
openssl_quiet genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/sa.key"
openssl_quiet pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub"

# kubeconfig FILE USER: the API server at the node address, authenticated by USER's cert.
kubeconfig() {
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://$NODE_IP:6443
    certificate-authority: $pki/ca.crt
users:
- name: $2
  user:
    client-certificate: $pki/$2.crt
    client-key: $pki/$2.key
contexts:
- name: e2e
  context: {cluster: e2e, user: $2}
current-context: e2e
EOF
}
kubeconfig "$WORK/kubeconfig" admin
for user in controller-manager scheduler kube-proxy kubelet; do kubeconfig "$WORK/$user.kubeconfig" "$user"; done

# start NAME COMMAND...: runs COMMAND in the namespace, log in logs/NAME.log, pid in pids/NAME.
start() {
  local name=$1
  shift
  nsenter --net="/var/run/netns/$NETNS" -- "$@" >> "$WORK/logs/$name.log" 2>&1 &
  echo $! > "$WORK/pids/$name"
}
# The kubelet and containerd are restarted by scenarios; they keep their command lines here.
save_command() { local name=$1; shift; printf '%q ' "$@" > "$WORK/pids/$name.cmd"; }
start_saved() { start "$1" bash -c "exec $(cat "$WORK/pids/$1.cmd")"; }

# --- etcd (plain HTTP on the namespace's loopback only).
start etcd "$BIN/etcd" --name e2e --data-dir "$WORK/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster e2e=http://127.0.0.1:2380 --log-level warn --unsafe-no-fsync
wait_for 60 "etcd" in_ns curl -sf http://127.0.0.1:2379/health
log "etcd up"

# --- kube-apiserver, with an audit log of every write (the resilience scenarios count
# ResourceSlice writes from it).
cat > "$WORK/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: None
EOF
start kube-apiserver "$BIN/kube-apiserver" \
  --etcd-servers=http://127.0.0.1:2379 \
  --bind-address=0.0.0.0 --advertise-address="$NODE_IP" --secure-port=6443 \
  --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
  --client-ca-file="$pki/ca.crt" \
  --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-cluster-ip-range="$SERVICE_SUBNET" \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
  --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
  --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
  --kubelet-preferred-address-types=InternalIP \
  --audit-policy-file="$WORK/audit-policy.yaml" --audit-log-path="$WORK/logs/audit.log" \
  --audit-log-format=json --audit-log-maxsize=0 \
  --feature-gates="$FEATURE_GATES" --profiling=false --v=1
wait_for 120 "kube-apiserver /readyz" k get --raw /readyz
log "kube-apiserver up"

start kube-controller-manager "$BIN/kube-controller-manager" \
  --kubeconfig="$WORK/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$WORK/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$WORK/controller-manager.kubeconfig" \
  --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
  --use-service-account-credentials=true --leader-elect=false \
  --bind-address=127.0.0.1 --feature-gates="$FEATURE_GATES" --profiling=false --v=1
start kube-scheduler "$BIN/kube-scheduler" \
  --kubeconfig="$WORK/scheduler.kubeconfig" \
  --authentication-kubeconfig="$WORK/scheduler.kubeconfig" \
  --authorization-kubeconfig="$WORK/scheduler.kubeconfig" \
  --leader-elect=false --bind-address=127.0.0.1 --feature-gates="$FEATURE_GATES" --v=1

# kube-proxy makes the kubernetes Service (what in-cluster clients such as the driver use)
# reach the API server. Conntrack sysctls are left alone: the namespace's are not ours to size.
cat > "$WORK/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $WORK/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_SUBNET
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
EOF
start kube-proxy "$BIN/kube-proxy" --config="$WORK/kube-proxy.yaml" --v=1

# --- the OCI registry releases go to: Debian's docker-registry (distribution 2.8) on the host's
# 127.0.0.1:$REGISTRY_PORT, where scripts/release.sh pushes with podman and helm as it would to
# any registry (its image builds need the host's network, which the namespace lacks). The
# namespace sees the same registry at the same address: a socat there forwards its
# 127.0.0.1:$REGISTRY_PORT over a unix socket (the filesystem is shared, the networks are not)
# to a socat on the host that connects to the registry. So containerd and helm in the
# namespace pull what release.sh pushed, by the same names.
if ss -Hltn "sport = :$REGISTRY_PORT" | grep -q .; then
  die "port $REGISTRY_PORT is taken on the host; set EFA_DRA_E2E_REGISTRY_PORT to a free one"
fi
mkdir -p "$WORK/registry/storage"
cat > "$WORK/registry/config.yml" <<EOF
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $WORK/registry/storage
  delete:
    enabled: true
http:
  addr: $REGISTRY
EOF
/usr/bin/docker-registry serve "$WORK/registry/config.yml" >> "$WORK/logs/registry.log" 2>&1 &
echo $! > "$WORK/pids/registry"
socat "UNIX-LISTEN:$WORK/registry/forward.sock,fork" "TCP:$REGISTRY" >> "$WORK/logs/registry.log" 2>&1 &
echo $! > "$WORK/pids/registry-forward-host"
start registry-forward-namespace socat "TCP-LISTEN:$REGISTRY_PORT,bind=127.0.0.1,reuseaddr,fork" \
  "UNIX-CONNECT:$WORK/registry/forward.sock"
wait_for 30 "the registry on the host" curl -fsS "http://$REGISTRY/v2/"
wait_for 30 "the registry in the namespace" in_ns curl -fsS "http://$REGISTRY/v2/"
log "registry up at $REGISTRY (host and namespace)"

# --- containerd 2.x: CRI with CDI specs from $WORK/cdi, runc from Debian, the CNI bridge.
cat > "$WORK/containerd/config.toml" <<EOF
version = 3
root = "$WORK/containerd/root"
state = "$WORK/containerd/state"
[grpc]
  address = "$WORK/containerd/containerd.sock"
[plugins.'io.containerd.cri.v1.runtime']
  cdi_spec_dirs = ["$WORK/cdi"]
  # This machine grants root no CAP_SYS_RESOURCE, so runc cannot lower oom_score_adj (the
  # kubelet asks -998 for node-critical pods): keep it at containerd's own value instead.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$WORK/cni/net.d"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "$WORK/containerd/certs.d"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "localhost/efa-e2e/pause:1"
EOF
cat > "$WORK/cni/net.d/10-bridge.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "e2e-pods",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_SUBNET"}]],
              "dataDir": "$WORK/cni/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
# The release registry speaks plain HTTP, as a registry on loopback does.
mkdir -p "$WORK/containerd/certs.d/$REGISTRY"
cat > "$WORK/containerd/certs.d/$REGISTRY/hosts.toml" <<EOF
server = "http://$REGISTRY"
[host."http://$REGISTRY"]
  capabilities = ["pull", "resolve"]
EOF
save_command containerd env PATH="$BIN:$PATH" "$BIN/containerd" --config "$WORK/containerd/config.toml"
start_saved containerd
wait_for 60 "containerd" "$BIN/ctr" --address "$WORK/containerd/containerd.sock" version
log "containerd up"

# --- images: the sandbox (pause) and a busybox for workloads, both made here. The examples
# in docs/examples name real images (nvcr.io/nvidia/pytorch, amazonlinux, ...) that cannot be
# pulled here; busybox is tagged with those names, so the YAML is applied verbatim and the
# kubelet finds the image present (IfNotPresent) instead of pulling.
images=$WORK/images
gcc -static -Os -o "$images/pause" "$cluster_dir/images/pause.c"
mkdir -p "$images/pause-root" "$images/busybox-root/bin"
cp "$images/pause" "$images/pause-root/pause"
cp /bin/busybox "$images/busybox-root/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$images/busybox-root/bin/$applet"
done
import_image() { # ROOT NAME CMD-JSON
  local out
  out=$(tar -C "$1" -c . | podman import --change "CMD $3" - "$2" 2>&1) || die "podman import $2: $out"
  out=$(podman save --format docker-archive "$2" 2>&1 | ctr images import - 2>&1) || die "ctr import $2: $out"
}
import_image "$images/pause-root" localhost/efa-e2e/pause:1 '["/pause"]'
import_image "$images/busybox-root" localhost/efa-e2e/busybox:1 '["/bin/sh"]'
for alias in $(grep -ho 'image: .*' "$repo_root"/docs/examples/*.yaml | awk '{print $2}' | sort -u); do
  ctr images tag --force localhost/efa-e2e/busybox:1 "$alias" > /dev/null 2>&1 || die "ctr tag $alias"
done
log "images imported: $(ctr images ls -q 2>/dev/null | grep -vc '^sha256:') names"

# --- the node's EFA hardware: a generated tree with real char devices.
# Scenarios that change the node's hardware write another tree next to it.
"$build_dir/test/e2e/make_node_tree" "$topology" "$WORK/node/$topology/sys" "$WORK/node/$topology/dev"
echo "$WORK/node/$topology" > "$WORK/topology-dir"

# --- kubelet (cgroup v1 on this VM: failCgroupV1 false, cgroupfs driver; no swap check).
# syncFrequency 10s (default 1m): a pod whose NodePrepareResources failed is tried again only at
# its worker's next periodic sync, because SyncPod returns without an error after
# FailedPrepareDynamicResources (kuberuntime_manager.go) and the pod worker then waits the
# resync interval with up to 50 % jitter, not its 10 s error backoff. The resilience scenarios
# create a pod while the driver is down; with the default they waited 60-90 s for that retry.
# The kubelet sets vm.overcommit_memory, kernel.panic and kernel.panic_on_oops on the host
# (protectKernelDefaults would make it refuse to start instead); down.sh puts them back.
for sysctl in vm.overcommit_memory kernel.panic kernel.panic_on_oops; do
  echo "$sysctl=$(sysctl -n "$sysctl")"
done > "$WORK/host-sysctls"
cat > "$WORK/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
syncFrequency: 10s
containerRuntimeEndpoint: unix://$WORK/containerd/containerd.sock
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
clusterDomain: cluster.local
resolvConf: $WORK/resolv.conf
registerNode: true
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
featureGates:
$(for gate in "${feature_gates[@]}"; do echo "  ${gate%=*}: ${gate#*=}"; done)
EOF
: > "$WORK/resolv.conf"
save_command kubelet "$BIN/kubelet" --config="$WORK/kubelet.yaml" \
  --kubeconfig="$WORK/kubelet.kubeconfig" --root-dir="$WORK/kubelet" \
  --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" \
  --node-labels="node.kubernetes.io/instance-type=$topology" --v=2
start_saved kubelet
wait_for 120 "node $NODE_NAME registered" k get node "$NODE_NAME"
k wait --for=condition=Ready "node/$NODE_NAME" --timeout=120s > /dev/null \
  || die "node $NODE_NAME not Ready; see $WORK/logs/kubelet.log"

# Wrappers for people: `$WORK/bin/kubectl get pods -A` from the host.
for tool in kubectl helm; do
  cat > "$WORK/bin/$tool" <<EOF
#!/bin/sh
exec nsenter --net=/var/run/netns/$NETNS -- env HOME=$WORK/helm-home $BIN/$tool --kubeconfig $WORK/kubeconfig "\$@"
EOF
  chmod +x "$WORK/bin/$tool"
done
log "cluster up in $(( $(date +%s) - started )) s: node $NODE_NAME Ready ($topology)"
echo "  kubeconfig: $WORK/kubeconfig (API server https://$NODE_IP:6443 in network namespace $NETNS)"
echo "  kubectl:    $WORK/bin/kubectl get nodes"
echo "  logs:       $WORK/logs/"

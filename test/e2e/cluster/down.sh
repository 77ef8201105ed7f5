#!/usr/bin/env bash
# Stops the cluster up.sh started and removes what it left on the host: containers and their
# shims, mounts under the work dir, the pods' cgroups, the network namespace. The work dir
# stays (logs, audit log) unless --purge is given.
#
#   down.sh [--purge]
set -uo pipefail
. "$(dirname "$0")/lib.sh"

purge=false
[ "${1:-}" = --purge ] && purge=true

stop_pid() { # NAME: SIGTERM, then SIGKILL after 10 s
  local file="$WORK/pids/$1" pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null
  fi
  rm -f "$file"
}

# The kubelet first, so that it does not restart what is stopped next; then every container
# through containerd, so that no process of a pod outlives the cluster.
stop_pid kubelet
if [ -S "$WORK/containerd/containerd.sock" ]; then
  for task in $(ctr tasks ls -q 2>/dev/null); do
    ctr tasks kill --signal SIGKILL "$task" > /dev/null 2>&1
  done
  sleep 1
  for task in $(ctr tasks ls -q 2>/dev/null); do ctr tasks delete --force "$task" > /dev/null 2>&1; done
fi
stop_pid containerd
# Shims outlive containerd by design; ours name our socket on their command line.
for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $WORK/containerd/containerd.sock"); do
  kill -9 "$pid" 2>/dev/null
done
for name in kube-proxy kube-scheduler kube-controller-manager kube-apiserver etcd; do stop_pid "$name"; done
# Other processes a scenario started (the accelerator doubles): every pid file left.
for file in "$WORK"/pids/*; do
  [ -f "$file" ] && [ "${file%.cmd}" = "$file" ] && stop_pid "$(basename "$file")"
done

# Mounts below the work dir (overlay rootfs, pod volumes, netns bind mounts), deepest first.
awk -v work="$WORK" '$2 ~ "^"work"/" {print $2}' /proc/mounts | sort -r | while read -r mount; do
  umount -l "$mount" 2>/dev/null
done
# The kubelet's cgroups (cgroupfs driver, cgroup v1): kubepods/... in every hierarchy.
for hierarchy in /sys/fs/cgroup/*/; do
  [ -d "$hierarchy/kubepods" ] || continue
  find "$hierarchy/kubepods" -depth -type d -exec rmdir {} \; 2>/dev/null
done
ip netns del "$NETNS" 2>/dev/null
# The host's kernel settings the kubelet changed (up.sh saved them).
if [ -f "$WORK/host-sysctls" ]; then
  while read -r setting; do sysctl -qw "$setting"; done < "$WORK/host-sysctls"
  rm -f "$WORK/host-sysctls"
fi
rm -rf "$WORK/pids"
if $purge; then
  rm -rf "$WORK"
  echo "down: cluster stopped, $WORK removed"
else
  echo "down: cluster stopped; logs kept in $WORK/logs"
fi

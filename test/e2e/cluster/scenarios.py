#!/usr/bin/python3
"""The scenarios of the real-cluster tier, run against the cluster up.sh started and the driver
install.sh installed (run.sh does all three). Each scenario prints one summary line, PASS or
FAIL, with the device sets it compared; the last line is "N passed, N failed".

    scenarios.py [NAME ...]        (default: all, in order; --list names them)

Every device check compares three independent views, device by device:
  - the claim's allocation (kubectl get resourceclaim -o json: driver, pool, device name),
  - the node's hardware (the generated sysfs tree: PCI address -> uverbsN, and the char
    device's major:minor under the node's /dev),
  - what the container sees (kubectl exec ... ls/stat /dev/infiniband).
"""
import base64
import json
import os
import re
import shlex
import signal
import stat
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
WORK = os.environ.get("EFA_DRA_E2E_WORK", "/tmp/efa-dra-driver-cluster")
NODE = os.environ.get("EFA_DRA_E2E_NODE", "efa-node-1")
NETNS = os.environ.get("EFA_DRA_E2E_NETNS", "efa-dra-e2e")
BIN = os.environ.get("EFA_DRA_E2E_BIN") or subprocess.run(
    [f"{HERE}/build-components.sh", "--print-bin"], capture_output=True, text=True, check=True).stdout.strip()
EXAMPLES = os.path.join(REPO, "docs", "examples")
DRIVER = "dra.net"
NAMESPACE = "kube-system"
RELEASE = "efa-dra-driver"
DRIVER_SA = f"system:serviceaccount:{NAMESPACE}:{RELEASE}"
DRIVER_SELECTOR = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/name=efa-dra-driver"
# The release install.sh published with scripts/release.sh and installed from the registry.
REGISTRY = os.environ.get("EFA_DRA_E2E_REGISTRY", "127.0.0.1:5000")
RELEASE_VERSION = os.environ.get("EFA_DRA_E2E_RELEASE_VERSION", "0.2.0-test")
IMAGE = f"{REGISTRY}/efa-dra-driver:{RELEASE_VERSION}"


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


# --- running things --------------------------------------------------------------------------

def run(argv, input=None, check_rc=True, timeout=120):
    result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    if check_rc and result.returncode != 0:
        raise Failure(f"{' '.join(shlex.quote(a) for a in argv[-6:])}: exit {result.returncode}: "
                      f"{(result.stderr or result.stdout).strip()[-800:]}")
    return result


def in_ns(*argv):
    return ["nsenter", f"--net=/var/run/netns/{NETNS}", "--", *argv]


def kubectl(*args, input=None, check_rc=True, timeout=120):
    return run(in_ns(f"{BIN}/kubectl", "--kubeconfig", f"{WORK}/kubeconfig", *args),
               input=input, check_rc=check_rc, timeout=timeout)


def helm(*args, check_rc=True, timeout=300):
    return run(in_ns("env", f"HOME={WORK}/helm-home", f"{BIN}/helm", "--kubeconfig",
                     f"{WORK}/kubeconfig", *args), check_rc=check_rc, timeout=timeout)


def kjson(*args):
    return json.loads(kubectl(*args, "-o", "json").stdout)


def apply(manifest, namespace="default"):
    """kubectl apply of a file path or of a list of objects (as JSON)."""
    if isinstance(manifest, str):
        return kubectl("apply", "-n", namespace, "-f", manifest)
    return kubectl("apply", "-n", namespace, "-f", "-",
                   input=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifest}))


def delete(manifest, namespace="default"):
    """kubectl delete, waiting until the objects are gone. A pod gets 1 s to stop: the docs'
    examples run `sleep infinity` as PID 1, which ignores SIGTERM, so their 30 s default grace
    period would pass in full every time; the claims are unprepared after the kill all the same."""
    flags = ["delete", "-n", namespace, "--ignore-not-found", "--wait=true", "--grace-period=1",
             "--timeout=120s", "-f"]
    if isinstance(manifest, str):
        return kubectl(*flags, manifest)
    return kubectl(*flags, "-",
                   input=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifest}))


def wait_for(what, predicate, timeout=120, interval=0.5):
    """Polls predicate() until it returns a truthy value; Failure naming `what` otherwise."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Failure as error:
            last = error
        time.sleep(interval)
    raise Failure(f"timed out after {timeout}s waiting for {what}" + (f" ({last})" if last else ""))


def pod(name, namespace="default"):
    return kjson("get", "pod", "-n", namespace, name)


def wait_pod_phase(name, phases=("Running",), timeout=180, namespace="default"):
    def ready():
        p = pod(name, namespace)
        phase = p["status"].get("phase")
        if phase in ("Failed",) and "Failed" not in phases:
            raise Failure(f"pod {name} failed: {json.dumps(p['status'])[-600:]}")
        return p if phase in phases else None
    try:
        return wait_for(f"pod {name} {'/'.join(phases)}", ready, timeout)
    except Failure as error:
        events = kubectl("get", "events", "-n", namespace, "--field-selector",
                         f"involvedObject.name={name}", check_rc=False).stdout
        raise Failure(f"{error}; events:\n{events.strip()[-1500:]}")


# --- the node's hardware ---------------------------------------------------------------------

def node_tree():
    with open(f"{WORK}/topology-dir") as f:
        return f.read().strip()


def device_name(bdf):
    return "pci-" + bdf.replace(":", "-").replace(".", "-")


def hardware():
    """device name -> (uverbs node name, (major, minor)) from the node's generated tree."""
    tree = node_tree()
    devices = {}
    pci = f"{tree}/sys/bus/pci/devices"
    for bdf in sorted(os.listdir(pci)):
        verbs_dir = os.path.join(pci, bdf, "infiniband_verbs")
        if not os.path.isdir(verbs_dir):
            continue
        with open(os.path.join(pci, bdf, "vendor")) as f:
            if f.read().strip() != "0x1d0f":
                continue
        (uverbs,) = os.listdir(verbs_dir)
        st = os.stat(f"{tree}/dev/infiniband/{uverbs}")
        devices[device_name(bdf)] = (uverbs, (os.major(st.st_rdev), os.minor(st.st_rdev)))
    return devices


# --- claims, slices, containers ----------------------------------------------------------------

def our_slices():
    """The node's dra.net slices, with managedFields (kubectl leaves them out by default): they
    say who wrote each slice."""
    slices = kjson("get", "resourceslices", "--show-managed-fields", "--field-selector",
                   f"spec.driver={DRIVER}")["items"]
    return [s for s in slices if s["spec"].get("nodeName") == NODE]


def published_devices():
    return {d["name"]: d for s in our_slices() for d in s["spec"].get("devices", [])}


def attribute(device, key):
    """A device attribute's value, by fully qualified or driver-local name."""
    attributes = device.get("attributes", {})
    value = attributes.get(key)
    if value is None and key.startswith(DRIVER + "/"):
        value = attributes.get(key[len(DRIVER) + 1:])
    if value is None:
        return None
    return next(iter(value.values()))


def claim_of(pod_obj, claim_entry):
    """The ResourceClaim a pod's resourceClaims entry resolved to."""
    for status in pod_obj["status"].get("resourceClaimStatuses", []):
        if status["name"] == claim_entry:
            return kjson("get", "resourceclaim", "-n", pod_obj["metadata"]["namespace"],
                         status["resourceClaimName"])
    for entry in pod_obj["spec"].get("resourceClaims", []):
        if entry["name"] == claim_entry and entry.get("resourceClaimName"):
            return kjson("get", "resourceclaim", "-n", pod_obj["metadata"]["namespace"],
                         entry["resourceClaimName"])
    raise Failure(f"pod {pod_obj['metadata']['name']}: no claim for {claim_entry}")


def allocated(claim, driver=DRIVER):
    allocation = claim.get("status", {}).get("allocation")
    check(allocation, f"claim {claim['metadata']['name']} is not allocated")
    return sorted(r["device"] for r in allocation["devices"]["results"] if r["driver"] == driver)


def container_devices(pod_name, container, namespace="default"):
    """{uverbsN: (major, minor)} and whether rdma_cm is there, as the container sees them."""
    out = kubectl("exec", "-n", namespace, pod_name, "-c", container, "--", "sh", "-c",
                  "for f in /dev/infiniband/*; do [ -e \"$f\" ] && stat -c '%n %t %T %F' \"$f\"; done; true").stdout
    seen = {}
    for line in out.splitlines():
        path, major, minor, kind = line.split(" ", 3)
        check(kind == "character special file", f"{pod_name}: {path} is a {kind}, not a char device")
        seen[os.path.basename(path)] = (int(major, 16), int(minor, 16))
    return seen


def expect_container_has(pod_name, container, devices, namespace="default"):
    """The container sees exactly `devices` (our device names) as uverbs nodes with the host's
    numbers, plus rdma_cm; returns a readable description of the comparison."""
    hw = hardware()
    expected = {hw[d][0]: hw[d][1] for d in devices}
    seen = container_devices(pod_name, container, namespace)
    check("rdma_cm" in seen, f"{pod_name}: no /dev/infiniband/rdma_cm in the container ({sorted(seen)})")
    seen.pop("rdma_cm")
    check(seen == expected,
          f"{pod_name}: container has {sorted(seen.items())}, allocation {devices} means {sorted(expected.items())}")
    return "{" + ", ".join(f"{d}={hw[d][0]}" for d in devices) + "}"


def cdi_specs():
    """claim UID -> set of host device paths of our CDI specs."""
    specs = {}
    for name in os.listdir(f"{WORK}/cdi"):
        if not name.startswith(DRIVER.replace(".", "_")) and not name.startswith(DRIVER):
            continue
        with open(f"{WORK}/cdi/{name}") as f:
            spec = json.load(f)
        nodes = set()
        for device in spec.get("devices", []):
            for node in device.get("containerEdits", {}).get("deviceNodes", []):
                if "uverbs" in node["path"]:
                    nodes.add(node.get("hostPath", node["path"]))
        specs[name] = nodes
    return specs


def check_no_shared_nodes():
    specs = cdi_specs()
    owners = {}
    for name, nodes in specs.items():
        for node in nodes:
            check(node not in owners, f"{node} is in two CDI specs: {owners.get(node)} and {name}")
            owners[node] = name
    return specs


def driver_pods():
    return kjson("get", "pods", "-n", NAMESPACE, "-l", DRIVER_SELECTOR)["items"]


def wait_driver_ready(timeout=180):
    def ready():
        pods = [p for p in driver_pods() if p["metadata"].get("deletionTimestamp") is None
                and p["spec"].get("nodeName") == NODE]
        if len(pods) != 1:
            return None
        conditions = {c["type"]: c["status"] for c in pods[0]["status"].get("conditions", [])}
        return pods[0] if conditions.get("Ready") == "True" else None
    return wait_for("one Ready driver pod", ready, timeout)


class AuditWindow:
    """ResourceSlice writes in the API server's audit log from now on (the policy up.sh
    writes logs every write at Metadata level)."""

    def __init__(self):
        self.path = f"{WORK}/logs/audit.log"
        self.offset = os.path.getsize(self.path)

    def events(self):
        """The completed audit events logged since the window opened."""
        with open(self.path) as f:
            f.seek(self.offset)
            for line in f:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("stage") == "ResponseComplete":
                    yield event

    @staticmethod
    def describe(event):
        return (f"{event['verb']} {event.get('objectRef', {}).get('name', '')} by "
                f"{event.get('user', {}).get('username', '')} -> "
                f"{event.get('responseStatus', {}).get('code')}")

    def slice_writes(self, users=None):
        return [self.describe(e) for e in self.events()
                if e.get("objectRef", {}).get("resource") == "resourceslices"
                and (users is None or e.get("user", {}).get("username", "") in users)
                and e.get("verb") != "get"]

    def writes(self, resource, subresource, users):
        """"<verb> <name> by <user> -> <code>" of writes to resource/subresource by `users`."""
        return [self.describe(e) for e in self.events()
                if e.get("objectRef", {}).get("resource") == resource
                and e.get("objectRef", {}).get("subresource", "") == subresource
                and e.get("user", {}).get("username", "") in users]


# --- manifests used by several scenarios -------------------------------------------------------

def one_efa_pod(name, template="e2e-one-efa"):
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"e2e": "holder"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "resourceClaims": [{"name": "efa", "resourceClaimTemplateName": template}],
            "containers": [{"name": "c", "image": "localhost/efa-e2e/busybox:1",
                            "command": ["sleep", "infinity"],
                            "resources": {"claims": [{"name": "efa"}]}}],
        },
    }


ONE_EFA_TEMPLATE = {
    "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
    "metadata": {"name": "e2e-one-efa"},
    "spec": {"spec": {"devices": {"requests": [
        {"name": "efa", "exactly": {"deviceClassName": "efa.networking.k8s.aws", "count": 1}}]}}},
}


def pod_devices(name, entry="efa", namespace="default"):
    p = pod(name, namespace)
    return allocated(claim_of(p, entry))


# --- scenarios ----------------------------------------------------------------------------------

SCENARIOS = []


def scenario(name):
    def register(fn):
        SCENARIOS.append((name, fn))
        return fn
    return register


@scenario("slices-and-deviceclass")
def slices_and_deviceclass():
    classes = [c["metadata"]["name"] for c in kjson("get", "deviceclass")["items"]]
    check("efa.networking.k8s.aws" in classes, f"DeviceClass efa.networking.k8s.aws missing: {classes}")
    hw = hardware()
    published = wait_for("the node's slices to list every EFA",
                         lambda: (lambda p: p if set(p) == set(hw) else None)(published_devices()), 60)
    for name, device in published.items():
        check(attribute(device, "dra.net/pciAddress") is not None, f"{name}: no pciAddress attribute")
    # kubectl's own column view, as a user would run it.
    table = kubectl("get", "resourceslices", "--field-selector", f"spec.driver={DRIVER}").stdout
    check(NODE in table, f"kubectl get resourceslices shows no slice of {NODE}:\n{table}")
    logs = kubectl("logs", "-n", NAMESPACE, "-l", DRIVER_SELECTOR, "--tail=50").stdout
    check(logs.strip(), "kubectl logs of the driver printed nothing")
    notes = helm("get", "notes", RELEASE, "-n", NAMESPACE).stdout
    check(f"kubectl get resourceslices --field-selector spec.driver={DRIVER}" in notes,
          f"the release notes do not show how to list the slices:\n{notes}")
    check(f"image {IMAGE}." in notes and "runs on EFA nodes only" in notes,
          f"the release notes do not name the image deployed and where it runs:\n{notes}")
    check("(vpc.amazonaws.com/efa: N in resources.limits)" in notes and "WARNING" not in notes,
          f"the release notes do not say how device-plugin pods are served, or warn on 1.36:\n{notes}")
    return (f"DeviceClass present; {len(our_slices())} slice(s) of {NODE} list {len(published)} devices "
            f"= the {len(hw)} EFAs of the tree; kubectl logs -l {DRIVER_SELECTOR}: "
            f"{len(logs.splitlines())} lines; NOTES name the image and show the slice listing")


@scenario("release-from-registry")
def release_from_registry():
    """install.sh ran scripts/release.sh against the cluster's registry and installed the chart
    from it: the registry holds one image index with both platforms, the installed chart is that
    release (version = appVersion), its defaults name the release's image, and containerd pulled
    the driver's image from the registry by that index."""
    published = re.search(r"^release: image (\S+)@(sha256:[0-9a-f]{64}) \(([^)]*)\)$",
                          open(f"{WORK}/release.log").read(), re.M)
    check(published and published.group(1) == IMAGE, f"release.log names no image {IMAGE}")
    index_digest = published.group(2)
    request = urllib.request.Request(
        f"http://{REGISTRY}/v2/efa-dra-driver/manifests/{RELEASE_VERSION}",
        headers={"Accept": "application/vnd.oci.image.index.v1+json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        served_digest = response.headers.get("Docker-Content-Digest")
        index = json.load(response)
    check(served_digest == index_digest, f"the registry serves {served_digest}, release.sh pushed {index_digest}")
    check(index.get("mediaType") == "application/vnd.oci.image.index.v1+json",
          f"{IMAGE} is not an OCI image index: {index.get('mediaType')}")
    platforms = sorted(f"{m['platform']['os']}/{m['platform']['architecture']}" for m in index["manifests"])
    check(platforms == ["linux/amd64", "linux/arm64"], f"the index holds {platforms}")

    chart = f"oci://{REGISTRY}/charts/efa-dra-driver"
    metadata = json.loads(helm("get", "metadata", RELEASE, "-n", NAMESPACE, "-o", "json").stdout)
    check(metadata.get("version") == RELEASE_VERSION and metadata.get("appVersion") == RELEASE_VERSION,
          f"the installed chart is {metadata.get('version')} (appVersion {metadata.get('appVersion')}), "
          f"not the release {RELEASE_VERSION}")
    server = kjson("version")["serverVersion"]["gitVersion"]
    rendered = helm("template", "defaults", chart, "--version", RELEASE_VERSION, "--plain-http",
                    "--kube-version", server).stdout
    check(f'image: "{IMAGE}"' in rendered,
          f"the published chart's defaults do not run {IMAGE}:\n"
          + "\n".join(line for line in rendered.splitlines() if "image:" in line))

    pod = wait_driver_ready()
    status = pod["status"]["containerStatuses"][0]
    check(status["image"] == IMAGE, f"the driver runs {status['image']}, not {IMAGE}")
    check(status["imageID"] == f"{REGISTRY}/efa-dra-driver@{index_digest}",
          f"the driver's imageID {status['imageID']} is not the pushed index {index_digest}")
    pulls = [line for line in open(f"{WORK}/logs/registry.log")
             if "/v2/efa-dra-driver/manifests/" in line and "containerd/" in line]
    check(pulls, "the registry's access log shows no manifest request by containerd")
    return (f"{IMAGE}@{index_digest[:19]}… holds {', '.join(platforms)}; chart {RELEASE_VERSION} from "
            f"{chart} installed, its defaults run that image; containerd pulled it ({len(pulls)} "
            f"manifest request(s) in the registry log), the pod's imageID is the index")


class ClaimWatch:
    """Records every allocated ResourceClaim of a namespace from a kubectl watch, for pods that
    finish (and whose generated claims are deleted) before they could be looked up."""

    def __init__(self, namespace="default"):
        self.proc = subprocess.Popen(
            in_ns(f"{BIN}/kubectl", "--kubeconfig", f"{WORK}/kubeconfig", "get", "resourceclaims",
                  "-n", namespace, "--watch", "-o", "json"),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.allocated = {}
        self.thread = __import__("threading").Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        decoder, buffer = json.JSONDecoder(), ""
        for line in self.proc.stdout:
            buffer += line
            try:
                claim, end = decoder.raw_decode(buffer.lstrip())
            except ValueError:
                continue
            buffer = buffer.lstrip()[end:]
            if claim.get("status", {}).get("allocation"):
                self.allocated[claim["metadata"]["name"]] = claim

    def claim_for(self, pod_name):
        def owned():
            for claim in self.allocated.values():
                owners = claim["metadata"].get("ownerReferences", [])
                if any(o["kind"] == "Pod" and o["name"] == pod_name for o in owners):
                    return claim
            return None
        return wait_for(f"an allocated claim of pod {pod_name}", owned, 30)

    def stop(self):
        self.proc.kill()


@scenario("example-single-efa")
def example_single_efa():
    path = f"{EXAMPLES}/single-efa.yaml"
    watch = ClaimWatch()
    apply(path)
    try:
        wait_pod_phase("efa-check", ("Succeeded",))
        devices = allocated(watch.claim_for("efa-check"))
        check(len(devices) == 1, f"one EFA asked, {devices} allocated")
        hw = hardware()
        log = kubectl("logs", "efa-check").stdout
        listed = sorted(set(re.findall(r"\b(uverbs\d+)\b", log)))
        check(listed == [hw[devices[0]][0]],
              f"container listed {listed}, allocation {devices} is {hw[devices[0]][0]}:\n{log}")
        check("rdma_cm" in log, f"no rdma_cm in the container:\n{log}")
        rdma = attribute(published_devices()[devices[0]], "dra.net/rdmaDevice")
        iface = re.search(r"FI_EFA_IFACE=(\S*)", log)
        check(iface and iface.group(1) == rdma, f"FI_EFA_IFACE {iface and iface.group(1)!r}, device is {rdma}")
        return f"allocation {devices} -> container listed {listed} + rdma_cm, FI_EFA_IFACE={rdma}"
    finally:
        watch.stop()
        delete(path)


@scenario("example-shared-claim")
def example_shared_claim():
    path = f"{EXAMPLES}/shared-claim.yaml"
    apply(path)
    deleted = False
    try:
        claim = wait_for("claim shared-efas allocated",
                         lambda: (lambda c: c if c.get("status", {}).get("allocation") else None)(
                             kjson("get", "resourceclaim", "shared-efas")), 120)
        kubectl("rollout", "status", "deployment/efa-sharers", "--timeout=180s", timeout=200)
        devices = allocated(claim)
        pods = kjson("get", "pods", "-l", "app=efa-sharers")["items"]
        check(len(pods) == 2, f"expected 2 pods, found {len(pods)}")
        seen = [expect_container_has(p["metadata"]["name"], "app", devices) for p in pods]
        uid = claim["metadata"]["uid"]
        check(any(uid in name for name in cdi_specs()), f"no CDI spec for claim {uid}: {list(cdi_specs())}")
        kubectl("delete", "deployment", "efa-sharers", "--wait=true", "--timeout=120s")
        # The garbage collector would give the pods their 30 s grace period (see delete()).
        kubectl("delete", "pods", "-l", "app=efa-sharers", "--ignore-not-found", "--grace-period=1",
                "--wait=false")
        wait_for("sharer pods gone", lambda: not kjson("get", "pods", "-l", "app=efa-sharers")["items"], 120)
        kubectl("delete", "resourceclaim", "shared-efas", "--wait=true", "--timeout=120s")
        deleted = True
        wait_for(f"CDI spec of claim {uid} removed", lambda: not any(uid in n for n in cdi_specs()), 60)
        return (f"claim shared-efas allocated {devices}; both pods see {seen[0]}; after the pods and "
                f"the claim are deleted its CDI spec is gone")
    finally:
        if not deleted:
            delete(path)


def start_accel_double(driver, *args):
    """Starts the GPU or Neuron test double (accel-driver) once; down.sh stops it."""
    pid_file = f"{WORK}/pids/accel-{driver}"
    if os.path.exists(pid_file):
        try:
            os.kill(int(open(pid_file).read()), 0)
            return
        except (OSError, ValueError):
            pass
    log = open(f"{WORK}/logs/accel-{driver}.log", "a")
    proc = subprocess.Popen(in_ns(f"{BIN}/accel-driver", "--driver", driver, "--node-name", NODE,
                                  "--kubeconfig", f"{WORK}/kubeconfig",
                                  "--kubelet-dir", f"{WORK}/kubelet", "--cdi-dir", f"{WORK}/cdi",
                                  *args), stdout=log, stderr=log, start_new_session=True)
    with open(pid_file, "w") as f:
        f.write(str(proc.pid))
    apply(f"{HERE}/manifests/accel-deviceclasses.yaml")

    def published():
        if proc.poll() is not None:
            with open(f"{WORK}/logs/accel-{driver}.log") as f:
                raise Failure(f"the {driver} double exited {proc.returncode}: {f.read()[-600:]}")
        return kjson("get", "resourceslices", "--field-selector", f"spec.driver={driver}")["items"]
    wait_for(f"{driver} slices", published, 60)


def stop_accel_double(driver):
    pid_file = f"{WORK}/pids/accel-{driver}"
    with open(pid_file) as f:
        pid = int(f.read())
    os.kill(pid, signal.SIGTERM)

    def exited():
        try:  # our child: reap it, or it lingers as a zombie
            return os.waitpid(pid, os.WNOHANG)[0] == pid
        except ChildProcessError:  # started by an earlier run
            return not os.path.exists(f"/proc/{pid}")
    wait_for(f"the {driver} double to exit", exited, 30)
    os.remove(pid_file)


def accel_devices(driver):
    slices = kjson("get", "resourceslices", "--field-selector", f"spec.driver={driver}")["items"]
    return {d["name"]: d for s in slices for d in s["spec"].get("devices", [])}


@scenario("example-gpu-aligned")
def example_gpu_aligned():
    start_accel_double("gpu.nvidia.com", "--sysfs-root", f"{node_tree()}/sys")
    path = f"{EXAMPLES}/gpu-efa-aligned.yaml"
    apply(path)
    try:
        p = wait_pod_phase("nccl-worker")
        claim = claim_of(p, "gpu-efa")
        gpus, efas = allocated(claim, "gpu.nvidia.com"), allocated(claim)
        check(len(gpus) == 1 and len(efas) == 4, f"allocation: GPUs {gpus}, EFAs {efas}")
        gpu_root = attribute(accel_devices("gpu.nvidia.com")[gpus[0]], "resource.kubernetes.io/pcieRoot")
        ours = published_devices()
        roots = {e: attribute(ours[e], "resource.kubernetes.io/pcieRoot") for e in efas}
        check(set(roots.values()) == {gpu_root}, f"GPU {gpus[0]} on {gpu_root}, EFAs on {roots}")
        # Every EFA on that root, no other: p5 has 4 per GPU root.
        same_root = sorted(n for n, d in ours.items()
                           if attribute(d, "resource.kubernetes.io/pcieRoot") == gpu_root)
        check(efas == same_root, f"EFAs on {gpu_root} are {same_root}, allocated {efas}")
        seen = expect_container_has("nccl-worker", "worker", efas)
        env = kubectl("exec", "nccl-worker", "-c", "worker", "--", "env").stdout
        check(f"={gpu_root}" in env, f"the GPU double's CDI env for {gpus[0]} is not in the container")
        return f"GPU {gpus[0]} on {gpu_root}; EFAs {seen}, all on {gpu_root}"
    finally:
        delete(path)


@scenario("example-all-efas")
def example_all_efas():
    path = f"{EXAMPLES}/all-efas.yaml"
    apply(path)
    try:
        p = wait_pod_phase("whole-node-trainer")
        efas = allocated(claim_of(p, "efas"))
        hw = hardware()
        check(efas == sorted(hw), f"allocationMode All gave {len(efas)} of the node's {len(hw)} EFAs")
        expect_container_has("whole-node-trainer", "trainer", efas)
        return f"allocationMode All: {len(efas)} EFAs allocated, the container sees the same {len(efas)} uverbs nodes"
    finally:
        delete(path)


@scenario("status-shows-which-pod-holds-which-efa")
def status_shows_holders():
    """`efa-dra-driver status` against the real API server, with two pods holding one EFA each."""
    holders = ("status-a", "status-b")
    apply([ONE_EFA_TEMPLATE] + [one_efa_pod(h) for h in holders])
    try:
        held = {}
        for h in holders:
            p = wait_pod_phase(h)
            (device,) = allocated(claim_of(p, "efa"))
            held[device] = (h, claim_of(p, "efa")["metadata"]["name"])
        build_dir = os.environ.get("EFA_DRA_BUILD_DIR", f"{REPO}/build")
        # In the node's network namespace: the API server's address is only reachable there.
        status = in_ns(f"{build_dir}/efa-dra-driver", "status", "--kubeconfig",
                       f"{WORK}/kubeconfig", "--node", NODE)

        def reported():
            report = json.loads(run(status + ["-o", "json"]).stdout)
            by_name = {d["name"]: d for d in report["devices"]}
            # The kubelet reports the health of allocated devices in pod status a little later.
            if any(by_name.get(d, {}).get("health") != "Healthy" for d in held):
                return None
            return report
        report = wait_for("status to show both holders as Healthy", reported, 60)
        devices = {d["name"]: d for d in report["devices"]}
        check(set(devices) == set(hardware()), f"status lists {sorted(devices)}")
        for device, (pod_name, claim_name) in held.items():
            holders_seen = devices[device]["claims"]
            check(len(holders_seen) == 1 and holders_seen[0]["claim"] == claim_name
                  and holders_seen[0]["namespace"] == "default"
                  and holders_seen[0]["pods"] == [pod_name],
                  f"{device}: status says {holders_seen}, the API says {claim_name} / {pod_name}")
        free = [d for d in devices.values() if d["name"] not in held]
        check(all(not d["claims"] and d["health"] == "untainted" for d in free),
              f"unheld devices: {[(d['name'], d['claims'], d['health']) for d in free][:3]}")
        table = run(status).stdout
        for device, (pod_name, claim_name) in held.items():
            check(f"default/{claim_name}" in table and pod_name in table, table[-800:])
        check(f"{len(devices)} EFA devices on 1 node, 2 allocated" in table, table[-300:])
        return (f"{len(devices)} EFAs, held: " +
                ", ".join(f"{d} by {c} ({p})" for d, (p, c) in sorted(held.items())))
    finally:
        delete([one_efa_pod(h) for h in holders])


@scenario("claim-device-status")
def claim_device_status():
    """After the prepare, the claim's status.devices holds our entry (Ready=True and the EFA's
    data), applied by the driver's field manager through the real API server's RBAC (1.36's
    granular status authorization on: the chart's associated-node permission on
    resourceclaims/driver is what lets it through); after the pod is gone no entry of ours is
    left. The audit log shows every status write of the driver's service account succeeded."""
    audit = AuditWindow()
    claim = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
             "metadata": {"name": "e2e-status"},
             "spec": ONE_EFA_TEMPLATE["spec"]["spec"]}
    holder = one_efa_pod("status-holder")
    holder["spec"]["resourceClaims"] = [{"name": "efa", "resourceClaimName": "e2e-status"}]
    apply([claim, holder])
    try:
        wait_pod_phase("status-holder")

        def ours():
            c = kjson("get", "resourceclaim", "e2e-status")
            entries = [d for d in c.get("status", {}).get("devices", []) if d["driver"] == DRIVER]
            return (c, entries) if entries else None
        c, entries = wait_for("status.devices of claim e2e-status", ours, 60)
        (device,) = allocated(c)
        check(len(entries) == 1 and entries[0]["device"] == device,
              f"allocated {device}, status.devices has {entries}")
        entry = entries[0]
        ready = [x for x in entry.get("conditions", []) if x["type"] == "Ready"]
        check(ready and ready[0]["status"] == "True", f"conditions: {entry.get('conditions')}")
        hw = hardware()
        data = entry.get("data", {})
        check(data.get("uverbsPath") == f"/dev/infiniband/{hw[device][0]}"
              and data.get("rdmaDevice") == attribute(published_devices()[device], "dra.net/rdmaDevice")
              and data.get("pcieRoot") == attribute(published_devices()[device], "resource.kubernetes.io/pcieRoot"),
              f"data {data} for {device} ({hw[device]})")
        shown = kjson("get", "resourceclaim", "e2e-status", "--show-managed-fields")
        managers = {(m.get("manager"), m.get("operation"), m.get("subresource"))
                    for m in shown["metadata"].get("managedFields", [])}
        check(("efa-dra-driver", "Apply", "status") in managers, f"managedFields: {managers}")
        delete([holder])

        def cleared():
            c = kjson("get", "resourceclaim", "e2e-status")
            return not any(d["driver"] == DRIVER for d in c.get("status", {}).get("devices", []))
        wait_for("our status.devices entry to go after the pod", cleared, 60)
        writes = audit.writes("resourceclaims", "status", users={DRIVER_SA})
        check(len(writes) >= 2 and all(w.endswith("-> 200") for w in writes),
              f"the driver's status writes in the audit log: {writes}")
        return (f"{device}: Ready=True, data {sorted(data)}, applied by efa-dra-driver; gone after "
                f"the pod; audit: {len(writes)} status patches, all 200")
    finally:
        delete([holder, claim])


@scenario("device-plugin-style-extended-resource")
def extended_resource():
    """A pod written for the EFA device plugin (resources.limits: vpc.amazonaws.com/efa: 2) is
    served by DRA (KEP-5004): the scheduler makes a claim for it from the chart's DeviceClass,
    names it in status.extendedResourceClaimStatus, and the container gets exactly those EFAs.
    The implicit name deviceclass.resource.kubernetes.io/<class> works too."""
    results = []
    for name, resource, count in (("efa-plugin-style", "vpc.amazonaws.com/efa", 2),
                                  ("efa-implicit-name", "deviceclass.resource.kubernetes.io/efa.networking.k8s.aws", 1)):
        manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                    "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                        "name": "c", "image": "localhost/efa-e2e/busybox:1", "command": ["sleep", "infinity"],
                        "resources": {"limits": {resource: str(count)}}}]}}
        apply([manifest])
        try:
            p = wait_pod_phase(name)
            status = p["status"].get("extendedResourceClaimStatus")
            check(status and status.get("resourceClaimName"), f"{name}: no extendedResourceClaimStatus: {p['status']}")
            claim = kjson("get", "resourceclaim", status["resourceClaimName"])
            devices = allocated(claim)
            check(len(devices) == count, f"{name}: {count} asked, {devices} allocated")
            seen = expect_container_has(name, "c", devices)
            results.append(f"{resource}: {count} -> claim {status['resourceClaimName']}, container sees {seen}")
        finally:
            delete([manifest])
    return "; ".join(results)


def container_gdrdrv(pod_name, container="c"):
    """(major, minor) of /dev/gdrdrv in the container, None when it has none."""
    out = kubectl("exec", pod_name, "-c", container, "--", "sh", "-c",
                  "[ -e /dev/gdrdrv ] && stat -c '%t %T %F' /dev/gdrdrv; true").stdout.strip()
    if not out:
        return None
    major, minor, kind = out.split(" ", 2)
    check(kind == "character special file", f"{pod_name}: /dev/gdrdrv is a {kind}, not a char device")
    return (int(major, 16), int(minor, 16))


def only_new_driver_pod():
    """After a helm upgrade: the new driver pod is Ready and the old one has gone, so the next
    claim is prepared by a driver with the new values."""
    wait_driver_ready(180)
    wait_for("the old driver pod to be gone", lambda: len(driver_pods()) == 1, 120)


@scenario("gdrdrv-injected-when-enabled")
def gdrdrv_injected_when_enabled():
    """gdrcopy.inject=true (helm upgrade): a pod with one EFA claim sees GDRCopy's /dev/gdrdrv
    with the node's major:minor, next to its EFA, without being privileged. With the value back
    to its default a new pod has no /dev/gdrdrv, though the node still has one."""
    host = f"{node_tree()}/dev/gdrdrv"
    st = os.stat(host)
    check(stat.S_ISCHR(st.st_mode), f"{host} is not a char device (make_node_tree makes one)")
    want = (os.major(st.st_rdev), os.minor(st.st_rdev))
    on, off = one_efa_pod("gdrdrv-on"), one_efa_pod("gdrdrv-off")
    helm("upgrade", RELEASE, CHART, "-n", NAMESPACE, "--reuse-values", "--set", "gdrcopy.inject=true",
         "--wait", "--timeout", "180s")
    try:
        only_new_driver_pod()
        apply([ONE_EFA_TEMPLATE, on])
        try:
            p = wait_pod_phase("gdrdrv-on")
            devices = allocated(claim_of(p, "efa"))
            check(len(devices) == 1, f"gdrdrv-on: {devices} allocated")
            seen = expect_container_has("gdrdrv-on", "c", devices)
            got = container_gdrdrv("gdrdrv-on")
            check(got == want, f"gdrdrv-on: container /dev/gdrdrv {got}, node {host} {want}")
        finally:
            delete([on])
    finally:
        helm("upgrade", RELEASE, CHART, "-n", NAMESPACE, "--reuse-values", "--set", "gdrcopy.inject=false",
             "--wait", "--timeout", "180s")
        only_new_driver_pod()
    apply([ONE_EFA_TEMPLATE, off])
    try:
        wait_pod_phase("gdrdrv-off")
        got = container_gdrdrv("gdrdrv-off")
        check(got is None, f"gdrdrv-off: /dev/gdrdrv {got} in the container with gdrcopy.inject=false")
    finally:
        delete([off])
    return (f"inject on: container sees {seen} and /dev/gdrdrv {want[0]}:{want[1]} (node's); "
            f"restored: a new pod has no /dev/gdrdrv")


def cdi_spec_iface(claim_uid):
    """The FI_EFA_IFACE list of our CDI spec for a claim (None when there is no spec or no value)."""
    for name in os.listdir(f"{WORK}/cdi"):
        if name.startswith(DRIVER) and name.endswith(f"_{claim_uid}.json"):
            with open(f"{WORK}/cdi/{name}") as f:
                spec = json.load(f)
            for env in spec.get("containerEdits", {}).get("env", []):
                if env.startswith("FI_EFA_IFACE="):
                    return env[len("FI_EFA_IFACE="):].split(",")
    return None


@scenario("two-efa-claims-in-one-container")
def two_efa_claims_in_one_container():
    """One container lists two claims of one EFA each. containerd applies both claims' CDI edits
    and keeps the later FI_EFA_IFACE, so each claim's spec names the EFAs of both (its own
    first): the container sees both uverbs nodes and FI_EFA_IFACE names both RDMA devices."""
    templates = [{
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
        "metadata": {"name": f"e2e-iface-{x}"},
        "spec": {"spec": {"devices": {"requests": [
            {"name": "efa", "exactly": {"deviceClassName": "efa.networking.k8s.aws", "count": 1}}]}}},
    } for x in ("a", "b")]
    name = "two-efa-claims"
    manifest = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "resourceClaims": [{"name": f"efa-{x}", "resourceClaimTemplateName": f"e2e-iface-{x}"}
                               for x in ("a", "b")],
            "containers": [{"name": "c", "image": "localhost/efa-e2e/busybox:1",
                            "command": ["sh", "-c", "echo FI_EFA_IFACE=$FI_EFA_IFACE; sleep infinity"],
                            "resources": {"claims": [{"name": "efa-a"}, {"name": "efa-b"}]}}],
        },
    }
    apply(templates)
    try:
        apply([manifest])
        p = wait_pod_phase(name)
        claims = {x: claim_of(p, f"efa-{x}") for x in ("a", "b")}
        devices = {x: allocated(c) for x, c in claims.items()}
        for x in ("a", "b"):
            check(len(devices[x]) == 1, f"claim efa-{x}: one EFA asked, {devices[x]} allocated")
        both = devices["a"] + devices["b"]
        check(devices["a"] != devices["b"], f"both claims got {both}")
        seen = expect_container_has(name, "c", both)
        published = published_devices()
        rdma = {x: attribute(published[devices[x][0]], "dra.net/rdmaDevice") for x in ("a", "b")}
        log = wait_for(f"{name} printed FI_EFA_IFACE",
                       lambda: (lambda out: out if "FI_EFA_IFACE=" in out else None)(
                           kubectl("logs", name, "-c", "c").stdout), 60)
        iface = re.search(r"FI_EFA_IFACE=(\S*)", log).group(1).split(",")
        check(sorted(iface) == sorted(rdma.values()),
              f"the container's FI_EFA_IFACE is {iface}, its claims' RDMA devices are {rdma}")
        specs = {}
        for x, other in (("a", "b"), ("b", "a")):
            listed = cdi_spec_iface(claims[x]["metadata"]["uid"])
            check(listed == [rdma[x], rdma[other]],
                  f"claim efa-{x}'s CDI spec lists FI_EFA_IFACE {listed}, expected own first: "
                  f"{[rdma[x], rdma[other]]}")
            specs[x] = ",".join(listed)
        check_no_shared_nodes()
        return (f"claims efa-a {devices['a']}, efa-b {devices['b']}; the container sees {seen} and "
                f"FI_EFA_IFACE={','.join(iface)}; specs: a {specs['a']}, b {specs['b']}")
    finally:
        delete([manifest])
        delete(templates)


@scenario("all-efas-of-one-gpu-root")
def all_efas_of_one_gpu_root():
    """allocationMode All together with a GPU and matchAttribute pcieRoot: All means every EFA
    the class selects, which span 8 roots on p5, so the real scheduler must refuse it (the pod
    stays Pending with a reason) rather than hand out a subset. On p5 it refuses even earlier:
    32 EFAs + 1 GPU exceed the 32 devices one claim may hold. docs/usage.md says so; the
    ExactCount example is the way to get the EFAs of one GPU's root."""
    start_accel_double("gpu.nvidia.com", "--sysfs-root", f"{node_tree()}/sys")
    template = {
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
        "metadata": {"name": "e2e-gpu-all-efas"},
        "spec": {"spec": {"devices": {
            "requests": [
                {"name": "gpu", "exactly": {"deviceClassName": "gpu.nvidia.com", "count": 1}},
                {"name": "efa", "exactly": {"deviceClassName": "efa.networking.k8s.aws",
                                            "allocationMode": "All"}}],
            "constraints": [{"requests": ["gpu", "efa"],
                             "matchAttribute": "resource.kubernetes.io/pcieRoot"}]}}},
    }
    worker = one_efa_pod("e2e-gpu-all-efas", "e2e-gpu-all-efas")
    objects = [template, worker]
    apply(objects)
    try:
        def unschedulable():
            p = pod("e2e-gpu-all-efas")
            for c in p["status"].get("conditions", []):
                if c["type"] == "PodScheduled" and c["status"] == "False" and c.get("message"):
                    return f"{c.get('reason')}: {c['message']}"
            return None
        message = wait_for("the scheduler to report the claim unsatisfiable", unschedulable, 90)
        check(pod("e2e-gpu-all-efas")["status"].get("phase") == "Pending", "pod is not Pending")
        return f"Pending, scheduler: {message.strip()[:160]}"
    finally:
        delete(objects)


@scenario("example-neuron-aligned")
def example_neuron_aligned():
    """Switches the node to a trn2.48xlarge tree, so it runs after the p5 scenarios."""
    tree = switch_node_tree("trn2.48xlarge")
    start_accel_double("neuron.aws.com", "--neuron-table", f"{REPO}/data/neuron/trn2.json")
    path = f"{EXAMPLES}/neuron-efa-aligned.yaml"
    apply(path)
    try:
        p = wait_pod_phase("trainium-worker")
        claim = claim_of(p, "neuron-efa")
        neurons, efas = allocated(claim, "neuron.aws.com"), allocated(claim)
        check(len(neurons) == 4 and len(efas) == 4, f"allocation: Neuron {neurons}, EFAs {efas}")
        key = "resource.aws.com/devicegroup4_id"
        theirs = accel_devices("neuron.aws.com")
        ours = published_devices()
        groups = {attribute(theirs[n], key) for n in neurons} | {attribute(ours[e], key) for e in efas}
        check(len(groups) == 1 and None not in groups, f"devicegroup4_id values {groups}")
        (group,) = groups
        members = sorted(n for n, d in ours.items() if attribute(d, key) == group)
        check(efas == members, f"EFAs of group {group} are {members}, allocated {efas}")
        seen = expect_container_has("trainium-worker", "worker", efas)
        return f"{tree}: Neuron {neurons} and EFAs {seen} share devicegroup4_id {group}"
    finally:
        delete(path)


def example_gpu_aligned_on(instance_type, example, pod_name, want_gpus, want_efas):
    """Switches the node to `instance_type`'s hardware (the GPU double too) and runs that
    family's aligned example: the GPUs and EFAs it gets share one PCIe root."""
    tree = switch_node_tree(instance_type)
    if os.path.exists(f"{WORK}/pids/accel-gpu.nvidia.com"):
        stop_accel_double("gpu.nvidia.com")
    kubectl("delete", "resourceslices", "--field-selector", "spec.driver=gpu.nvidia.com",
            "--ignore-not-found")
    start_accel_double("gpu.nvidia.com", "--sysfs-root", f"{node_tree()}/sys")
    path = f"{EXAMPLES}/{example}"
    apply(path)
    try:
        p = wait_pod_phase(pod_name)
        claim = claim_of(p, "gpu-efa")
        gpus, efas = allocated(claim, "gpu.nvidia.com"), allocated(claim)
        check(len(gpus) == want_gpus and len(efas) == want_efas,
              f"allocation: GPUs {gpus}, EFAs {efas}")
        theirs = accel_devices("gpu.nvidia.com")
        gpu_roots = {attribute(theirs[g], "resource.kubernetes.io/pcieRoot") for g in gpus}
        ours = published_devices()
        efa_roots = {attribute(ours[e], "resource.kubernetes.io/pcieRoot") for e in efas}
        check(len(gpu_roots) == 1 and gpu_roots == efa_roots,
              f"GPUs on {gpu_roots}, EFAs on {efa_roots}")
        seen = expect_container_has(pod_name, "worker", efas)
        return f"{tree}: GPUs {gpus} and EFAs {seen} on {gpu_roots.pop()}"
    finally:
        delete(path)


@scenario("example-gpu-aligned-p4d")
def example_gpu_aligned_p4d():
    """2 GPUs + the 1 EFA of their root; runs after the p5 scenarios (it switches the tree)."""
    return example_gpu_aligned_on("p4d.24xlarge", "gpu-efa-aligned-p4d.yaml", "nccl-worker-p4d",
                                  2, 1)


@scenario("example-gpu-aligned-p6-b200")
def example_gpu_aligned_p6_b200():
    return example_gpu_aligned_on("p6-b200.48xlarge", "gpu-efa-aligned-p6-b200.yaml",
                                  "nccl-worker-p6-b200", 1, 1)


def set_sharing(on):
    """helm upgrade with sharing.allowMultipleAllocations on or off; waits until the published
    devices say so."""
    helm("upgrade", RELEASE, f"{REPO}/deploy/helm/efa-dra-driver", "-n", NAMESPACE, "--reuse-values",
         "--set", f"sharing.allowMultipleAllocations={'true' if on else 'false'}",
         "--wait", "--timeout", "180s")
    wait_driver_ready()

    def published_as_wanted():
        devices = published_devices()
        return devices and all(bool(d.get("allowMultipleAllocations")) == on for d in devices.values())
    wait_for(f"devices published with allowMultipleAllocations={on}", published_as_wanted, 90)


@scenario("eight-claims-on-four-shared-efas")
def eight_claims_on_four_shared_efas():
    """sharing.allowMultipleAllocations (KEP-5075): on a node with 4 EFAs, 8 pods with a claim
    of one EFA each all run, two per EFA (the dra.net/shares capacity of 2 spreads them); the
    two claims on one EFA get distinct CDI devices naming the same uverbs node, and each
    container sees just that node. A 9th pod finds no share left and stays Pending; when one
    pod goes, its share is unprepared, the other claim on that EFA keeps its CDI device and
    the 9th pod gets the freed share. Sharing off again restores exclusive devices."""
    if len(hardware()) != 4:
        switch_node_tree("p4d.24xlarge")
    hw = hardware()
    check(len(hw) == 4, f"the p4d tree has {len(hw)} EFAs, not 4")
    set_sharing(True)
    pods = [one_efa_pod(f"sharer-{i}") for i in range(8)]
    extra = one_efa_pod("sharer-8")
    try:
        capacity = {d: v.get("capacity", {}) for d, v in published_devices().items()}
        check(all(c.get("dra.net/shares", {}).get("value") == "2" for c in capacity.values()),
              f"published capacities: {capacity}")
        apply([ONE_EFA_TEMPLATE] + pods)
        holders = {}
        for p in pods:
            name = p["metadata"]["name"]
            obj = wait_pod_phase(name)
            claim = claim_of(obj, "efa")
            results = [r for r in claim["status"]["allocation"]["devices"]["results"]
                       if r["driver"] == DRIVER]
            check(len(results) == 1 and results[0].get("shareID"),
                  f"{name}: allocation results {results}")
            device = results[0]["device"]
            expect_container_has(name, "c", [device])
            holders.setdefault(device, []).append((name, claim["metadata"]["uid"], results[0]["shareID"]))
        check(sorted(len(h) for h in holders.values()) == [2, 2, 2, 2],
              f"claims per EFA: { {d: [n for n, _, _ in h] for d, h in holders.items()} }")
        specs = cdi_specs()
        for device, claims in holders.items():
            ids = []
            for _, uid, share in claims:
                (spec_name,) = [n for n in specs if uid in n]
                with open(f"{WORK}/cdi/{spec_name}") as f:
                    spec = json.load(f)
                (entry,) = spec["devices"]
                check(entry["name"] == f"{uid}-{device}-{share}", f"CDI device {entry['name']}")
                ids.append(entry["name"])
                check(specs[spec_name] == {f"{node_tree()}/dev/infiniband/{hw[device][0]}"},
                      f"{spec_name} injects {specs[spec_name]}")
            check(len(set(ids)) == 2, f"{device}: CDI devices {ids}")

        apply([extra])
        time.sleep(10)
        p9 = pod("sharer-8")
        check(p9["status"].get("phase") == "Pending" and not p9["spec"].get("nodeName"),
              f"a 9th claim found a share: {p9['status'].get('phase')} on {p9['spec'].get('nodeName')}")

        device, claims = sorted(holders.items())[0]
        (gone, gone_uid, _), (kept, kept_uid, _) = claims
        delete([one_efa_pod(gone)])
        wait_for(f"the CDI spec of {gone}'s claim to go",
                 lambda: not any(gone_uid in n for n in cdi_specs()), 60)
        check(any(kept_uid in n for n in cdi_specs()), f"{kept}'s CDI spec went with {gone}'s")
        expect_container_has(kept, "c", [device])
        wait_pod_phase("sharer-8")
        got = pod_devices("sharer-8")
        check(got == [device], f"the 9th pod got {got}, the freed share was on {device}")
        return (f"8 claims on 4 EFAs, 2 each ({', '.join(sorted(holders))}), distinct CDI devices per "
                f"share; 9th Pending until {gone} left, then got {device}; {kept} untouched")
    finally:
        delete(pods + [extra, ONE_EFA_TEMPLATE])
        wait_for("the sharers to go", lambda: not any(
            p["metadata"]["name"].startswith("sharer-") for p in kjson("get", "pods")["items"]), 120)
        set_sharing(False)


def switch_node_tree(instance_type):
    """Gives the node another instance type's hardware: a new generated tree, the node label,
    and a helm upgrade that points the driver at it."""
    # The resilience scenarios' pods hold devices of the old tree; they go first.
    delete([ONE_EFA_TEMPLATE] + [one_efa_pod(h) for h in ("hold-a", "hold-b")])
    tree = f"{WORK}/node/{instance_type}"
    build_dir = os.environ.get("EFA_DRA_BUILD_DIR", f"{REPO}/build")
    run([f"{build_dir}/test/e2e/make_node_tree", instance_type, f"{tree}/sys", f"{tree}/dev"])
    with open(f"{WORK}/topology-dir", "w") as f:
        f.write(tree)
    kubectl("label", "node", NODE, "--overwrite", f"node.kubernetes.io/instance-type={instance_type}")
    helm("upgrade", RELEASE, f"{REPO}/deploy/helm/efa-dra-driver", "-n", NAMESPACE, "--reuse-values",
         "--set", f"sysfsRoot={tree}/sys", "--set", f"devRoot={tree}/dev", "--wait", "--timeout", "180s")
    wait_driver_ready()
    hw = hardware()
    wait_for(f"slices of the {instance_type} tree",
             lambda: set(published_devices()) == set(hw), 90)
    return f"{instance_type} ({len(hw)} EFAs)"


# --- resilience -----------------------------------------------------------------------------------

def stop_component(name):
    """SIGTERM (then SIGKILL after 15 s) of a process up.sh started."""
    with open(f"{WORK}/pids/{name}") as f:
        pid = int(f.read())
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)


def start_component(name):
    """Starts a component again with the command line up.sh saved for it."""
    with open(f"{WORK}/pids/{name}.cmd") as f:
        command = f.read()
    log = open(f"{WORK}/logs/{name}.log", "a")
    proc = subprocess.Popen(in_ns("bash", "-c", "exec " + command), stdout=log, stderr=log,
                            start_new_session=True)
    with open(f"{WORK}/pids/{name}", "w") as f:
        f.write(str(proc.pid))


def holder_state(name):
    p = pod(name)
    status = p["status"]["containerStatuses"][0]
    return {"container": status.get("containerID"), "restarts": status["restartCount"],
            "devices": allocated(claim_of(p, "efa"))}


def our_claims():
    """Claims allocated with devices of our driver: UID -> (name, devices)."""
    claims = {}
    for c in kjson("get", "resourceclaims", "-A")["items"]:
        allocation = c.get("status", {}).get("allocation")
        if allocation and any(r["driver"] == DRIVER for r in allocation["devices"]["results"]):
            claims[c["metadata"]["uid"]] = (c["metadata"]["name"], allocated(c))
    return claims


def check_specs_match_claims():
    """One CDI spec per prepared claim of ours, naming exactly its devices' nodes, no node in
    two specs."""
    specs = check_no_shared_nodes()
    hw = hardware()
    tree = node_tree()
    claims = our_claims()
    for uid, (name, devices) in claims.items():
        mine = [n for n in specs if uid in n]
        check(len(mine) <= 1, f"claim {name} has {len(mine)} CDI specs: {mine}")
        if mine:
            expected = {f"{tree}/dev/infiniband/{hw[d][0]}" for d in devices}
            check(specs[mine[0]] == expected, f"claim {name}: spec names {sorted(specs[mine[0]])}, allocation {sorted(expected)}")
    for spec in specs:
        check(any(uid in spec for uid in claims), f"CDI spec {spec} belongs to no allocated claim")
    return len(specs)


def driver_pid():
    out = run(["pgrep", "-f", "^/usr/bin/efa-dra-driver run"], check_rc=False).stdout.split()
    check(len(out) == 1, f"expected one driver process, found {out}")
    return int(out[0])


def slice_contents():
    """What the node's slices publish, without object metadata: pool, devices, attributes."""
    return sorted(json.dumps(s["spec"], sort_keys=True) for s in our_slices())


def resilience(name, disrupt, restore=lambda: None, kubelet_wipes=False):
    """Two pods hold a claim each; `disrupt` breaks something, a new pod is created while it is
    broken, `restore` mends it. Then: the holders run on in the same containers with the same
    devices, the new pod gets a free device, every prepared claim has exactly one CDI spec
    naming exactly its devices, and the slices are untouched. A restarted kubelet deletes every
    ResourceSlice of its node on start (by design: pkg/kubelet/cm/dra/plugin,
    wipeResourceSlices), so there the driver must put back the same content with one create
    per slice and nothing else."""
    holders = ["hold-a", "hold-b"]
    apply([ONE_EFA_TEMPLATE] + [one_efa_pod(h) for h in holders])
    for h in holders:
        wait_pod_phase(h)
    before = {h: holder_state(h) for h in holders}
    seen_before = {h: expect_container_has(h, "c", before[h]["devices"]) for h in holders}
    slices_before = {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in our_slices()}
    content_before = slice_contents()
    audit = AuditWindow()
    pending = f"new-after-{name}"
    started = time.time()
    disrupt()
    apply([one_efa_pod(pending)])
    restore()
    try:
        wait_driver_ready()
        ready_after = time.time() - started
        wait_pod_phase(pending, timeout=240)
        running_after = time.time() - started
        new_devices = allocated(claim_of(pod(pending), "efa"))
        new_seen = expect_container_has(pending, "c", new_devices)
        for h in holders:
            after = holder_state(h)
            check(after["container"] == before[h]["container"] and after["restarts"] == before[h]["restarts"],
                  f"{h} was restarted: {before[h]} -> {after}")
            check(after["devices"] == before[h]["devices"], f"{h}: claim devices {before[h]['devices']} -> {after['devices']}")
            check(expect_container_has(h, "c", after["devices"]) == seen_before[h], f"{h}: devices changed")
        held = {d for h in holders for d in before[h]["devices"]}
        check(not held & set(new_devices), f"new pod got {new_devices}, already held: {sorted(held)}")
        specs = check_specs_match_claims()
        wait_for("the slices' content restored", lambda: slice_contents() == content_before, 60)
        slices_after = {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in our_slices()}
        # Let a late write (a republish after the restart) reach the audit log before counting.
        time.sleep(3)
        writes = audit.slice_writes(users=(DRIVER_SA, f"system:node:{NODE}"))
        if kubelet_wipes:
            ours = [w for w in writes if DRIVER_SA in w]
            check(len(ours) == len(slices_before) and all(w.startswith("create") for w in ours),
                  f"after the kubelet's wipe the driver should create its {len(slices_before)} slice(s) once: {writes}")
            slice_note = f"kubelet wiped the slices, driver re-created them with {len(ours)} write(s), same content"
        else:
            check(slices_after == slices_before and not writes,
                  f"slices changed: {slices_before} -> {slices_after}; writes: {writes}")
            slice_note = f"{len(slices_after)} slice(s) untouched, 0 ResourceSlice writes"
        return (f"holders kept {seen_before['hold-a']} and {seen_before['hold-b']} (same containers); "
                f"{pending} got {new_seen} (driver Ready after {ready_after:.0f}s, pod Running after "
                f"{running_after:.0f}s); {specs} CDI specs = prepared claims; {slice_note}")
    finally:
        delete([one_efa_pod(pending)])


def driver_restarts():
    return wait_driver_ready()["status"]["containerStatuses"][0]["restartCount"]


@scenario("resilience-kill-9-driver")
def resilience_kill9():
    def disrupt():
        restarts = driver_restarts()
        os.kill(driver_pid(), signal.SIGKILL)
        # Ready is measured from the restart the kubelet reports, not from a stale condition.
        wait_for("the kubelet to restart the driver container", lambda: any(
            p["status"]["containerStatuses"][0]["restartCount"] > restarts for p in driver_pods()), 60)
    return resilience("kill-9", disrupt)


@scenario("resilience-delete-driver-pod")
def resilience_delete_pod():
    def disrupt():
        old = {p["metadata"]["uid"] for p in driver_pods()}
        kubectl("delete", "pod", "-n", NAMESPACE, "-l", DRIVER_SELECTOR, "--wait=false")
        wait_for("a replacement driver pod", lambda: any(
            p["metadata"]["uid"] not in old for p in driver_pods()), 60)
    return resilience("delete-pod", disrupt)


@scenario("resilience-kubelet-restart")
def resilience_kubelet_restart():
    def restore():
        time.sleep(2)
        start_component("kubelet")
        wait_for("node Ready", lambda: any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in kjson("get", "node", NODE)["status"]["conditions"]), 120)
    return resilience("kubelet-restart", lambda: stop_component("kubelet"), restore, kubelet_wipes=True)


@scenario("resilience-containerd-restart")
def resilience_containerd_restart():
    def restore():
        time.sleep(2)
        start_component("containerd")
    return resilience("containerd-restart", lambda: stop_component("containerd"), restore)


def memlock_kib(text):
    """`ulimit -l` output (KiB or "unlimited") as a number; None for unlimited."""
    text = text.strip()
    return None if text == "unlimited" else int(text)


def containerd_memlock_kib():
    """containerd's own soft RLIMIT_MEMLOCK, from /proc/<pid>/limits (bytes there)."""
    with open(f"{WORK}/pids/containerd") as f:
        pid = int(f.read())
    # The saved pid is bash's, which exec'd containerd: the same process.
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max locked memory"):
                soft = line.split()[3]
                return None if soft == "unlimited" else int(soft) // 1024
    raise Failure("no 'Max locked memory' line in containerd's limits")


def restart_containerd(prefix=""):
    """Restarts containerd with its saved command line, optionally run through `prefix`."""
    stop_component("containerd")
    cmd_file = f"{WORK}/pids/containerd.cmd"
    with open(cmd_file) as f:
        saved = f.read()
    if prefix:
        with open(cmd_file, "w") as f:
            f.write(prefix + " " + saved)
    try:
        start_component("containerd")
    finally:
        with open(cmd_file, "w") as f:
            f.write(saved)
    wait_for("containerd", lambda: run([f"{BIN}/ctr", "--address", f"{WORK}/containerd/containerd.sock",
                                        "version"], check_rc=False).returncode == 0, 60)


@scenario("memlock-comes-from-containerd")
def memlock_comes_from_containerd():
    """EFA memory registration counts against RLIMIT_MEMLOCK (a container has no CAP_IPC_LOCK),
    and CDI cannot set rlimits: containerd's CRI clears the default spec's rlimits, so an EFA
    container gets containerd's own limit. Shown with real containerd and runc: a pod with an
    EFA claim reports containerd's limit; containerd restarted with another limit (here a
    lower one: this VM's root lacks CAP_SYS_RESOURCE, so `prlimit --memlock=unlimited` fails
    with "Operation not permitted"; a node's LimitMEMLOCK=infinity drop-in raises it the same
    way), a new pod reports that one. The setting that matters is on the node (docs/usage.md)."""
    before = containerd_memlock_kib()
    other = before // 2 if before else 64 * 1024
    results = []
    restarted = False
    try:
        for step in ("as started", "restarted"):
            if step == "restarted":
                restarted = True
                restart_containerd(f"prlimit --memlock={other * 1024}:{other * 1024} --")
                check(containerd_memlock_kib() == other,
                      f"containerd runs with {containerd_memlock_kib()} KiB, not {other}")
            expected = containerd_memlock_kib()
            holder = one_efa_pod("memlock-check")
            apply([ONE_EFA_TEMPLATE, holder])
            try:
                wait_pod_phase("memlock-check")
                seen = memlock_kib(kubectl("exec", "memlock-check", "-c", "c", "--", "sh", "-c",
                                           "ulimit -l").stdout)
                check(seen == expected, f"containerd {step}: container memlock {seen} KiB, containerd's {expected} KiB")
                shown = "unlimited" if seen is None else f"{seen} KiB"
                results.append(f"containerd {step} with {shown}: the EFA container sees {shown}")
            finally:
                delete([holder])
    finally:
        if restarted:
            restart_containerd()
            # The kubelet's CRI connection reconnects with gRPC backoff after containerd was
            # down: the next scenario's exec must not meet "dial unix ...containerd.sock".
            probe = one_efa_pod("memlock-probe")
            apply([probe])
            try:
                wait_pod_phase("memlock-probe")
                wait_for("exec through the kubelet after containerd's restart", lambda: kubectl(
                    "exec", "memlock-probe", "-c", "c", "--", "true", check_rc=False).returncode == 0, 120)
            finally:
                delete([probe])
    return "; ".join(results)


@scenario("resilience-helm-upgrade-surge")
def resilience_helm_upgrade():
    new_image = IMAGE.rsplit(":", 1)[0] + ":e2e-upgrade"
    run([f"{BIN}/ctr", "--address", f"{WORK}/containerd/containerd.sock", "-n", "k8s.io",
         "images", "tag", "--force", IMAGE, new_image])
    upgrade = {}

    def disrupt():
        upgrade["proc"] = subprocess.Popen(
            in_ns("env", f"HOME={WORK}/helm-home", f"{BIN}/helm", "--kubeconfig", f"{WORK}/kubeconfig",
                  "upgrade", RELEASE, f"{REPO}/deploy/helm/efa-dra-driver", "-n", NAMESPACE,
                  "--reuse-values", "--set", f"image.tag={new_image.rsplit(':', 1)[1]}",
                  "--wait", "--timeout", "180s"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    overlap = {}

    def restore():
        # Surge: the new pod runs next to the old one before the old one goes.
        def both():
            pods = driver_pods()
            return len(pods) == 2 and all(p["status"].get("phase") == "Running" for p in pods)
        try:
            wait_for("old and new driver pod side by side", both, 120, interval=0.2)
            overlap["seen"] = True
        except Failure:
            overlap["seen"] = False
        out, _ = upgrade["proc"].communicate(timeout=240)
        check(upgrade["proc"].returncode == 0, f"helm upgrade failed: {out[-800:]}")
        kubectl("-n", NAMESPACE, "rollout", "status", f"ds/{RELEASE}", "--timeout=120s", timeout=150)

    result = resilience("helm-upgrade", disrupt, restore)
    images = {c["image"] for p in driver_pods() for c in p["spec"]["containers"]}
    check(images == {new_image}, f"driver pods run {images}, not {new_image}")
    check(overlap.get("seen"), "the old and the new driver pod never ran side by side (no surge)")
    return f"rolled to {new_image} with old and new pod side by side; " + result


# --- the chart against the real API server ----------------------------------------------------

CHART = f"{REPO}/deploy/helm/efa-dra-driver"


@scenario("chart-lint-and-server-dry-run")
def chart_lint_and_dry_run():
    lint = helm("lint", CHART, "--strict")
    # Offline, helm template assumes Kubernetes v1.20 and the chart's kubeVersion (>= 1.34)
    # refuses it: name the server's version, as GitOps tools do.
    server = kjson("version")["serverVersion"]["gitVersion"]
    rendered = helm("template", "e2e-dry-run", CHART, "-n", "e2e-dry-run", "--kube-version", server).stdout
    kubectl("create", "namespace", "e2e-dry-run", check_rc=False)
    try:
        out = kubectl("apply", "--dry-run=server", "-n", "e2e-dry-run", "-f", "-", input=rendered).stdout
    finally:
        kubectl("delete", "namespace", "e2e-dry-run", "--wait=false", check_rc=False)
    kinds = re.findall(r"^(\S+)/", out, re.M)
    check(len(kinds) >= 7, f"dry run applied only {kinds}:\n{out}")
    return f"helm lint --strict: {lint.stdout.strip().splitlines()[-1]}; server dry run accepted {len(kinds)} objects ({', '.join(sorted(set(kinds)))})"


def token_kubeconfig(token):
    path = f"{WORK}/driver-token.kubeconfig"
    with open(path, "w") as f:
        json.dump({"apiVersion": "v1", "kind": "Config",
                   "clusters": [{"name": "e2e", "cluster": {"server": "https://10.250.0.1:6443",
                                                            "certificate-authority": f"{WORK}/pki/ca.crt"}}],
                   "users": [{"name": "driver", "user": {"token": token}}],
                   "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "driver"}}],
                   "current-context": "e2e"}, f)
    return path


def slice_for(node, pool, driver=DRIVER):
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
            "metadata": {"name": f"e2e-admission-{node}-{driver.replace('.', '-')}"},
            "spec": {"driver": driver, "nodeName": node, "pool": {"name": pool, "generation": 1,
                                                                   "resourceSliceCount": 1},
                     "devices": [{"name": "probe"}]}}


@scenario("admission-policy-by-behaviour")
def admission_policy():
    other = "efa-node-2"
    # A Node object with no kubelet behind it. The chart's exclusion label keeps the DaemonSet
    # from placing a driver pod there, and the taint keeps everything else off.
    kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": other, "labels": {"efa.networking.k8s.aws/device-plugin": "true"}},
        "spec": {"taints": [{"key": "e2e/no-kubelet", "effect": "NoSchedule"}]}}))
    driver_pod = wait_driver_ready()
    token = kubectl("create", "token", RELEASE, "-n", NAMESPACE, "--bound-object-kind", "Pod",
                    "--bound-object-name", driver_pod["metadata"]["name"],
                    "--bound-object-uid", driver_pod["metadata"]["uid"]).stdout.strip()
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==="))
    node_claim = claims.get("kubernetes.io", {}).get("node", {}).get("name")
    check(node_claim == NODE, f"the pod-bound token names node {node_claim!r}")
    config = token_kubeconfig(token)

    def as_driver(*args, input=None):
        return run(in_ns(f"{BIN}/kubectl", "--kubeconfig", config, *args), input=input, check_rc=False)

    results = []
    audit = AuditWindow()
    own = slice_for(NODE, f"e2e-admission-{NODE}")["metadata"]["name"]
    try:
        for node, driver, want in ((other, DRIVER, False), (NODE, "gpu.nvidia.com", False), (NODE, DRIVER, True)):
            r = as_driver("create", "-f", "-", input=json.dumps(slice_for(node, f"e2e-admission-{node}", driver)))
            allowed = r.returncode == 0
            reason = (r.stderr or r.stdout).strip().splitlines()[-1] if r.stderr or r.stdout else ""
            check(allowed == want, f"slice for node {node} driver {driver}: allowed={allowed}, want {want}: {reason}")
            results.append(f"create {node}/{driver}: {'allowed' if allowed else 'denied (' + reason[-90:] + ')'}")
        # Deleting another node's slice is refused too.
        kubectl("create", "-f", "-", input=json.dumps(slice_for(other, f"e2e-admission-{other}")))
        r = as_driver("delete", "resourceslice", slice_for(other, "")["metadata"]["name"])
        check(r.returncode != 0, f"the driver deleted node {other}'s slice")
        results.append(f"delete {other}/{DRIVER}: denied")
        # The own-node slice this test wrote is not the driver's: another program now writes the
        # driver's pool, so the driver refuses prepares, fails /readyz and says so on the Node.
        wait_for("the driver to report the foreign slice", lambda: foreign_slice_reported(own), 60)
        results.append(f"own-node slice of another writer: driver NotReady with an Event")
        r = as_driver("delete", "resourceslice", own)
        check(r.returncode == 0, f"the driver's token could not delete its own node's slice: {r.stderr}")
        results.append(f"delete {NODE}/{DRIVER}: allowed")
        wait_driver_ready(90)
    finally:
        kubectl("delete", "resourceslice", "--ignore-not-found",
                *[slice_for(n, "", d)["metadata"]["name"] for n, d in
                  ((other, DRIVER), (NODE, "gpu.nvidia.com"), (NODE, DRIVER))], check_rc=False)
        kubectl("delete", "node", other, "--ignore-not-found", check_rc=False)
    return "; ".join(results)


def driver_not_ready_because(text):
    """The driver pod is not Ready and its /readyz (through the kubelet's probe events) or its
    log names `text`."""
    pods = [p for p in driver_pods() if p["spec"].get("nodeName") == NODE]
    if not pods:
        return False
    conditions = {c["type"]: c["status"] for c in pods[0]["status"].get("conditions", [])}
    if conditions.get("Ready") != "False":
        return False
    log = kubectl("logs", "-n", NAMESPACE, pods[0]["metadata"]["name"], "--tail=200",
                  check_rc=False).stdout
    return text in log


def node_events(reason):
    events = kjson("get", "events", "-n", "default", "--field-selector",
                   f"involvedObject.kind=Node,involvedObject.name={NODE},reason={reason}")["items"]
    return [e["message"] for e in events]


def foreign_slice_reported(name):
    return (driver_not_ready_because(name) and
            any(name in message for message in node_events("ConflictingEfaDriver")))


@scenario("second-dra-net-driver-on-the-node")
def second_dra_net_driver():
    """DRANET and this driver on one node (a migration done out of order): the double registers
    as dra.net-reg.sock and publishes the node's EFAs under dra.net. The driver refuses prepares,
    fails /readyz and posts an Event, and never touches the other driver's slices; once that
    driver is gone and stays gone, its leftover slices are replaced by ours."""
    audit = AuditWindow()
    start_accel_double(DRIVER, "--sysfs-root", f"{node_tree()}/sys")
    try:
        wait_for("the driver to report the second dra.net driver", lambda: driver_not_ready_because(
            "another program is registered with the kubelet as DRA driver dra.net"), 90)
        events = node_events("ConflictingEfaDriver")
        check(any("dra.net-reg.sock" in m for m in events), f"no Event names the registration: {events}")
        # The other driver's slice controller claims the pool too (it may rewrite our slice).
        theirs = wait_for("the second driver's writes", lambda: [
            s["metadata"]["name"] for s in our_slices() if managers(s) - {"efa-dra-driver"}], 60)
        # Let the publisher see the other driver's writes, then count ours.
        time.sleep(5)
        writes = audit.slice_writes(users=(DRIVER_SA,))
        check(not writes, f"the driver wrote slices while another dra.net driver ran: {writes}")
    finally:
        stop_accel_double(DRIVER)
    started = time.time()
    wait_driver_ready(240)
    wait_for("only our slices", lambda: our_slices() and all(written_only_by_us(s) for s in our_slices()), 120)
    check(set(published_devices()) == set(hardware()), "the pool does not list the node's EFAs")
    return (f"NotReady with 'another program is registered ... dra.net' and an Event on the Node; "
            f"slice(s) {theirs} written by it left alone, 0 writes of ours; after it left, Ready "
            f"again in {time.time() - started:.0f}s, the pool written by us alone")


def managers(slice_object):
    return {m.get("manager") for m in slice_object["metadata"].get("managedFields", [])}


def written_only_by_us(slice_object):
    return managers(slice_object) == {"efa-dra-driver"}


@scenario("aws-dranet-values-file")
def aws_dranet_values_file():
    """The chart installed with a values file written for aws-dranet (test/chart), as a user
    migrating keeps it: healthPort moves the probes (the real kubelet probes 9177), verbosity,
    podLabels and the full updateStrategy take effect, filter is ignored with a warning."""
    values = f"{REPO}/test/chart/aws-dranet-values.yaml"
    out = helm("upgrade", RELEASE, CHART, "-n", NAMESPACE, "-f", f"{WORK}/values-e2e.yaml",
               "-f", values, "--wait", "--timeout", "180s").stdout
    try:
        pod_obj = wait_driver_ready(180)
        check(pod_obj["metadata"]["labels"].get("team") == "ml", "podLabels not applied")
        probe = pod_obj["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"]
        check(probe == 9177, f"readiness probe on {probe}, not healthPort 9177")
        strategy = kjson("get", "ds", "-n", NAMESPACE, RELEASE)["spec"]["updateStrategy"]
        check(strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
              f"updateStrategy {strategy}")
        notes = helm("get", "notes", RELEASE, "-n", NAMESPACE).stdout
        check("WARNING: filter is ignored" in notes, f"no filter warning in the notes:\n{notes}")
        return (f"helm upgrade -f aws-dranet values: Ready on probe port 9177 (real kubelet), "
                f"podLabels, updateStrategy {strategy['rollingUpdate']}, filter warning in NOTES")
    finally:
        helm("upgrade", RELEASE, CHART, "-n", NAMESPACE, "-f", f"{WORK}/values-e2e.yaml",
             "--wait", "--timeout", "180s")
        wait_driver_ready(180)


class DeviceClassWatch:
    """Polls the DeviceClass every 200 ms from start() to stop(); `missing` counts the polls
    that did not find it, so a migration step that deletes it even for a moment shows."""

    def __init__(self, name):
        self.name, self.polls, self.missing, self.stopping = name, 0, 0, False
        self.thread = __import__("threading").Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stopping:
            found = kubectl("get", "deviceclass", self.name, check_rc=False).returncode == 0
            self.polls += 1
            self.missing += 0 if found else 1
            time.sleep(0.2)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping = True
        self.thread.join()


def build_dranet_standin_image():
    """scratch + the accel-driver binary (static), imported into the node's containerd."""
    with tempfile.TemporaryDirectory(prefix="dranet-standin-") as root:
        run(["cp", f"{BIN}/accel-driver", f"{root}/accel-driver"])
        return run(["bash", "-c", f"tar -C {root} -c . | podman import - localhost/efa-e2e/dranet-standin:1 "
                    f"> /dev/null && podman save --format docker-archive localhost/efa-e2e/dranet-standin:1 2>/dev/null | "
                    f"{BIN}/ctr --address {WORK}/containerd/containerd.sock -n k8s.io images import - > /dev/null"])


@scenario("migration-from-aws-dranet")
def migration_from_aws_dranet():
    """docs/migration.md, step by step, against a stand-in for the aws-dranet release (its
    DeviceClass, and a DaemonSet of pods registering as dra.net). The DeviceClass is polled the
    whole time and must never be missing; no node runs both drivers; a claim works after."""
    standin = f"{HERE}/manifests/dranet-standin"
    label = "efa.networking.k8s.aws/driver"
    node_label = label.replace(".", "\\.")
    # Start where users are: aws-dranet serving the node, no efa-dra-driver.
    helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "120s")
    # The kubelet wipes a driver's slices 30 s after its last plugin of that name has gone.
    wait_for("our slices gone", lambda: not our_slices(), 120)
    build_dranet_standin_image()
    tree = node_tree()
    helm("install", "aws-dranet", standin, "-n", NAMESPACE, "--wait", "--timeout", "120s",
         "--set", f"kubeletDir={WORK}/kubelet", "--set", f"cdiDir={WORK}/cdi", "--set", f"sysfsRoot={tree}/sys")
    wait_for("the stand-in's slices", lambda: our_slices() and not any(
        "efa-dra-driver" in managers(s) for s in our_slices()), 90)
    steps = []
    with DeviceClassWatch("efa.networking.k8s.aws") as watch:
        # 1. Both charts honour one node label: every EFA node starts on DRANET's side.
        kubectl("label", "node", NODE, "--overwrite", f"{label}=dranet")
        helm("upgrade", "aws-dranet", standin, "-n", NAMESPACE, "--reuse-values", "--wait",
             "--timeout", "120s", "--set", f"nodeSelector.{node_label}=dranet")
        steps.append("1 nodes labelled driver=dranet, aws-dranet pinned to them")
        # 2. The DeviceClass changes hands without being deleted: keep it through aws-dranet's
        #    upgrade without it (Helm checks the live object's resource-policy), then let our
        #    release adopt it.
        kubectl("annotate", "deviceclass", "efa.networking.k8s.aws", "helm.sh/resource-policy=keep")
        helm("upgrade", "aws-dranet", standin, "-n", NAMESPACE, "--reuse-values", "--wait",
             "--set", "deviceClass.create=false")
        kubectl("annotate", "deviceclass", "efa.networking.k8s.aws", "--overwrite",
                f"meta.helm.sh/release-name={RELEASE}", f"meta.helm.sh/release-namespace={NAMESPACE}")
        helm("install", RELEASE, CHART, "-n", NAMESPACE, "-f", f"{WORK}/values-e2e.yaml",
             "--set", f"nodeSelector.{node_label}=efa-dra-driver", "--wait", "--timeout", "180s")
        kubectl("annotate", "deviceclass", "efa.networking.k8s.aws", "helm.sh/resource-policy-")
        owner = kjson("get", "deviceclass", "efa.networking.k8s.aws")["metadata"]["annotations"]
        check(owner.get("meta.helm.sh/release-name") == RELEASE, f"DeviceClass not adopted: {owner}")
        steps.append("2 DeviceClass kept through aws-dranet's upgrade and adopted by efa-dra-driver")
        check(not [p for p in driver_pods() if p["spec"].get("nodeName") == NODE],
              "efa-dra-driver runs on a node still labelled for DRANET")
        # 3. Node by node: flip the label. DRANET's pod leaves, ours comes; its leftover slices
        #    are replaced once it has been gone for the grace period.
        kubectl("label", "node", NODE, "--overwrite", f"{label}=efa-dra-driver")
        started = time.time()
        wait_driver_ready(240)
        wait_for("DRANET's pod gone", lambda: not kjson("get", "pods", "-n", NAMESPACE, "-l", "app=aws-dranet")["items"], 60)
        wait_for("only our slices", lambda: our_slices() and all(written_only_by_us(s) for s in our_slices()), 150)
        steps.append(f"3 node flipped: efa-dra-driver Ready and publishing after {time.time() - started:.0f}s")
        # 4. aws-dranet goes; the DeviceClass stays (it is ours now).
        helm("uninstall", "aws-dranet", "-n", NAMESPACE, "--wait", "--timeout", "120s")
        kubectl("get", "deviceclass", "efa.networking.k8s.aws")
        steps.append("4 helm uninstall aws-dranet")
    check(watch.missing == 0, f"the DeviceClass was missing in {watch.missing} of {watch.polls} polls")
    # 5. A claim works.
    path = f"{EXAMPLES}/single-efa.yaml"
    claims = ClaimWatch()
    apply(path)
    try:
        wait_pod_phase("efa-check", ("Succeeded",))
        devices = allocated(claims.claim_for("efa-check"))
        log = kubectl("logs", "efa-check").stdout
        check(hardware()[devices[0]][0] in log, f"the container does not see {devices}:\n{log}")
    finally:
        claims.stop()
        delete(path)
    return "; ".join(steps) + f"; DeviceClass present in all {watch.polls} polls; single-efa ran on {devices}"


@scenario("helm-uninstall-leaves-nothing")
def helm_uninstall():
    helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "120s")
    selector = f"app.kubernetes.io/instance={RELEASE}"
    kinds = ("daemonset,serviceaccount,clusterrole,clusterrolebinding,deviceclass,"
             "validatingadmissionpolicy,validatingadmissionpolicybinding,service")
    left = wait_for("no object of the release", lambda: (lambda items: None if items else True)(
        kjson("get", kinds, "-A", "-l", selector)["items"]), 60)
    # The kubelet removes a driver's slices once its plugin is gone for good.
    wait_for("the node's dra.net slices removed", lambda: not our_slices(), 120)
    return f"no {kinds.replace(',', '/')} labelled {selector}; the node's ResourceSlices were removed"


# --- runner -----------------------------------------------------------------------------------------

# The order matters: the examples first, on the p5.48xlarge tree up.sh made; the resilience
# scenarios; the chart's own checks; then the switch to the trn2 tree; the uninstall last.
ORDER = [
    "slices-and-deviceclass", "release-from-registry", "example-single-efa", "example-shared-claim", "example-gpu-aligned",
    "example-all-efas", "all-efas-of-one-gpu-root", "status-shows-which-pod-holds-which-efa",
    "claim-device-status", "device-plugin-style-extended-resource", "two-efa-claims-in-one-container",
    "gdrdrv-injected-when-enabled",
    "resilience-kill-9-driver", "resilience-delete-driver-pod", "resilience-kubelet-restart",
    "resilience-containerd-restart", "memlock-comes-from-containerd", "resilience-helm-upgrade-surge",
    "chart-lint-and-server-dry-run", "admission-policy-by-behaviour",
    "second-dra-net-driver-on-the-node", "aws-dranet-values-file", "migration-from-aws-dranet",
    "example-gpu-aligned-p4d", "eight-claims-on-four-shared-efas", "example-gpu-aligned-p6-b200", "example-neuron-aligned",
    "helm-uninstall-leaves-nothing",
]
SCENARIOS.sort(key=lambda entry: ORDER.index(entry[0]))


def main(argv):
    if argv[:1] == ["--list"]:
        print("\n".join(name for name, _ in SCENARIOS))
        return 0
    wanted = argv or [name for name, _ in SCENARIOS]
    unknown = set(wanted) - {name for name, _ in SCENARIOS}
    if unknown:
        print(f"unknown scenarios: {sorted(unknown)}; --list names them", file=sys.stderr)
        return 2
    passed = failed = 0
    for name, fn in SCENARIOS:
        if name not in wanted:
            continue
        start = time.time()
        try:
            detail = fn()
            passed += 1
            print(f"PASS {name} ({time.time() - start:.0f}s): {detail}", flush=True)
        except Exception as error:  # a scenario's own failure, or a broken assumption
            failed += 1
            text = str(error) if isinstance(error, Failure) else traceback.format_exc()
            print(f"FAIL {name} ({time.time() - start:.0f}s): {text}", flush=True)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/python3
"""Tests of the Helm chart with real Helm (helm lint, helm template; Helm also enforces
values.schema.json), and of the example manifests in docs/examples.
Usage: chart_test.py HELM REPO_ROOT KUBE_VERSION

KUBE_VERSION is the Kubernetes version templates are rendered for: offline, helm template
assumes v1.20, which the chart's kubeVersion (>= 1.34) refuses."""
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import jsonschema
import yaml

HELM = sys.argv[1] if len(sys.argv) > 1 else "helm"
ROOT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "..")
KUBE_VERSION = sys.argv[3] if len(sys.argv) > 3 else "v1.36.0"
CHART = os.path.join(ROOT, "deploy", "helm", "efa-dra-driver")
EXAMPLES = os.path.join(ROOT, "docs", "examples")
YAMLLINT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "yamllint.yaml")
# Helm keeps caches and its repository list under $HOME; a scratch one keeps the test hermetic.
HELM_HOME = tempfile.mkdtemp(prefix="chart-test-helm-")
atexit.register(shutil.rmtree, HELM_HOME, ignore_errors=True)
HELM_ENV = dict(os.environ, HOME=HELM_HOME)


def render(*args, expect_ok=True):
    """Renders the chart with --set/-f arguments; returns (documents, raw text)."""
    result = subprocess.run([HELM, "template", "efa", CHART, "--namespace", "kube-system",
                             "--kube-version", KUBE_VERSION, *args],
                            capture_output=True, text=True, env=HELM_ENV)
    if not expect_ok:
        return result
    if result.returncode != 0:
        raise AssertionError("render failed: " + result.stderr)
    docs = [d for d in yaml.safe_load_all(result.stdout) if d is not None]
    return docs, result.stdout


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def one(docs, kind):
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def node_terms(docs):
    """The DaemonSet's required node affinity terms, as lists of matchExpressions."""
    affinity = one(docs, "DaemonSet")["spec"]["template"]["spec"].get("affinity", {})
    required = affinity.get("nodeAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    return [t["matchExpressions"] for t in required["nodeSelectorTerms"]] if required else []


def container(docs):
    return one(docs, "DaemonSet")["spec"]["template"]["spec"]["containers"][0]


def env(docs):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(docs)["env"]}


def mounts(docs):
    return {m["mountPath"]: m.get("readOnly", False) for m in container(docs)["volumeMounts"]}


class DefaultRender(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.docs, cls.text = render()

    def test_every_document_is_a_kubernetes_object(self):
        for doc in self.docs:
            self.assertIn("apiVersion", doc)
            self.assertIn("kind", doc)
            self.assertTrue(doc["metadata"]["name"], doc)
        self.assertEqual(sorted(d["kind"] for d in self.docs),
                         ["ClusterRole", "ClusterRoleBinding", "DaemonSet", "DeviceClass",
                          "ServiceAccount", "ValidatingAdmissionPolicy",
                          "ValidatingAdmissionPolicyBinding"])

    def test_yamllint(self):
        result = subprocess.run(["yamllint", "-c", YAMLLINT_CONFIG, "-"], input=self.text,
                                capture_output=True, text=True)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_daemonset_env_and_args(self):
        e = env(self.docs)
        self.assertEqual(e["NODE_NAME"], {"fieldRef": {"fieldPath": "spec.nodeName"}})
        self.assertEqual(e["POD_UID"], {"fieldRef": {"fieldPath": "metadata.uid"}})
        self.assertEqual(e["EFA_DRA_DRIVER_NAME"], "dra.net")
        self.assertEqual(e["EFA_DRA_REGISTRAR_DIR"], "/var/lib/kubelet/plugins_registry")
        self.assertEqual(e["EFA_DRA_PLUGIN_DIR"], "/var/lib/kubelet/plugins/dra.net")
        self.assertEqual(e["EFA_DRA_CDI_ROOT"], "/var/run/cdi")
        self.assertEqual(e["EFA_DRA_HTTP_ADDRESS"], ":8089")
        self.assertEqual(e["EFA_DRA_TAINT_UNHEALTHY"], "false")
        self.assertNotIn("EFA_DRA_STATE_DIR", e)
        self.assertEqual(container(self.docs)["args"], ["run"])

    def test_daemonset_mounts_exactly_what_the_driver_uses(self):
        self.assertEqual(mounts(self.docs), {
            "/var/lib/kubelet/plugins_registry": False,
            "/var/lib/kubelet/plugins/dra.net": False,
            "/var/lib/kubelet/device-plugins": True,
            "/var/run/cdi": False,
            "/sys": True,
            "/dev/infiniband": True,
        })
        volumes = one(self.docs, "DaemonSet")["spec"]["template"]["spec"]["volumes"]
        self.assertTrue(all("hostPath" in v for v in volumes))

    def test_least_privilege(self):
        pod = one(self.docs, "DaemonSet")["spec"]["template"]["spec"]
        security = container(self.docs)["securityContext"]
        self.assertNotIn("privileged", security)
        self.assertEqual(security["capabilities"], {"drop": ["ALL"]})
        self.assertTrue(security["readOnlyRootFilesystem"])
        self.assertFalse(security["allowPrivilegeEscalation"])
        self.assertEqual(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault")
        self.assertEqual(pod["priorityClassName"], "system-node-critical")

    def test_probes_rollout_and_scheduling(self):
        c = container(self.docs)
        self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/healthz")
        self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
        self.assertEqual(c["livenessProbe"]["httpGet"]["port"], 8089)
        self.assertEqual(c["readinessProbe"]["httpGet"]["port"], 8089)
        ds = one(self.docs, "DaemonSet")
        # Surge rollout by default: the new pod starts before the old one stops. With
        # hostNetwork a declared containerPort would become a hostPort and the scheduler could
        # never place the surge pod, so no port is declared.
        self.assertEqual(ds["spec"]["updateStrategy"]["rollingUpdate"],
                         {"maxSurge": 1, "maxUnavailable": 0})
        self.assertNotIn("ports", c)
        pod = ds["spec"]["template"]["spec"]
        keys = {t["key"] for t in pod["tolerations"]}
        self.assertTrue({"nvidia.com/gpu", "aws.amazon.com/neuron", "CriticalAddonsOnly"} <= keys)
        # EFA instance types or the opt-in label; never Auto Mode nodes or device-plugin nodes.
        terms = node_terms(self.docs)
        self.assertEqual(len(terms), 2)
        for term in terms:
            self.assertIn({"key": "eks.amazonaws.com/compute-type", "operator": "NotIn",
                           "values": ["auto"]}, term)
            self.assertIn({"key": "efa.networking.k8s.aws/device-plugin",
                           "operator": "DoesNotExist"}, term)
        instance_types = next(e for e in terms[0] if e["key"] == "node.kubernetes.io/instance-type")
        self.assertEqual(instance_types["operator"], "In")
        for efa_type in ["p4d.24xlarge", "p4de.24xlarge", "p5.48xlarge", "p5e.48xlarge",
                         "p5en.48xlarge", "p6-b200.48xlarge", "p6-b300.48xlarge",
                         "p6e-gb200.36xlarge", "trn1.32xlarge", "trn1n.32xlarge", "trn2.48xlarge",
                         "trn2u.48xlarge", "hpc7a.96xlarge", "hpc6a.48xlarge", "inf1.24xlarge"]:
            self.assertIn(efa_type, instance_types["values"])
        self.assertIn({"key": "efa.networking.k8s.aws/efa-dra-driver", "operator": "Exists"},
                      terms[1])
        self.assertTrue(pod["hostNetwork"])
        self.assertEqual(pod["dnsPolicy"], "ClusterFirstWithHostNet")
        labels = ds["spec"]["template"]["metadata"]["labels"]
        self.assertEqual(labels["app"], "efa")  # kubectl logs -l app=<release>
        self.assertEqual(ds["spec"]["selector"]["matchLabels"], {
            "app.kubernetes.io/name": "efa-dra-driver", "app.kubernetes.io/instance": "efa",
            "app.kubernetes.io/component": "kubeletplugin"})
        limits = c["resources"]["limits"]
        self.assertEqual(limits["memory"], "128Mi")

    def test_rbac_is_exactly_what_the_driver_calls(self):
        rules = one(self.docs, "ClusterRole")["rules"]
        self.assertEqual(
            sorted((r["apiGroups"][0], r["resources"][0], tuple(sorted(r["verbs"]))) for r in rules),
            [("", "events", ("create",)),
             ("", "nodes", ("get",)),
             ("resource.k8s.io", "resourceclaims", ("get",)),
             ("resource.k8s.io", "resourceclaims/driver",
              ("associated-node:patch", "associated-node:update")),
             ("resource.k8s.io", "resourceclaims/status", ("patch",)),
             ("resource.k8s.io", "resourceslices",
              ("create", "delete", "get", "list", "update", "watch"))])
        driver_rule = next(r for r in rules if r["resources"] == ["resourceclaims/driver"])
        self.assertEqual(driver_rule["resourceNames"], ["dra.net"])
        binding = one(self.docs, "ClusterRoleBinding")
        self.assertEqual(binding["subjects"][0],
                         {"kind": "ServiceAccount", "name": "efa-efa-dra-driver",
                          "namespace": "kube-system"})

    def test_no_claim_status_rbac_when_the_driver_writes_no_claim_status(self):
        docs, _ = render("--set", "claimDeviceStatus=false")
        resources = [r["resources"][0] for r in one(docs, "ClusterRole")["rules"]]
        self.assertNotIn("resourceclaims/status", resources)
        self.assertNotIn("resourceclaims/driver", resources)
        env = {e["name"]: e.get("value") for e in one(docs, "DaemonSet")["spec"]["template"]["spec"]["containers"][0]["env"]}
        self.assertEqual(env["EFA_DRA_CLAIM_DEVICE_STATUS"], "false")

    def test_sharing_is_off_by_default_and_passed_to_the_driver(self):
        def env_of(docs):
            container = one(docs, "DaemonSet")["spec"]["template"]["spec"]["containers"][0]
            return {e["name"]: e.get("value") for e in container["env"]}
        env = env_of(self.docs)
        self.assertEqual(env["EFA_DRA_ALLOW_MULTIPLE_ALLOCATIONS"], "false")
        self.assertEqual(env["EFA_DRA_SHARES_PER_DEVICE"], "2")
        docs, _ = render("--set", "sharing.allowMultipleAllocations=true",
                         "--set", "sharing.sharesPerDevice=4")
        env = env_of(docs)
        self.assertEqual(env["EFA_DRA_ALLOW_MULTIPLE_ALLOCATIONS"], "true")
        self.assertEqual(env["EFA_DRA_SHARES_PER_DEVICE"], "4")
        # A release from before the value existed, upgraded with --reuse-values, has no map.
        env = env_of(render("--set", "sharing=null")[0])
        self.assertEqual(env["EFA_DRA_ALLOW_MULTIPLE_ALLOCATIONS"], "false")
        self.assertEqual(env["EFA_DRA_SHARES_PER_DEVICE"], "2")
        refused = render("--set", "sharing.sharesPerDevice=0", expect_ok=False)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("sharesPerDevice", refused.stderr)

    def test_device_class_selects_efa_devices_of_the_driver(self):
        device_class = one(self.docs, "DeviceClass")
        self.assertEqual(device_class["metadata"]["name"], "efa.networking.k8s.aws")
        expression = device_class["spec"]["selectors"][0]["cel"]["expression"]
        self.assertIn('device.driver == "dra.net"', expression)
        self.assertIn('device.attributes["dra.net"].pciDevice == "Elastic Fabric Adapter (EFA)"',
                      expression)

    def test_device_class_serves_the_device_plugins_extended_resource(self):
        self.assertEqual(one(self.docs, "DeviceClass")["spec"]["extendedResourceName"],
                         "vpc.amazonaws.com/efa")
        docs, _ = render("--set", "deviceClass.extendedResourceName=")
        self.assertNotIn("extendedResourceName", one(docs, "DeviceClass")["spec"])
        result = render("--set", "deviceClass.extendedResourceName=no-slash", expect_ok=False)
        self.assertNotEqual(result.returncode, 0)

    def test_admission_policy_limits_writes_to_own_node_and_driver(self):
        policy = one(self.docs, "ValidatingAdmissionPolicy")
        text = json.dumps(policy)
        self.assertIn("authentication.kubernetes.io/node-name", text)
        self.assertIn("system:serviceaccount:kube-system:efa-efa-dra-driver", text)
        self.assertIn('variables.slice.spec.driver == \\"dra.net\\"', text)
        binding = one(self.docs, "ValidatingAdmissionPolicyBinding")
        self.assertEqual(binding["spec"]["policyName"], policy["metadata"]["name"])
        self.assertEqual(binding["spec"]["validationActions"], ["Deny"])

    def test_helm_lint_strict(self):
        result = subprocess.run([HELM, "lint", "--strict", CHART], capture_output=True, text=True,
                                env=HELM_ENV)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("0 chart(s) failed", result.stdout)

    def test_offline_render_without_kube_version_names_the_requirement(self):
        # What a user sees with a bare `helm template`: the kubeVersion requirement, not a
        # broken manifest (the cluster tier checks NOTES.txt, which only an install renders).
        result = subprocess.run([HELM, "template", "efa", CHART], capture_output=True, text=True,
                                env=HELM_ENV)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("chart requires kubeVersion: >=1.34.0-0", result.stderr)


class Options(unittest.TestCase):
    """Each documented value changes the output the way values.yaml says."""

    def test_driver_name(self):
        docs, _ = render("--set", "driverName=efa.example.com")
        e = env(docs)
        self.assertEqual(e["EFA_DRA_DRIVER_NAME"], "efa.example.com")
        self.assertEqual(e["EFA_DRA_PLUGIN_DIR"], "/var/lib/kubelet/plugins/efa.example.com")
        self.assertIn('device.driver == "efa.example.com"',
                      one(docs, "DeviceClass")["spec"]["selectors"][0]["cel"]["expression"])

    def test_device_class_rbac_policy_and_service_account_switches(self):
        docs, _ = render("--set", "deviceClass.create=false", "--set", "rbac.create=false",
                         "--set", "admissionPolicy.enabled=false",
                         "--set", "serviceAccount.create=false",
                         "--set", "serviceAccount.name=existing")
        self.assertEqual(sorted(d["kind"] for d in docs), ["DaemonSet"])
        pod = one(docs, "DaemonSet")["spec"]["template"]["spec"]
        self.assertEqual(pod["serviceAccountName"], "existing")
        docs, _ = render("--set", "deviceClass.name=efa.example.com")
        self.assertEqual(one(docs, "DeviceClass")["metadata"]["name"], "efa.example.com")

    def test_every_optional_object_lints_and_parses(self):
        docs, text = render("--set", "metrics.service.enabled=true",
                            "--set", "metrics.serviceMonitor.enabled=true",
                            "--set", "metrics.podMonitor.enabled=true",
                            "--set", "updateStrategy.maxSurge=0",
                            "--set", "updateStrategy.maxUnavailable=1",
                            "--set", "metrics.grafanaDashboard.enabled=true",
                            "--set", "stateDir=/var/lib/efa-dra",
                            "--set", "podAnnotations.a=b", "--set", "serviceAccount.annotations.c=d",
                            "--set", "imagePullSecrets[0].name=regcred")
        self.assertEqual(len(by_kind(docs, "ServiceMonitor")), 1)
        self.assertEqual(len(by_kind(docs, "PodMonitor")), 1)
        self.assertEqual(len(by_kind(docs, "ConfigMap")), 1)
        for doc in docs:
            self.assertTrue(doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"], doc)
        result = subprocess.run(["yamllint", "-c", YAMLLINT_CONFIG, "-"], input=text,
                                capture_output=True, text=True)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_metrics_service_and_service_monitor(self):
        docs, _ = render("--set", "metrics.service.enabled=true",
                         "--set", "metrics.serviceMonitor.enabled=true",
                         "--set", "metrics.serviceMonitor.labels.release=prom",
                         "--set", "http.port=9400")
        service = one(docs, "Service")
        self.assertEqual(service["spec"]["ports"][0]["port"], 9400)
        self.assertEqual(service["spec"]["ports"][0]["targetPort"], 9400)
        self.assertEqual(container(docs)["readinessProbe"]["httpGet"]["port"], 9400)
        monitor = one(docs, "ServiceMonitor")
        self.assertEqual(monitor["metadata"]["labels"]["release"], "prom")
        self.assertEqual(monitor["spec"]["endpoints"][0]["path"], "/metrics")
        self.assertEqual(env(docs)["EFA_DRA_HTTP_ADDRESS"], ":9400")

    def test_pod_monitor_scrapes_a_named_port(self):
        # Off the host network the port is declared anyway; surge rollouts stay possible.
        docs, _ = render("--set", "metrics.podMonitor.enabled=true",
                         "--set", "metrics.podMonitor.labels.release=prom",
                         "--set", "hostNetwork=false", "--set", "http.port=9400")
        monitor = one(docs, "PodMonitor")
        self.assertEqual(monitor["metadata"]["labels"]["release"], "prom")
        self.assertEqual(monitor["spec"]["podMetricsEndpoints"][0]["port"], "http")
        self.assertEqual(monitor["spec"]["podMetricsEndpoints"][0]["path"], "/metrics")
        self.assertEqual(monitor["spec"]["selector"]["matchLabels"],
                         one(docs, "DaemonSet")["spec"]["selector"]["matchLabels"])
        self.assertEqual(container(docs)["ports"],
                         [{"name": "http", "containerPort": 9400, "protocol": "TCP"}])
        # On the host network the named port is a hostPort: only a rollout without surge works.
        docs, _ = render("--set", "metrics.podMonitor.enabled=true",
                         "--set", "updateStrategy.maxSurge=0",
                         "--set", "updateStrategy.maxUnavailable=1")
        self.assertEqual([p["name"] for p in container(docs)["ports"]], ["http"])
        self.assertEqual(by_kind(docs, "Service"), [])
        result = render("--set", "metrics.podMonitor.enabled=true", expect_ok=False)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("metrics.podMonitor.enabled declares the named port http, which hostNetwork "
                      "turns into a hostPort", result.stderr)
        result = render("--set", "metrics.podMonitor.enabled=true",
                        "--set", "updateStrategy.type=OnDelete", expect_ok=False)
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_grafana_dashboard_config_map(self):
        docs, _ = render("--set", "metrics.grafanaDashboard.enabled=true")
        config_map = one(docs, "ConfigMap")
        self.assertEqual(config_map["metadata"]["labels"]["grafana_dashboard"], "1")
        with open(os.path.join(CHART, "dashboards", "efa-dra-driver.json")) as f:
            shipped = json.load(f)
        self.assertEqual(json.loads(config_map["data"]["efa-dra-driver.json"]), shipped)
        docs, _ = render()
        self.assertEqual(by_kind(docs, "ConfigMap"), [])

    def test_service_monitor_without_service_fails_clearly(self):
        result = render("--set", "metrics.serviceMonitor.enabled=true", expect_ok=False)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("metrics.serviceMonitor.enabled needs metrics.service.enabled",
                      result.stderr)

    def test_state_dir(self):
        docs, _ = render("--set", "stateDir=/var/lib/efa-dra")
        self.assertEqual(env(docs)["EFA_DRA_STATE_DIR"], "/var/lib/efa-dra")
        self.assertIn("/var/lib/efa-dra", mounts(docs))
        result = render("--set", "stateDir=relative/dir", expect_ok=False)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("must be an absolute path", result.stderr)

    def test_runtime_flags(self):
        docs, _ = render("--set", "taintUnhealthyDevices=true", "--set", "logging.format=json",
                         "--set", "logging.verbosity=4", "--set", "resync=5m",
                         "--set", "extraArgs[0]=--kubeconfig=/etc/kube/config",
                         "--set", "image.tag=1.2.3", "--set", "kubeletDir=/data/kubelet",
                         "--set", "cdiRoot=/etc/cdi", "--set", "numaNodeList=true")
        e = env(docs)
        self.assertEqual(e["EFA_DRA_TAINT_UNHEALTHY"], "true")
        self.assertEqual(e["EFA_DRA_NUMA_NODE_LIST"], "true")
        self.assertEqual(env(render()[0])["EFA_DRA_NUMA_NODE_LIST"], "false")
        self.assertEqual(e["EFA_DRA_LOG_FORMAT"], "json")
        self.assertEqual(e["EFA_DRA_V"], "4")
        self.assertEqual(e["EFA_DRA_RESYNC"], "5m")
        self.assertEqual(e["EFA_DRA_REGISTRAR_DIR"], "/data/kubelet/plugins_registry")
        self.assertEqual(e["EFA_DRA_CDI_ROOT"], "/etc/cdi")
        self.assertIn("/etc/cdi", mounts(docs))
        c = container(docs)
        self.assertEqual(c["args"], ["run", "--kubeconfig=/etc/kube/config"])
        self.assertTrue(c["image"].endswith(":1.2.3"))

    def test_node_roots(self):
        docs, _ = render("--set", "sysfsRoot=/host/sys", "--set", "devRoot=/host/dev")
        e = env(docs)
        self.assertEqual((e["EFA_DRA_SYSFS_ROOT"], e["EFA_DRA_DEV_ROOT"]), ("/host/sys", "/host/dev"))
        # Mounted at the node's own paths: the CDI specs name <devRoot>/infiniband/uverbsN as
        # the host path the runtime opens.
        self.assertEqual({m: ro for m, ro in mounts(docs).items() if m.startswith("/host")},
                         {"/host/sys": True, "/host/dev/infiniband": True})
        volumes = {v["name"]: v["hostPath"]["path"]
                   for v in one(docs, "DaemonSet")["spec"]["template"]["spec"]["volumes"]}
        self.assertEqual((volumes["sys"], volumes["infiniband"]), ("/host/sys", "/host/dev/infiniband"))

    def test_gdrcopy_injection(self):
        def volumes(docs):
            return {v["name"]: v["hostPath"]
                    for v in one(docs, "DaemonSet")["spec"]["template"]["spec"]["volumes"]}
        # Off by default: no env value that turns it on, and no gdrdrv mount (a node without
        # GDRCopy must still start the driver).
        default, _ = render()
        self.assertEqual(env(default)["EFA_DRA_INJECT_GDRDRV"], "false")
        self.assertNotIn("/dev/gdrdrv", mounts(default))
        self.assertNotIn("gdrdrv", volumes(default))
        self.assertIs(chart_default("gdrcopy", "inject"), False)
        # A release from before the value existed, upgraded with --reuse-values, has no map.
        legacy, _ = render("--set", "gdrcopy=null")
        self.assertEqual(env(legacy)["EFA_DRA_INJECT_GDRDRV"], "false")
        self.assertNotIn("gdrdrv", volumes(legacy))
        docs, _ = render("--set", "gdrcopy.inject=true", "--set", "devRoot=/host/dev")
        self.assertEqual(env(docs)["EFA_DRA_INJECT_GDRDRV"], "true")
        # At the node's path (the CDI hostPath), read-only; a CharDevice, so that a missing
        # node is never created as a directory by the runtime.
        self.assertIs(mounts(docs)["/host/dev/gdrdrv"], True)
        self.assertEqual(volumes(docs)["gdrdrv"], {"path": "/host/dev/gdrdrv", "type": "CharDevice"})

    def test_scheduling_values(self):
        docs, _ = render("--set", "excludeNodesWithLabel=", "--set", "hostNetwork=false",
                         "--set", "supportedInstanceLabels.values=null",
                         "--set", "excludeAutoModeNodes=false",
                         "--set", "nodeSelector.node\\.kubernetes\\.io/instance-type=p5.48xlarge")
        pod = one(docs, "DaemonSet")["spec"]["template"]["spec"]
        self.assertNotIn("affinity", pod)
        self.assertFalse(pod["hostNetwork"])
        self.assertNotIn("dnsPolicy", pod)
        self.assertEqual(pod["nodeSelector"], {"node.kubernetes.io/instance-type": "p5.48xlarge"})
        # Every node, but still never an Auto Mode node.
        docs, _ = render("--set", "supportedInstanceLabels.values=null")
        self.assertEqual(len(node_terms(docs)), 1)
        self.assertIn("eks.amazonaws.com/compute-type", [e["key"] for e in node_terms(docs)[0]])

    def test_user_node_affinity_is_anded_with_the_chart_rules(self):
        # Before, a user's nodeAffinity rendered a second nodeAffinity key and the YAML parser
        # kept only one of them: the device-plugin exclusion was lost.
        docs, text = render(
            "--set", "supportedInstanceLabels.values={p5.48xlarge}",
            "--set", "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=zone",
            "--set", "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=Exists",
            "--set", "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[1].matchExpressions[0].key=rack",
            "--set", "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[1].matchExpressions[0].operator=Exists",
            "--set", "affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight=1",
            "--set", "affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].preference.matchExpressions[0].key=fast",
            "--set", "affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].preference.matchExpressions[0].operator=Exists",
            "--set", "affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight=1",
            "--set", "affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.topologyKey=kubernetes.io/hostname")
        self.assertEqual(text.count("nodeAffinity:"), 1)
        terms = node_terms(docs)
        # (instance type | opt-in label) x (zone | rack), each with both exclusions.
        self.assertEqual(len(terms), 4)
        for term in terms:
            keys = [e["key"] for e in term]
            self.assertIn("efa.networking.k8s.aws/device-plugin", keys)
            self.assertIn("eks.amazonaws.com/compute-type", keys)
            self.assertTrue("zone" in keys or "rack" in keys)
        affinity = one(docs, "DaemonSet")["spec"]["template"]["spec"]["affinity"]
        self.assertEqual(affinity["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"], 1)
        self.assertIn("podAntiAffinity", affinity)

    def test_extra_tolerations_are_appended(self):
        docs, _ = render("--set", "tolerations[0].key=team", "--set", "tolerations[0].operator=Exists",
                         "--set", "extraTolerations[0].key=dedicated",
                         "--set", "extraTolerations[0].operator=Exists")
        keys = [t["key"] for t in one(docs, "DaemonSet")["spec"]["template"]["spec"]["tolerations"]]
        self.assertEqual(keys, ["nvidia.com/gpu", "aws.amazon.com/neuron", "vpc.amazonaws.com/efa",
                                "CriticalAddonsOnly", "team", "dedicated"])
        # The aws-dranet chart's `tolerations: []` keeps the defaults.
        docs, _ = render("--set", "tolerations=null")
        self.assertEqual(len(one(docs, "DaemonSet")["spec"]["template"]["spec"]["tolerations"]), 4)
        docs, _ = render("--set", "defaultTolerations=null")
        pod = one(docs, "DaemonSet")["spec"]["template"]["spec"]
        self.assertNotIn("tolerations", pod)

    def test_state_dir_in_the_cdi_tmpfs_fails_clearly(self):
        for state_dir in ["/var/run/cdi", "/var/run/cdi/state", "/var/run/cdi/"]:
            with self.subTest(state_dir=state_dir):
                result = render("--set", "stateDir=" + state_dir, expect_ok=False)
                self.assertNotEqual(result.returncode, 0)
                self.assertIn("must not be in cdiRoot", result.stderr)
        docs, _ = render("--set", "stateDir=/var/run/cdi-state")  # a prefix, not a subdirectory
        self.assertEqual(env(docs)["EFA_DRA_STATE_DIR"], "/var/run/cdi-state")

    def test_surge_rollouts_on_either_network(self):
        for network in ["true", "false"]:
            for surge in ["1", "25%"]:
                with self.subTest(hostNetwork=network, surge=surge):
                    docs, _ = render("--set", "hostNetwork=" + network,
                                     "--set", "updateStrategy.maxSurge=" + surge)
                    expected = int(surge) if surge.isdigit() else surge
                    self.assertEqual(
                        one(docs, "DaemonSet")["spec"]["updateStrategy"]["rollingUpdate"],
                        {"maxSurge": expected, "maxUnavailable": 0})
                    self.assertEqual(env(docs)["POD_UID"],
                                     {"fieldRef": {"fieldPath": "metadata.uid"}})
                    ports = container(docs).get("ports", [])
                    host_ports = [p for p in ports if p.get("hostPort")]
                    self.assertEqual(host_ports, [])
                    # The named port exists only on the pod network, where it is not a hostPort.
                    self.assertEqual([p["containerPort"] for p in ports],
                                     [] if network == "true" else [8089])
        docs, _ = render("--set", "updateStrategy.maxSurge=0",
                         "--set", "updateStrategy.maxUnavailable=1")
        self.assertEqual(one(docs, "DaemonSet")["spec"]["updateStrategy"]["rollingUpdate"],
                         {"maxSurge": 0, "maxUnavailable": 1})
        result = render("--set", "updateStrategy.maxSurge=0", expect_ok=False)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("cannot both be 0", result.stderr)

    def test_full_name_override(self):
        docs, _ = render("--set", "fullnameOverride=efa-driver")
        self.assertEqual(one(docs, "DaemonSet")["metadata"]["name"], "efa-driver")


AWS_DRANET_VALUES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "aws-dranet-values.yaml")


class AwsDranetValues(unittest.TestCase):
    """A values file written for the aws-dranet chart installs and does what it means."""

    @classmethod
    def setUpClass(cls):
        cls.docs, cls.text = render("-f", AWS_DRANET_VALUES)

    def test_every_key_takes_effect(self):
        ds = one(self.docs, "DaemonSet")
        pod = ds["spec"]["template"]["spec"]
        c = container(self.docs)
        self.assertEqual(c["readinessProbe"]["httpGet"]["port"], 9177)  # healthPort
        self.assertEqual(env(self.docs)["EFA_DRA_HTTP_ADDRESS"], ":9177")
        self.assertEqual(env(self.docs)["EFA_DRA_V"], "4")  # verbosity
        self.assertEqual(ds["spec"]["template"]["metadata"]["labels"]["team"], "ml")  # podLabels
        self.assertEqual(ds["spec"]["template"]["metadata"]["annotations"], {"owner": "platform"})
        self.assertEqual(ds["spec"]["updateStrategy"],
                         {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}})
        self.assertEqual(c["securityContext"]["runAsGroup"], 0)  # securityContext as given
        self.assertFalse(c["securityContext"]["privileged"])
        self.assertEqual(c["resources"]["limits"]["memory"], "256Mi")
        # tolerations: [] keeps the EFA/GPU/Neuron/CriticalAddonsOnly tolerations.
        self.assertEqual(len(pod["tolerations"]), 4)
        instance_types = next(e for e in node_terms(self.docs)[0]
                              if e["key"] == "node.kubernetes.io/instance-type")
        self.assertEqual(instance_types["values"], ["p4d.24xlarge", "p5.48xlarge", "trn2.48xlarge"])
        self.assertEqual(one(self.docs, "DeviceClass")["metadata"]["name"], "efa.networking.k8s.aws")
        self.assertEqual(pod["priorityClassName"], "system-node-critical")

    def test_dranets_image_fails_with_a_clear_message(self):
        for repository in ["602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/dranet",
                           "registry.example.com/mirror/dranet"]:
            with self.subTest(repository=repository):
                result = render("-f", AWS_DRANET_VALUES, "--set", "image.repository=" + repository,
                                expect_ok=False)
                self.assertNotEqual(result.returncode, 0)
                self.assertIn("is DRANET's image, not efa-dra-driver's", result.stderr)
        render("--set", "image.repository=123456789012.dkr.ecr.us-east-1.amazonaws.com/efa-dra-driver")

    def test_umbrella_and_gitops_keys_are_accepted(self):
        render("--set", "global.imageRegistry=example.com", "--set", "enabled=true")


class Schema(unittest.TestCase):
    """values.schema.json as Helm applies it: helm template refuses values it rejects."""

    @classmethod
    def setUpClass(cls):
        with open(os.path.join(CHART, "values.schema.json")) as f:
            cls.schema = json.load(f)

    def test_defaults_are_valid(self):
        with open(os.path.join(CHART, "values.yaml")) as f:
            jsonschema.validate(yaml.safe_load(f), self.schema)
        render()  # and Helm agrees

    def test_bad_values_are_rejected(self):
        for bad in ["logging.format=xml", "http.port=70000", "unknownKey=1",
                    "driverName=Bad_Name", "resync=soon", "image.pullPolicy=Sometimes",
                    "updateStrategy.maxSurge=-1", "updateStrategy.maxSurge=150%",
                    "http.port=0", "taintUnhealthyDevices=yes", "extraTolerations=none",
                    "gdrcopy.inject=yes", "gdrcopy.enabled=true",
                    "sysfsRoot=relative", "devRoot=dev", "cdiRoot=var/run/cdi"]:
            with self.subTest(bad=bad):
                result = render("--set", bad, expect_ok=False)
                self.assertNotEqual(result.returncode, 0, f"{bad} was accepted")
                self.assertIn("values don't meet the specifications of the schema",
                              result.stderr)


def chart_default(*keys):
    with open(os.path.join(CHART, "values.yaml")) as f:
        value = yaml.safe_load(f)
    for key in keys:
        value = value[key]
    return value


def pod_specs(doc):
    """The pod specs of a Pod or of a workload's pod template."""
    if doc["kind"] == "Pod":
        return [doc["spec"]]
    template = doc.get("spec", {}).get("template", {})
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return [template["spec"]]
    return []


def example_problems(docs, efa_class):
    """What is wrong with the manifests of one example file, as sentences (empty: fine).
    Checks the resource.k8s.io/v1 shapes a v1beta1-era example gets wrong and the references
    between the objects of the file."""
    problems = []
    claim_objects = {}  # (kind, name) -> request names
    efa_requests = 0
    for doc in docs:
        for key in ("apiVersion", "kind"):
            if not doc.get(key):
                problems.append(f"a document has no {key}")
        if not (doc.get("metadata") or {}).get("name"):
            problems.append(f"{doc.get('kind')} has no metadata.name")
            continue
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind not in ("ResourceClaim", "ResourceClaimTemplate"):
            continue
        if doc["apiVersion"] != "resource.k8s.io/v1":
            problems.append(f"{kind} {name}: apiVersion {doc['apiVersion']}, want resource.k8s.io/v1")
        spec = doc["spec"]["spec"] if kind == "ResourceClaimTemplate" else doc["spec"]
        names = set()
        for request in spec["devices"]["requests"]:
            where = f"{kind} {name} request {request.get('name')}"
            names.add(request.get("name"))
            if ("exactly" in request) == ("firstAvailable" in request):
                problems.append(f"{where}: needs exactly one of exactly/firstAvailable (v1)")
                continue
            if "deviceClassName" in request:
                problems.append(f"{where}: deviceClassName belongs under exactly (v1)")
            for sub in [request["exactly"]] if "exactly" in request else request["firstAvailable"]:
                if not sub.get("deviceClassName"):
                    problems.append(f"{where}: no deviceClassName")
                mode = sub.get("allocationMode", "ExactCount")
                if mode not in ("ExactCount", "All"):
                    problems.append(f"{where}: allocationMode {mode}")
                if mode == "All" and "count" in sub:
                    problems.append(f"{where}: count with allocationMode All")
                if sub.get("deviceClassName") == efa_class:
                    efa_requests += 1
        for constraint in spec["devices"].get("constraints", []):
            unknown = set(constraint.get("requests", [])) - names
            if unknown:
                problems.append(f"{kind} {name}: constraint names unknown requests {sorted(unknown)}")
            attribute = constraint.get("matchAttribute", "")
            if "/" not in attribute:
                problems.append(f"{kind} {name}: matchAttribute {attribute!r} is not fully qualified")
        claim_objects[(kind, name)] = names
    for doc in docs:
        for pod in pod_specs(doc):
            where = f"{doc['kind']} {doc['metadata']['name']}"
            pod_claims = set()
            for ref in pod.get("resourceClaims", []):
                pod_claims.add(ref["name"])
                if "resourceClaimTemplateName" in ref:
                    target = ("ResourceClaimTemplate", ref["resourceClaimTemplateName"])
                else:
                    target = ("ResourceClaim", ref.get("resourceClaimName"))
                if target not in claim_objects:
                    problems.append(f"{where}: resourceClaims {ref['name']} refers to {target}, "
                                    "which the file does not define")
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                for use in c.get("resources", {}).get("claims", []):
                    if use["name"] not in pod_claims:
                        problems.append(f"{where}: container {c['name']} uses claim "
                                        f"{use['name']} the pod does not list")
    if efa_requests == 0:
        problems.append(f"no request of DeviceClass {efa_class} (the chart's default)")
    return problems


def load_example(name):
    with open(os.path.join(EXAMPLES, name)) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


class Examples(unittest.TestCase):
    """docs/examples: every manifest parses, lints, uses the chart's DeviceClass and the v1 field
    shapes, and every scenario of docs/usage.md has its file."""

    @classmethod
    def setUpClass(cls):
        cls.files = sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".yaml"))
        cls.efa_class = chart_default("deviceClass", "name")

    def test_every_example_is_well_formed(self):
        self.assertEqual(self.efa_class, "efa.networking.k8s.aws")
        self.assertGreaterEqual(len(self.files), 5)
        for name in self.files:
            with self.subTest(example=name):
                self.assertEqual(example_problems(load_example(name), self.efa_class), [])
                result = subprocess.run(["yamllint", "-c", YAMLLINT_CONFIG,
                                         os.path.join(EXAMPLES, name)],
                                        capture_output=True, text=True)
                self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_the_checker_catches_v1beta1_shapes_and_broken_references(self):
        docs = load_example("single-efa.yaml")
        template = next(d for d in docs if d["kind"] == "ResourceClaimTemplate")
        request = template["spec"]["spec"]["devices"]["requests"][0]
        request.update(request.pop("exactly"))  # the v1beta1 shape
        template["spec"]["spec"]["devices"]["constraints"] = [
            {"requests": ["efa", "gpu"], "matchAttribute": "pcieRoot"}]
        pod = next(d for d in docs if d["kind"] == "Pod")
        pod["spec"]["resourceClaims"][0]["resourceClaimTemplateName"] = "missing"
        problems = "\n".join(example_problems(docs, self.efa_class))
        for expected in ["needs exactly one of exactly/firstAvailable", "unknown requests",
                         "not fully qualified", "which the file does not define",
                         "no request of DeviceClass efa.networking.k8s.aws"]:
            self.assertIn(expected, problems)
        self.assertIn("no request of DeviceClass",
                      "\n".join(example_problems(load_example("single-efa.yaml"), "other.class")))

    def test_usage_md_links_every_example_and_the_scenarios_exist(self):
        with open(os.path.join(ROOT, "docs", "usage.md")) as f:
            usage = f.read()
        for name in self.files:
            self.assertIn(f"(examples/{name})", usage)
        requests, constraints, shared = [], [], False
        for name in self.files:
            docs = load_example(name)
            for doc in docs:
                if doc["kind"] in ("ResourceClaim", "ResourceClaimTemplate"):
                    spec = doc["spec"]["spec"] if doc["kind"] == "ResourceClaimTemplate" \
                        else doc["spec"]
                    requests += [r["exactly"] for r in spec["devices"]["requests"]]
                    constraints += [(tuple(c["requests"]), c["matchAttribute"], spec)
                                    for c in spec["devices"].get("constraints", [])]
                for pod in pod_specs(doc):
                    if doc["spec"].get("replicas", 1) > 1 and any(
                            "resourceClaimName" in r for r in pod.get("resourceClaims", [])):
                        shared = True
        efa = [r for r in requests if r["deviceClassName"] == self.efa_class]
        self.assertTrue(any(r.get("allocationMode") == "All" for r in efa), "allocationMode: All")
        self.assertTrue(any(r.get("count", 1) == 1 and r.get("allocationMode") != "All"
                            for r in efa), "one EFA")
        classes = lambda spec, reqs: {r["exactly"]["deviceClassName"]
                                      for r in spec["devices"]["requests"] if r["name"] in reqs}
        self.assertTrue(any(a == "resource.kubernetes.io/pcieRoot" and
                            classes(spec, reqs) == {"gpu.nvidia.com", self.efa_class}
                            for reqs, a, spec in constraints), "GPU + EFA on one pcieRoot")
        self.assertTrue(any(a.startswith("resource.aws.com/devicegroup") and a.endswith("_id")
                            and self.efa_class in classes(spec, reqs)
                            for reqs, a, spec in constraints), "Neuron + EFA device group")
        self.assertTrue(shared, "one ResourceClaim shared by several pods")


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])

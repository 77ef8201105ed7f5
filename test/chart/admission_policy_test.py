#!/usr/bin/python3
"""admission_policy_test.py HELM REPO_ROOT KUBE_VERSION VAP_CEL: the chart's
ValidatingAdmissionPolicy, as Helm renders it, evaluated by cel-go (test/compat/vap-cel) over
the requests it exists for. The driver's token may create, update and delete the ResourceSlices
of its own node and driver only; a token without a node name may write none; other users are
not this policy's business; denials give the reason an operator can act on. Then the same cases run against gutted copies of the policy (each
validation made vacuous in turn, the match condition widened) and each copy must fail a case:
a policy that stopped guarding something fails this test."""
import copy
import json
import os
import subprocess
import sys
import tempfile

import yaml

NAMESPACE = "efa-system"
NODE = "ip-10-0-1-23.ec2.internal"
OTHER_NODE = "ip-10-0-9-99.ec2.internal"
NODE_NAME_KEY = "authentication.kubernetes.io/node-name"


def render(helm, root, kube_version):
    with tempfile.TemporaryDirectory() as home:
        out = subprocess.run(
            [helm, "template", "efa", os.path.join(root, "deploy/helm/efa-dra-driver"),
             "--namespace", NAMESPACE, "--kube-version", kube_version],
            check=True, capture_output=True, text=True, env=dict(os.environ, HOME=home)).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    policies = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"]
    accounts = [d for d in docs if d["kind"] == "ServiceAccount"]
    driver = [d for d in docs if d["kind"] == "DeviceClass"]
    if len(policies) != 1 or len(accounts) != 1:
        sys.exit("expected one ValidatingAdmissionPolicy and one ServiceAccount, got %d and %d"
                 % (len(policies), len(accounts)))
    return policies[0], accounts[0]["metadata"]["name"], driver


def slice_of(node, driver="dra.net", name=None):
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
            "metadata": {"name": name or "%s-%s-abcde" % (node, driver)},
            "spec": {"driver": driver, "nodeName": node, "pool": {"name": node, "generation": 1,
                                                                   "resourceSliceCount": 1}}}


def cases(service_account):
    driver_user = "system:serviceaccount:%s:%s" % (NAMESPACE, service_account)
    token = {NODE_NAME_KEY: [NODE]}
    own, other = slice_of(NODE), slice_of(OTHER_NODE)
    return [
        {"name": "own node create", "operation": "CREATE", "username": driver_user,
         "extra": token, "object": own, "oldObject": None, "expect": "allow"},
        {"name": "own node update", "operation": "UPDATE", "username": driver_user,
         "extra": token, "object": own, "oldObject": own, "expect": "allow"},
        {"name": "own node delete", "operation": "DELETE", "username": driver_user,
         "extra": token, "object": None, "oldObject": own, "expect": "allow"},
        {"name": "other node create", "operation": "CREATE", "username": driver_user,
         "extra": token, "object": other, "oldObject": None, "expect": "deny"},
        {"name": "other node update", "operation": "UPDATE", "username": driver_user,
         "extra": token, "object": other, "oldObject": other, "expect": "deny"},
        {"name": "other node delete", "operation": "DELETE", "username": driver_user,
         "extra": token, "object": None, "oldObject": other, "expect": "deny"},
        {"name": "slice without a node (pool-wide) create", "operation": "CREATE",
         "username": driver_user, "extra": token,
         "object": {"spec": {"driver": "dra.net", "allNodes": True}}, "oldObject": None,
         "expect": "deny"},
        # Denied in any case (no slice has an empty nodeName), but the reason must name the
        # cause an operator can fix: the ServiceAccountTokenPodNodeInfo feature.
        {"name": "token without node name", "operation": "CREATE", "username": driver_user,
         "extra": {}, "object": own, "oldObject": None, "expect": "deny",
         "expectReason": "carries no node name"},
        {"name": "token with an empty node name list", "operation": "CREATE",
         "username": driver_user, "extra": {NODE_NAME_KEY: []}, "object": own,
         "oldObject": None, "expect": "deny", "expectReason": "carries no node name"},
        {"name": "other driver create", "operation": "CREATE", "username": driver_user,
         "extra": token, "object": slice_of(NODE, "gpu.nvidia.com"), "oldObject": None,
         "expect": "deny"},
        {"name": "other driver delete", "operation": "DELETE", "username": driver_user,
         "extra": token, "object": None, "oldObject": slice_of(NODE, "gpu.nvidia.com"),
         "expect": "deny"},
        {"name": "another user is not this policy's business", "operation": "CREATE",
         "username": "system:node:" + OTHER_NODE, "extra": {}, "object": other,
         "oldObject": None, "expect": "allow"},
        {"name": "another service account of the namespace", "operation": "CREATE",
         "username": "system:serviceaccount:%s:other" % NAMESPACE, "extra": {},
         "object": other, "oldObject": None, "expect": "allow"},
    ]


def run(vap_cel, policy, case_list):
    result = subprocess.run([vap_cel], input=json.dumps({"policy": policy, "cases": case_list}),
                            capture_output=True, text=True)
    if result.returncode not in (0, 1):
        sys.exit("vap-cel failed (%d): %s" % (result.returncode, result.stderr.strip()))
    return result.returncode == 0, result.stdout


def gutted(policy):
    """(description, copy) for each way of making the policy guard less."""
    out = []
    for i, validation in enumerate(policy["spec"]["validations"]):
        weak = copy.deepcopy(policy)
        weak["spec"]["validations"][i] = {"expression": "true", "message": "gutted"}
        out.append(("validation %d made vacuous (%s)" % (i, validation["expression"][:60]), weak))
    weak = copy.deepcopy(policy)
    weak["spec"]["matchConditions"] = [{"name": "never", "expression": "false"}]
    out.append(("match condition that never matches", weak))
    weak = copy.deepcopy(policy)
    weak["spec"]["validations"] = [{"expression": "true"}]
    out.append(("all validations replaced by true", weak))
    return out


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    helm, root, kube_version, vap_cel = sys.argv[1:]
    policy, service_account, _ = render(helm, root, kube_version)
    case_list = cases(service_account)
    ok, output = run(vap_cel, policy, case_list)
    print(output, end="")
    if not ok:
        print("FAIL: the rendered policy does not decide as expected")
        return 1
    still_passing = []
    for description, weak in gutted(policy):
        weak_ok, _ = run(vap_cel, weak, case_list)
        print("gutted policy, %s: %s" % (description, "NOT caught" if weak_ok else "caught"))
        if weak_ok:
            still_passing.append(description)
    if still_passing:
        print("FAIL: these cases let gutted policies pass: " + "; ".join(still_passing))
        return 1
    print("PASS: the policy decides %d cases as expected and every gutted copy fails one"
          % len(case_list))
    return 0


if __name__ == "__main__":
    sys.exit(main())

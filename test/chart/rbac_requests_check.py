#!/usr/bin/python3
"""rbac_requests_check.py HELM REPO_ROOT KUBE_VERSION REQUEST_LOG: every request the driver made
of the API double in the e2e tests (REQUEST_LOG, one JSON line each, written by the double)
must be allowed by the chart's ClusterRole as Helm renders it, judged the way the API server's
RBAC authorizer does: the request's verb (get, list, watch, create, update, patch, delete,
deletecollection), API group, resource and subresource ("resource/subresource") against each
rule's verbs, apiGroups and resources ("*" matching all). Requests from other programs (the
test's own clients) are not the driver's and are skipped by their User-Agent. Also fails when the
log holds no driver request at all, so that a broken recording cannot pass."""
import json
import os
import subprocess
import sys
import tempfile

import yaml

DRIVER_AGENT = "efa-dra-driver/"


def cluster_role_rules(helm, root, kube_version):
    with tempfile.TemporaryDirectory() as home:
        out = subprocess.run(
            [helm, "template", "efa", os.path.join(root, "deploy/helm/efa-dra-driver"),
             "--namespace", "efa-system", "--kube-version", kube_version],
            check=True, capture_output=True, text=True, env=dict(os.environ, HOME=home)).stdout
    roles = [d for d in yaml.safe_load_all(out) if d and d["kind"] in ("ClusterRole", "Role")]
    if not roles:
        sys.exit("the chart renders no ClusterRole")
    return [rule for role in roles for rule in role.get("rules") or []]


def attributes(request):
    """(verb, group, resource) of a REST request, resource as "name/subresource" when there is one;
    None for a path that is not a resource (/version, /healthz)."""
    parts = [p for p in request["path"].split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) != 2:
        rest = rest[2:]  # namespaced: namespaces/NS/<resource>...
    elif len(rest) == 2 and rest[0] == "namespaces":
        rest = ["namespaces", rest[1]]
    if not rest:
        return None
    resource = rest[0]
    named = len(rest) >= 2
    if len(rest) >= 3:
        resource += "/" + rest[2]
    method = request["method"]
    if method == "GET":
        verb = "watch" if request.get("watch") else ("get" if named else "list")
    elif method == "POST":
        verb = "create"
    elif method == "PUT":
        verb = "update"
    elif method == "PATCH":
        verb = "patch"
    elif method == "DELETE":
        verb = "delete" if named else "deletecollection"
    else:
        verb = method.lower()
    return verb, group, resource


def allowed(rules, verb, group, resource):
    for rule in rules:
        if (verb in rule.get("verbs", []) or "*" in rule.get("verbs", [])) and \
           (group in rule.get("apiGroups", []) or "*" in rule.get("apiGroups", [])) and \
           (resource in rule.get("resources", []) or "*" in rule.get("resources", [])):
            return True
    return False


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    helm, root, kube_version, log = sys.argv[1:]
    rules = cluster_role_rules(helm, root, kube_version)
    if not os.path.exists(log):
        print("FAIL: no request log %s (the e2e tests write it; run them first)" % log)
        return 1
    seen = {}
    with open(log) as f:
        for number, line in enumerate(f, 1):
            try:
                request = json.loads(line)
            except ValueError:
                print("FAIL: %s:%d is not a JSON line: %r" % (log, number, line[:120]))
                return 1
            if not request.get("userAgent", "").startswith(DRIVER_AGENT):
                continue
            attrs = attributes(request)
            if attrs is not None:
                seen.setdefault(attrs, "%s %s" % (request["method"], request["path"]))
    if not seen:
        print("FAIL: %s holds no request of the driver" % log)
        return 1
    denied = 0
    for (verb, group, resource), example in sorted(seen.items()):
        ok = allowed(rules, verb, group, resource)
        denied += not ok
        print("%s %s %s.%s (e.g. %s)" % ("allowed" if ok else "DENIED", verb, resource,
                                          group or "core", example))
    if denied:
        print("FAIL: the chart's RBAC denies %d kind(s) of request the driver makes" % denied)
        return 1
    print("PASS: %d kinds of request, all allowed by the chart's RBAC" % len(seen))
    return 0


if __name__ == "__main__":
    sys.exit(main())

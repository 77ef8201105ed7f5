#!/usr/bin/python3
"""Offline structural check of Kubernetes manifests, as kubectl's client-side validation does it.

  k8s_schema.py SCHEMA.yaml FILE.yaml...    one line per problem (unknown field, a map where a
                                            list belongs, a string where a number belongs, an
                                            unknown apiVersion/kind); exit 1 if any
  k8s_schema.py --subset FULL.yaml OUT.yaml  writes the types that KINDS (below) reach

SCHEMA is the apply-configuration schema that client-go ships (types: name, map/list/scalar),
cut down by --subset to the kinds the chart and docs/examples use: test/chart/k8s-schema-1.36.yaml.
Kinds of groups it does not know (custom resources such as ServiceMonitor) are not checked.
Needs python3-yaml."""
import sys

import yaml

# The built-in kinds the chart renders and docs/examples use, plus a few the chart may grow into.
KINDS = [
    ("admissionregistration", "v1", "ValidatingAdmissionPolicy"),
    ("admissionregistration", "v1", "ValidatingAdmissionPolicyBinding"),
    ("apps", "v1", "DaemonSet"),
    ("apps", "v1", "Deployment"),
    ("core", "v1", "ConfigMap"),
    ("core", "v1", "Namespace"),
    ("core", "v1", "Pod"),
    ("core", "v1", "Secret"),
    ("core", "v1", "Service"),
    ("core", "v1", "ServiceAccount"),
    ("policy", "v1", "PodDisruptionBudget"),
    ("rbac", "v1", "ClusterRole"),
    ("rbac", "v1", "ClusterRoleBinding"),
    ("rbac", "v1", "Role"),
    ("rbac", "v1", "RoleBinding"),
    ("resource", "v1", "DeviceClass"),
    ("resource", "v1", "ResourceClaim"),
    ("resource", "v1", "ResourceClaimTemplate"),
    ("resource", "v1", "ResourceSlice"),
]
# API group (as in apiVersion) -> the package name in the schema's type names.
PACKAGES = {"": "core", "apps": "apps", "rbac.authorization.k8s.io": "rbac",
            "resource.k8s.io": "resource", "admissionregistration.k8s.io": "admissionregistration",
            "policy": "policy"}


def type_name(package, version, kind):
    return "io.k8s.api.%s.%s.%s" % (package, version, kind)


def named_types(node):
    """Every namedType mentioned anywhere below node."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "namedType":
                yield value
            else:
                yield from named_types(value)
    elif isinstance(node, list):
        for value in node:
            yield from named_types(value)


def subset(full_path, out_path):
    with open(full_path) as f:
        types = {t["name"]: t for t in yaml.safe_load(f)["types"]}
    wanted, todo = set(), [type_name(*k) for k in KINDS]
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        if name not in types:
            sys.exit("%s: no type %s" % (full_path, name))
        wanted.add(name)
        todo.extend(named_types(types[name]))
    # "__untyped_atomic_" and friends are referenced by name too; they are in `types` as well.
    kept = [types[n] for n in sorted(wanted)]
    with open(out_path, "w") as f:
        f.write("# Cut from client-go's apply-configuration schema by test/chart/k8s_schema.py"
                " --subset.\n")
        yaml.safe_dump({"types": kept}, f, sort_keys=False)
    print("%d of %d types" % (len(kept), len(types)))


def check_node(types, node, schema, path, problems):
    if schema is None:
        return
    if "namedType" in schema:
        named = types.get(schema["namedType"])
        if named is None:
            problems.append("%s: the schema has no type %s" % (path, schema["namedType"]))
            return
        return check_node(types, node, named, path, problems)
    if node is None or schema.get("scalar") == "untyped":
        return  # null is allowed anywhere (the API server drops it); untyped takes anything
    if "map" in schema and isinstance(node, dict):
        spec = schema["map"]
        fields = {f["name"]: f["type"] for f in spec.get("fields", [])}
        for key, value in node.items():
            if key in fields:
                check_node(types, value, fields[key], "%s.%s" % (path, key), problems)
            elif "elementType" in spec:
                check_node(types, value, spec["elementType"], "%s[%s]" % (path, key), problems)
            else:
                problems.append("%s: unknown field %r" % (path, key))
        return
    if "list" in schema and isinstance(node, list):
        for i, value in enumerate(node):
            check_node(types, value, schema["list"]["elementType"], "%s[%d]" % (path, i),
                       problems)
        return
    if "scalar" in schema:
        kind = schema["scalar"]
        is_number = isinstance(node, (int, float)) and not isinstance(node, bool)
        if not ((kind == "string" and isinstance(node, str)) or
                (kind == "numeric" and is_number) or
                (kind == "boolean" and isinstance(node, bool))):
            problems.append("%s: expected %s, got %s %r" % (path, kind, type(node).__name__, node))
        return
    expected = "map" if "map" in schema else "list" if "list" in schema else "known value"
    problems.append("%s: expected a %s, got %s" % (path, expected, type(node).__name__))


def check(schema_path, files):
    with open(schema_path) as f:
        types = {t["name"]: t for t in yaml.safe_load(f)["types"]}
    documents = problems_total = 0
    for file in files:
        with open(file) as f:
            docs = list(yaml.safe_load_all(f))
        for doc in docs:
            if not doc:
                continue
            documents += 1
            api_version, kind = doc.get("apiVersion", ""), doc.get("kind", "")
            where = "%s %s/%s" % (file, kind, (doc.get("metadata") or {}).get("name"))
            group, _, version = api_version.rpartition("/")
            if group not in PACKAGES:
                continue  # a custom resource
            name = type_name(PACKAGES[group], version, kind)
            if name not in types:
                print("%s: unknown apiVersion/kind %s %s (or not in %s)" %
                      (where, api_version, kind, schema_path))
                problems_total += 1
                continue
            problems = []
            check_node(types, doc, {"namedType": name}, kind, problems)
            for problem in problems:
                print("%s: %s" % (where, problem))
            problems_total += len(problems)
    print("%d documents, %d problems" % (documents, problems_total))
    return 1 if problems_total else 0


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--subset":
        subset(sys.argv[2], sys.argv[3])
        return 0
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    return check(sys.argv[1], sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())

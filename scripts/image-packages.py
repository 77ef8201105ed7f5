#!/usr/bin/python3
"""Lists the Debian packages an image root tree records, the way an image scanner sees them.

    image-packages.py ROOT

Reads ROOT/var/lib/dpkg/status.d/* (the distroless layout that trivy, syft and grype read) and
ROOT/usr/share/sbom/efa-dra-driver.spdx.json, prints one "name version arch" line per package
and fails when either record is missing, a stanza lacks a field a scanner needs, or the two
records disagree (a scanner reading one would report other versions than one reading the other).
"""
import json
import os
import sys


def read_status_dir(status_dir):
    packages = {}
    for entry in sorted(os.listdir(status_dir)):
        fields = {}
        with open(os.path.join(status_dir, entry), encoding="utf-8") as stanza:
            for line in stanza:
                if line[:1] in (" ", "\t") or ":" not in line:
                    continue
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        for key in ("Package", "Version", "Architecture", "Status"):
            if key not in fields:
                raise ValueError(f"{status_dir}/{entry}: no {key} field")
        if fields["Package"] != entry:
            raise ValueError(f"{status_dir}/{entry}: names package {fields['Package']}")
        packages[entry] = (fields["Version"], fields["Architecture"])
    return packages


def read_sbom(path):
    with open(path, encoding="utf-8") as sbom:
        document = json.load(sbom)
    if document.get("spdxVersion") != "SPDX-2.3":
        raise ValueError(f"{path}: not an SPDX 2.3 document")
    packages = {}
    for package in document.get("packages", []):
        for ref in package.get("externalRefs", []):
            if ref.get("referenceLocator", "").startswith("pkg:deb/"):
                packages[package["name"]] = package["versionInfo"]
    return packages


def main():
    if len(sys.argv) != 2:
        print("usage: image-packages.py ROOT", file=sys.stderr)
        return 2
    root = sys.argv[1]
    status_dir = os.path.join(root, "var/lib/dpkg/status.d")
    sbom_path = os.path.join(root, "usr/share/sbom/efa-dra-driver.spdx.json")
    try:
        status = read_status_dir(status_dir)
        sbom = read_sbom(sbom_path)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as error:
        print(f"image-packages: {error}", file=sys.stderr)
        return 1
    if not status:
        print(f"image-packages: {status_dir} records no package", file=sys.stderr)
        return 1
    disagree = sorted(name for name in set(status) | set(sbom)
                      if name not in status or name not in sbom or status[name][0] != sbom[name])
    for name, (version, arch) in status.items():
        print(f"{name} {version} {arch}")
    if disagree:
        print(f"image-packages: status.d and SBOM disagree on {' '.join(disagree)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Selectors users wrote against DRANET pick the same EFAs from our slices as from DRANET's.

For the bundled p4d.24xlarge and p5.48xlarge trees, each selector of the table is evaluated with
the Kubernetes scheduler's DRA CEL code (dra-cel, on k8s.io/dynamic-resource-allocation/cel)
against our devices (`efa-dra-driver discover --fixture <type> --slices -o json`) and against
DRANET v1.2.0's (test/fixtures/dranet/<type>.json, see derive.py there); the two sets must be
equal and have the size the table gives (so no selector can pass by matching nothing twice).

Usage: dranet_selectors_test.py EFA_DRA_DRIVER DRA_CEL FIXTURES_DIR"""
import json
import os
import subprocess
import sys
import unittest

DRIVER_BINARY, DRA_CEL, FIXTURES = sys.argv[1:4]

ATTR = 'device.attributes["dra.net"]'
# selector -> number of EFAs it picks on (p4d.24xlarge, p5.48xlarge)
SELECTORS = {
    f'{ATTR}.pciDevice == "Elastic Fabric Adapter (EFA)"': (4, 32),
    f'{ATTR}.pciVendor == "Amazon.com, Inc."': (4, 32),
    f'{ATTR}.rdma == true': (4, 32),
    f'{ATTR}.pciSubsystem == "efa0"': (4, 0),
    f'{ATTR}.pciSubsystem == "efa1"': (0, 32),
    f'{ATTR}.numaNode == 0': (2, 16),
    f'has({ATTR}.numaNode) && {ATTR}.numaNode == 1': (2, 16),
    'device.attributes["resource.kubernetes.io"].pcieRoot == "pci0000:10"': (1, 0),
    'device.attributes["resource.kubernetes.io"].pcieRoot == "pci0000:44"': (0, 4),
    f'{ATTR}.rdmaDevice == "rdmap16s27"': (1, 0),
    f'{ATTR}.rdmaDevice.startsWith("rdmap")': (4, 32),
    f'{ATTR}.pciAddress.startsWith("0000:9")': (1, 4),
    # DRANET's own test for an RDMA-only device, and its opposite: an EFA has no netdev.
    f'!has({ATTR}.ifName)': (4, 32),
    f'has({ATTR}.ifName)': (0, 0),
    f'has({ATTR}.ifName) && {ATTR}.ifName == "ens65"': (0, 0),
    # The chart's DeviceClass.
    f'device.driver == "dra.net" && has({ATTR}.pciDevice) && {ATTR}.pciDevice == "Elastic Fabric Adapter (EFA)"': (4, 32),
}


def evaluate(devices):
    request = {"driver": "dra.net", "devices": devices, "selectors": list(SELECTORS)}
    result = subprocess.run([DRA_CEL], input=json.dumps(request), capture_output=True, text=True)
    if result.returncode != 0:
        raise AssertionError("dra-cel: " + result.stderr)
    return json.loads(result.stdout)


def our_devices(instance):
    result = subprocess.run([DRIVER_BINARY, "discover", "--fixture", instance, "--slices", "-o", "json",
                             "--node-name", "node-1"], capture_output=True, text=True)
    if result.returncode != 0:
        raise AssertionError(f"discover --fixture {instance}: {result.stderr}")
    slices = json.loads(result.stdout)
    slices = slices if isinstance(slices, list) else slices.get("items", [slices])
    return {d["name"]: d.get("attributes", {}) for s in slices for d in s["spec"]["devices"]}


class DranetSelectors(unittest.TestCase):
    def test_same_devices_as_dranet(self):
        for column, instance in enumerate(["p4d.24xlarge", "p5.48xlarge"]):
            with open(os.path.join(FIXTURES, "dranet", instance + ".json")) as f:
                dranet = evaluate(json.load(f)["devices"])
            ours = evaluate(our_devices(instance))
            for selector, counts in SELECTORS.items():
                with self.subTest(instance=instance, selector=selector):
                    self.assertEqual(ours[selector], dranet[selector])
                    self.assertEqual(len(dranet[selector]), counts[column], dranet[selector])


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])

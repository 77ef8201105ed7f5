// Test inventories for the slices tests, built as EfaDevice values the way discovery reports
// them on real topologies (efa-hardware.md §B): p4d (4 x efa0 with ENA siblings), p5 (32 x efa1,
// efa-only), and a trn2-like node (16 x efa2 with Neuron device groups).
#pragma once

#include <cstdio>
#include <string>

#include "efadra/discovery/efa_device.h"

namespace efadra::slices::testing {

// A device with every field known; callers blank what a case needs unknown.
inline discovery::EfaDevice MakeDevice(int bus, int dev_fn_dev, uint16_t device_id, int numa,
                                       const std::string& root, int uverbs) {
  discovery::EfaDevice d;
  char bdf[32];
  std::snprintf(bdf, sizeof(bdf), "0000:%02x:%02x.0", bus, dev_fn_dev);
  d.pci_address = bdf;
  d.vendor_id = 0x1d0f;
  d.device_id = device_id;
  d.subsystem_vendor_id = 0x1d0f;
  d.subsystem_device_id = device_id;
  d.generation = (device_id & 0xf) + 1;
  d.driver = "efa";
  d.rdma_device = "rdmap" + std::to_string(bus) + "s" + std::to_string(dev_fn_dev);
  d.uverbs_index = uverbs;
  d.uverbs_dev = {231, static_cast<uint32_t>(192 + uverbs)};
  d.pcie_root = root;
  d.numa_node = numa;
  d.port = {"ACTIVE", "LinkUp", "100 Gb/sec (4X EDR)", 100};
  d.node_guid = "dd28:fea6:0000:2500";
  return d;
}

inline discovery::Inventory P4dInventory() {
  discovery::Inventory inv;
  inv.instance_type = "p4d.24xlarge";
  const int buses[] = {0x10, 0x20, 0x90, 0xa0};
  const char* netdevs[] = {"ens32", "ens65", "ens129", "ens161"};
  for (int i = 0; i < 4; ++i) {
    char root[16];
    std::snprintf(root, sizeof(root), "pci0000:%02x", buses[i]);
    auto d = MakeDevice(buses[i], 0x1b, 0xefa0, i < 2 ? 0 : 1, root, i);
    char mac[32];
    std::snprintf(mac, sizeof(mac), "0e:a0:00:00:%02x:00", buses[i]);
    d.netdev = discovery::Netdev{netdevs[i], mac, 9001, "up"};
    inv.devices.push_back(d);
  }
  return inv;
}

inline discovery::Inventory P5Inventory() {
  discovery::Inventory inv;
  inv.instance_type = "p5.48xlarge";
  const int roots[] = {0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb};
  int uverbs = 0;
  for (int r = 0; r < 8; ++r) {
    char root[16];
    std::snprintf(root, sizeof(root), "pci0000:%02x", roots[r]);
    for (int i = 0; i < 4; ++i) {
      auto d = MakeDevice(roots[r] + 0x0b + i, 0, 0xefa1, r < 4 ? 0 : 1, root, uverbs++);
      d.rdma_device = "rdmap" + std::to_string(roots[r] + 0x0b + i) + "s0";
      inv.devices.push_back(d);
    }
  }
  return inv;
}

// trn2-like: 16 efa2 devices, ENA siblings on half, all four Neuron device-group attributes.
inline discovery::Inventory Trn2LikeInventory() {
  discovery::Inventory inv;
  inv.instance_type = "trn2.48xlarge";
  const int buses[] = {0x56, 0x57, 0x6c, 0x6d, 0x82, 0x83, 0x98, 0x99,
                       0xb3, 0xb4, 0xc9, 0xca, 0xdf, 0xe0, 0xf5, 0xf6};
  for (int i = 0; i < 16; ++i) {
    char root[16];
    std::snprintf(root, sizeof(root), "pci0000:%02x", buses[i] - 0x0b);
    auto d = MakeDevice(buses[i], 0, 0xefa2, i < 8 ? 0 : 1, root, i);
    d.port.rate_gbps = 200;
    if (i % 2 == 0) {
      char mac[32];
      std::snprintf(mac, sizeof(mac), "16:b0:33:f8:%02x:cd", buses[i]);
      d.netdev = discovery::Netdev{"enp" + std::to_string(buses[i]) + "s0", mac, 9001, "up"};
    }
    d.verbs = discovery::VerbsCapabilities{true, true, 1 << 30, 4096, 32768, 2, 1, 32};
    d.device_groups = {{"devicegroup1_id", d.pci_address},
                       {"devicegroup4_id", "0123456789abcdef"},
                       {"devicegroup8_id", "fedcba9876543210"},
                       {"devicegroup16_id", "00112233aabbccdd"}};
    inv.devices.push_back(d);
  }
  return inv;
}

}  // namespace efadra::slices::testing

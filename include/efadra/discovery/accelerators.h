// The accelerators an EFA is paired with: NVIDIA GPUs and AWS Neuron devices found among the PCI
// functions in sysfs, and the grouping an operator asks about ("which EFAs sit on GPU 3's PCIe
// root?", "which EFAs belong to Neuron group 2?"). Used by `discover` only: the driver never
// publishes GPUs or Neuron devices, their own DRA drivers do.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "efadra/core/filesystem.h"
#include "efadra/discovery/efa_device.h"

namespace efadra::discovery {

enum class AcceleratorKind { kNvidiaGpu, kNeuron };

struct Accelerator {
  AcceleratorKind kind = AcceleratorKind::kNvidiaGpu;
  std::string pci_address;  // "0000:53:00.0"
  uint16_t vendor_id = 0;
  uint16_t device_id = 0;
  std::string driver;     // bound PCI driver ("nvidia", "neuron-driver"); "" when none
  std::string pcie_root;  // "pci0000:44", derived as for EFAs; "" unknown
  int numa_node = -1;
  // GPUs: the index nvidia-smi and NVML give the GPU (they number GPUs in PCI bus-id order), so
  // the rank among this node's NVIDIA GPUs by PCI address. -1 for Neuron devices: the Neuron
  // index N of /dev/neuronN comes from firmware routing ids and cannot be read from sysfs.
  int index = -1;
};

struct AcceleratorScan {
  std::vector<Accelerator> devices;  // sorted by PCI address
  std::vector<std::string> warnings;
};

// Walks bus/pci/devices: NVIDIA (0x10de) functions of class VGA (0x0300) or 3D controller
// (0x0302) are GPUs (their audio and NVSwitch functions are not); Amazon (0x1d0f) functions with
// a Neuron device id or the neuron-driver bound are Neuron devices. A function whose vendor or
// class cannot be read is skipped with a warning naming the file. No bus/pci/devices is an
// empty scan.
AcceleratorScan FindAccelerators(const core::Filesystem& sysfs);

// One PCIe root with what sits on it: the unit the scheduler's matchAttribute on
// resource.kubernetes.io/pcieRoot aligns.
struct PcieRootGroup {
  std::string root;  // "" for devices whose root is unknown
  int numa_node = -1;
  std::vector<Accelerator> gpus;
  std::vector<Accelerator> neuron_devices;
  std::vector<EfaDevice> efas;
};

// Every root that holds an EFA or an accelerator, sorted by NUMA node then root; EFAs and
// accelerators sorted by PCI address. A root's NUMA node is its first device's that is known.
std::vector<PcieRootGroup> GroupByPcieRoot(const std::vector<EfaDevice>& efas,
                                           const std::vector<Accelerator>& accelerators);

// One Neuron device group of 4 (resource.aws.com/devicegroup4_id): the EFAs that carry the id
// and the Neuron indexes (/dev/neuronN) the Neuron DRA driver gives the same id.
struct NeuronGroup {
  std::string devicegroup4_id;
  std::vector<int> neuron_indexes;
  std::vector<EfaDevice> efas;
};

// The EFAs of `efas` grouped by their devicegroup4_id, in order of the lowest Neuron index;
// `neuron_efa_by_index` is the instance family's table (Neuron index -> EFA PCI address), which
// gives each group's Neuron indexes. Empty when no EFA carries device-group attributes.
std::vector<NeuronGroup> GroupByNeuronDeviceGroup(
    const std::vector<EfaDevice>& efas, const std::map<int, std::string>& neuron_efa_by_index);

}  // namespace efadra::discovery

// Parsers for the sysfs attribute formats discovery reads (efa-hardware.md §A4-A7). Pure
// functions over the file text (trailing newline allowed); none touches the disk. Thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "efadra/core/status.h"
#include "efadra/discovery/efa_device.h"

namespace efadra::discovery {

// The text without surrounding whitespace (sysfs values end with '\n').
std::string_view TrimValue(std::string_view text);

// True for a lowercase extended BDF "dddd:bb:dd.f" (the regex of contracts.md §6.1).
bool IsValidPciAddress(std::string_view bdf);

// "0x1d0f\n" -> 0x1d0f (vendor, device, subsystem_* files). kInvalidArgument otherwise.
Result<uint16_t> ParsePciId(std::string_view text);

// "0\n", "-1\n" -> node. kInvalidArgument for anything else (including < -1).
Result<int> ParseNumaNode(std::string_view text);

// "231:192\n" -> {231, 192} (infiniband_verbs/uverbsN/dev). kInvalidArgument otherwise.
Result<CharDeviceNumber> ParseDevNumber(std::string_view text);

// "uverbs12" -> 12; -1 if the name is not uverbs<digits>.
int ParseUverbsIndex(std::string_view name);

// "4: ACTIVE\n" -> "ACTIVE"; "5: LinkUp" -> "LinkUp"; text without "N: " is returned trimmed.
std::string ParsePortStateText(std::string_view text);

// "100 Gb/sec (4X EDR)\n" -> 100; "2.5 Gb/sec (1X SDR)" -> 2; 0 if no leading number.
int ParseRateGbps(std::string_view text);

// EFA generation from the PCI device id: 0xefaN -> N+1 (efa-hardware.md §A1); 0 if not 0xefaN.
int EfaGeneration(uint16_t device_id);

// contracts.md §6.1 steps 1 and 3-5 on an already-read link: `bdf` and the text of
// readlink("<sysfs>/bus/pci/devices/<bdf>") -> "pci0000:10". kInvalidArgument naming the rule
// that failed (bad BDF, target not under devices/pci, last component != BDF).
Result<std::string> PcieRootFromLink(std::string_view bdf, std::string_view link_text);

}  // namespace efadra::discovery

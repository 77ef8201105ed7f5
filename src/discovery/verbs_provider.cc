#include "efadra/discovery/verbs_provider.h"

#include <infiniband/efadv.h>
#include <infiniband/verbs.h>

#include <cstring>
#include <map>
#include <string>
#include <utility>

namespace efadra::discovery {
namespace {

// Userspace efadv capability bits (efa-hardware.md §A10); not the kernel ABI numbering.
constexpr uint32_t kCapRdmaRead = 1u << 0;
constexpr uint32_t kCapRdmaWrite = 1u << 3;

// Capabilities are a property of the hardware, so each (name, PCI address) is opened once and
// remembered: rescans on a 32-EFA node then cost no device opens. A device that could not be
// opened is retried on the next Query (it may have been mid-probe).
class IbverbsProvider final : public VerbsProvider {
 public:
  std::optional<VerbsCapabilities> Query(const EfaDevice& device) override {
    const auto key = std::make_pair(device.rdma_device, device.pci_address);
    if (auto it = cache_.find(key); it != cache_.end()) return it->second;
    int count = 0;
    ibv_device** list = ibv_get_device_list(&count);
    if (list == nullptr) return std::nullopt;  // no RDMA subsystem, or no permission
    std::optional<VerbsCapabilities> result;
    for (int i = 0; i < count; ++i) {
      const char* name = ibv_get_device_name(list[i]);
      if (name != nullptr && device.rdma_device == name) {
        result = QueryOne(list[i]);
        break;
      }
    }
    ibv_free_device_list(list);
    // Keyed by sysfs names, which a hot-plug storm can vary without end: bounded.
    constexpr size_t kMaxCached = 256;
    if (result && cache_.size() >= kMaxCached) cache_.clear();
    if (result) cache_[key] = *result;
    return result;
  }

 private:
  static std::optional<VerbsCapabilities> QueryOne(ibv_device* ibv_dev) {
    ibv_context* context = ibv_open_device(ibv_dev);
    if (context == nullptr) return std::nullopt;
    std::optional<VerbsCapabilities> caps;
    efadv_device_attr attr;
    std::memset(&attr, 0, sizeof(attr));
    // efadv_query_device fails (EOPNOTSUPP) on non-EFA contexts; that is "no enrichment".
    if (efadv_query_device(context, &attr, sizeof(attr)) == 0) {
      VerbsCapabilities out;
      out.rdma_read = (attr.device_caps & kCapRdmaRead) != 0;
      out.rdma_write = (attr.device_caps & kCapRdmaWrite) != 0;
      out.max_rdma_size = attr.max_rdma_size;
      out.max_sq_wr = attr.max_sq_wr;
      out.max_rq_wr = attr.max_rq_wr;
      out.max_sq_sge = attr.max_sq_sge;
      out.max_rq_sge = attr.max_rq_sge;
      out.inline_buf_size = attr.inline_buf_size;
      caps = out;
    }
    ibv_close_device(context);
    return caps;
  }

  std::map<std::pair<std::string, std::string>, VerbsCapabilities> cache_;
};

}  // namespace

std::unique_ptr<VerbsProvider> NewIbverbsProvider() { return std::make_unique<IbverbsProvider>(); }

}  // namespace efadra::discovery

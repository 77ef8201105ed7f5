// make_node_tree: writes the sysfs and /dev trees of a bundled instance type (or of an
// efa-topo/v1 YAML file) where a real-cluster node's driver reads them, with real character
// devices for uverbsN and rdma_cm (mknod, as root), so that containerd creates the same nodes
// in containers from the CDI specs. It also makes <dev-root>/gdrdrv, GDRCopy's node (a
// dynamic major, minor 0, as its loader makes it): injected only when the driver runs with
// --inject-gdrdrv, so it changes nothing for the other scenarios.
//
//   make_node_tree <instance-type | topology.yaml> <sysfs-root> <dev-root>
//
// Exit 0 and one line naming what was written; 1 with the error otherwise.
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "efadra/sysfstree/bundled.h"
#include "efadra/sysfstree/topology.h"
#include "efadra/sysfstree/tree_builder.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: make_node_tree <instance-type | topology.yaml> <sysfs-root> <dev-root>\n";
    return 2;
  }
  const std::string source = argv[1];
  std::string yaml;
  if (auto bundled = efadra::sysfstree::BundledTopology(source)) {
    yaml = std::string(*bundled);
  } else {
    std::ifstream in(source);
    if (!in) {
      std::cerr << "make_node_tree: " << source << " is neither a bundled instance type nor a "
                << "readable topology file\n";
      return 1;
    }
    std::ostringstream text;
    text << in.rdbuf();
    yaml = text.str();
  }
  auto topology = efadra::sysfstree::ParseTopology(yaml);
  if (!topology.ok()) {
    std::cerr << "make_node_tree: " << source << ": " << topology.status().message() << "\n";
    return 1;
  }
  efadra::sysfstree::TreeOptions options;
  options.char_devices = true;
  const efadra::Status built =
      efadra::sysfstree::BuildSysfsTree(*topology, argv[2], argv[3], options);
  if (!built.ok()) {
    std::cerr << "make_node_tree: " << built.message() << "\n";
    return 1;
  }
  // From the extended dynamic range (384-511), where no fixed driver sits.
  constexpr unsigned kGdrdrvMajor = 509;
  const std::string gdrdrv = std::string(argv[3]) + "/gdrdrv";
  std::remove(gdrdrv.c_str());
  if (::mknod(gdrdrv.c_str(), S_IFCHR | 0666, makedev(kGdrdrvMajor, 0)) != 0) {
    // Without CAP_MKNOD the tree has none, like a node without GDRCopy.
    if (errno != EPERM) {
      std::cerr << "make_node_tree: mknod " << gdrdrv << ": " << std::strerror(errno) << "\n";
      return 1;
    }
  } else {
    ::chmod(gdrdrv.c_str(), 0666);  // mknod honours the umask
  }
  std::cout << "make_node_tree: " << topology->instance_type << ": "
            << topology->OfKind(efadra::sysfstree::DeviceKind::kEfa).size() << " EFAs, sysfs "
            << argv[2] << ", dev " << argv[3] << "\n";
  return 0;
}

// Command accel-driver stands in for the GPU and Neuron DRA drivers in the real-cluster tier
// (test/e2e/cluster). The EFA examples pair EFAs with GPUs by resource.kubernetes.io/pcieRoot
// and with Neuron devices by resource.aws.com/devicegroup{4,8,16}_id; both sides must be
// published by some driver for the scheduler to allocate such a claim. This one publishes:
//
//   - gpu.nvidia.com: one device per NVIDIA PCI function (vendor 0x10de, display class) of
//     the generated sysfs tree, named gpu-<i> in PCI address order, with the pcieRoot and
//     pciBusID attributes NVIDIA's driver publishes;
//   - neuron.aws.com: one device per Neuron id of a CDM table (data/neuron/<family>.json),
//     named neuron-<id>, with devicegroup{1,4,8,16}_id computed as CDM does, independently of
//     the EFA driver's C++ implementation, so the pairing test is also a cross-check;
//   - dra.net: the EFAs of the tree, named and attributed as DRANET names them, registered as
//     dra.net-reg.sock: a second dra.net driver on the node, as when DRANET and this driver
//     meet during a migration (the guard scenario).
//
// It registers with the real kubelet through k8s.io/dynamic-resource-allocation/kubeletplugin
// and prepares each claim with a CDI spec whose only edit is one environment variable per
// device (E2E_<DRIVER>_<DEVICE>=<pcieRoot or group>), so a container can show what it got.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/dynamic-resource-allocation/resourceslice"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

type options struct {
	driver      string
	nodeName    string
	kubeconfig  string
	sysfsRoot   string
	neuronTable string
	kubeletDir  string
	cdiDir      string
}

func main() {
	var o options
	flag.StringVar(&o.driver, "driver", "gpu.nvidia.com", "gpu.nvidia.com or neuron.aws.com")
	flag.StringVar(&o.nodeName, "node-name", "", "node to publish for")
	flag.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the driver")
	flag.StringVar(&o.sysfsRoot, "sysfs-root", "", "generated sysfs tree (gpu.nvidia.com)")
	flag.StringVar(&o.neuronTable, "neuron-table", "", "CDM table data/neuron/<family>.json (neuron.aws.com)")
	flag.StringVar(&o.kubeletDir, "kubelet-dir", "/var/lib/kubelet", "kubelet root directory")
	flag.StringVar(&o.cdiDir, "cdi-dir", "/var/run/cdi", "CDI spec directory of the runtime")
	klog.InitFlags(nil)
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "accel-driver: %v\n", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.nodeName == "" {
		return errors.New("--node-name is required")
	}
	var devices []resourceapi.Device
	var err error
	switch o.driver {
	case "gpu.nvidia.com":
		devices, err = gpuDevices(o.sysfsRoot)
	case "neuron.aws.com":
		devices, err = neuronDevices(o.neuronTable)
	case "dra.net":
		devices, err = efaDevices(o.sysfsRoot)
	default:
		err = fmt.Errorf("--driver %q: want gpu.nvidia.com, neuron.aws.com or dra.net", o.driver)
	}
	if err != nil {
		return err
	}
	config, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", o.kubeconfig, err)
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	d := &driver{name: o.driver, cdiDir: o.cdiDir, devices: map[string]resourceapi.Device{}}
	for _, device := range devices {
		d.devices[device.Name] = device
	}
	pluginDir := filepath.Join(o.kubeletDir, "plugins", o.driver)
	if err := os.MkdirAll(pluginDir, 0o750); err != nil {
		return err
	}
	helper, err := kubeletplugin.Start(ctx, d,
		kubeletplugin.KubeClient(client),
		kubeletplugin.NodeName(o.nodeName),
		kubeletplugin.DriverName(o.driver),
		kubeletplugin.RegistrarDirectoryPath(filepath.Join(o.kubeletDir, "plugins_registry")),
		kubeletplugin.PluginDataDirectoryPath(pluginDir),
	)
	if err != nil {
		return fmt.Errorf("start kubelet plugin: %w", err)
	}
	defer helper.Stop()
	if err := helper.PublishResources(ctx, resourceslice.DriverResources{
		Pools: map[string]resourceslice.Pool{
			o.nodeName: {Slices: []resourceslice.Slice{{Devices: devices}}},
		},
	}); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	fmt.Printf("accel-driver: %s serving %d devices on node %s\n", o.driver, len(devices), o.nodeName)
	<-ctx.Done()
	return nil
}

// gpuDevices lists the NVIDIA display-class functions under <root>/bus/pci/devices.
func gpuDevices(root string) ([]resourceapi.Device, error) {
	if root == "" {
		return nil, errors.New("--sysfs-root is required for gpu.nvidia.com")
	}
	dir := filepath.Join(root, "bus", "pci", "devices")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var addresses []string
	for _, entry := range entries {
		vendor, _ := os.ReadFile(filepath.Join(dir, entry.Name(), "vendor"))
		class, _ := os.ReadFile(filepath.Join(dir, entry.Name(), "class"))
		if strings.TrimSpace(string(vendor)) == "0x10de" && strings.HasPrefix(string(class), "0x03") {
			addresses = append(addresses, entry.Name())
		}
	}
	sort.Strings(addresses)
	var devices []resourceapi.Device
	for i, address := range addresses {
		// The device link resolves to .../devices/pci<domain>:<bus>/...; its first component
		// below devices/ is the PCIe root, the value every DRA driver publishes as pcieRoot.
		real, err := filepath.EvalSymlinks(filepath.Join(dir, address))
		if err != nil {
			return nil, err
		}
		rel, err := filepath.Rel(filepath.Join(root, "devices"), real)
		if err != nil || !strings.HasPrefix(rel, "pci") {
			return nil, fmt.Errorf("GPU %s: %s is not below %s/devices/pci*", address, real, root)
		}
		pcieRoot := strings.Split(rel, string(filepath.Separator))[0]
		devices = append(devices, resourceapi.Device{
			Name: fmt.Sprintf("gpu-%d", i),
			Attributes: map[resourceapi.QualifiedName]resourceapi.DeviceAttribute{
				"index":                           {IntValue: ptr.To(int64(i))},
				"resource.kubernetes.io/pcieRoot": {StringValue: ptr.To(pcieRoot)},
				"resource.kubernetes.io/pciBusID": {StringValue: ptr.To(address)},
			},
		})
	}
	if len(devices) == 0 {
		return nil, fmt.Errorf("no NVIDIA GPU functions under %s", dir)
	}
	return devices, nil
}

// efaDevices lists the EFA functions (vendor 0x1d0f, device 0xefa*) as DRANET publishes them.
func efaDevices(root string) ([]resourceapi.Device, error) {
	if root == "" {
		return nil, errors.New("--sysfs-root is required for dra.net")
	}
	dir := filepath.Join(root, "bus", "pci", "devices")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var devices []resourceapi.Device
	for _, entry := range entries {
		vendor, _ := os.ReadFile(filepath.Join(dir, entry.Name(), "vendor"))
		device, _ := os.ReadFile(filepath.Join(dir, entry.Name(), "device"))
		if strings.TrimSpace(string(vendor)) != "0x1d0f" || !strings.HasPrefix(string(device), "0xefa") {
			continue
		}
		address := entry.Name()
		devices = append(devices, resourceapi.Device{
			Name: "pci-" + strings.NewReplacer(":", "-", ".", "-").Replace(address),
			Attributes: map[resourceapi.QualifiedName]resourceapi.DeviceAttribute{
				"dra.net/pciAddress": {StringValue: ptr.To(address)},
				"dra.net/pciDevice":  {StringValue: ptr.To("Elastic Fabric Adapter (EFA)")},
				"dra.net/rdma":       {BoolValue: ptr.To(true)},
			},
		})
	}
	if len(devices) == 0 {
		return nil, fmt.Errorf("no EFA functions under %s", dir)
	}
	return devices, nil
}

// neuronDevices follows CDM's lookup: devicegroup1_id is the Neuron device's EFA, and
// devicegroupN_id (N = 4, 8, 16) is the first 16 hex digits of SHA-256 over the sorted,
// de-duplicated, comma-joined EFA addresses of ids floor(id/N)*N ... +N-1.
func neuronDevices(tablePath string) ([]resourceapi.Device, error) {
	if tablePath == "" {
		return nil, errors.New("--neuron-table is required for neuron.aws.com")
	}
	raw, err := os.ReadFile(tablePath)
	if err != nil {
		return nil, err
	}
	var table struct {
		EfaByNeuronID map[string]string `json:"efa_by_neuron_id"`
	}
	if err := json.Unmarshal(raw, &table); err != nil {
		return nil, fmt.Errorf("%s: %w", tablePath, err)
	}
	efa := map[int]string{}
	for key, address := range table.EfaByNeuronID {
		id, err := strconv.Atoi(key)
		if err != nil {
			return nil, fmt.Errorf("%s: neuron id %q: %w", tablePath, key, err)
		}
		efa[id] = address
	}
	group := func(id, size int) string {
		seen := map[string]bool{}
		var members []string
		for i := id / size * size; i < id/size*size+size; i++ {
			if address, ok := efa[i]; ok && !seen[address] {
				seen[address] = true
				members = append(members, address)
			}
		}
		sort.Strings(members)
		sum := sha256.Sum256([]byte(strings.Join(members, ",")))
		return hex.EncodeToString(sum[:])[:16]
	}
	ids := make([]int, 0, len(efa))
	for id := range efa {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	var devices []resourceapi.Device
	for _, id := range ids {
		attributes := map[resourceapi.QualifiedName]resourceapi.DeviceAttribute{
			"index":                            {IntValue: ptr.To(int64(id))},
			"resource.aws.com/devicegroup1_id": {StringValue: ptr.To(efa[id])},
		}
		for _, size := range []int{4, 8, 16} {
			key := resourceapi.QualifiedName(fmt.Sprintf("resource.aws.com/devicegroup%d_id", size))
			attributes[key] = resourceapi.DeviceAttribute{StringValue: ptr.To(group(id, size))}
		}
		devices = append(devices, resourceapi.Device{Name: fmt.Sprintf("neuron-%d", id), Attributes: attributes})
	}
	return devices, nil
}

type driver struct {
	name    string
	cdiDir  string
	devices map[string]resourceapi.Device

	mu sync.Mutex // serialises spec writes and removals
}

// envName turns "gpu.nvidia.com", "gpu-3" into E2E_GPU_NVIDIA_COM_GPU_3.
func envName(driver, device string) string {
	upper := strings.ToUpper(driver + "_" + device)
	return "E2E_" + strings.Map(func(r rune) rune {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			return r
		}
		return '_'
	}, upper)
}

func (d *driver) specPath(uid types.UID) string {
	return filepath.Join(d.cdiDir, fmt.Sprintf("%s-%s.json", strings.ReplaceAll(d.name, ".", "_"), uid))
}

func (d *driver) PrepareResourceClaims(_ context.Context, claims []*resourceapi.ResourceClaim) (map[types.UID]kubeletplugin.PrepareResult, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	results := map[types.UID]kubeletplugin.PrepareResult{}
	for _, claim := range claims {
		results[claim.UID] = d.prepare(claim)
	}
	return results, nil
}

func (d *driver) prepare(claim *resourceapi.ResourceClaim) kubeletplugin.PrepareResult {
	type cdiDevice struct {
		Name           string `json:"name"`
		ContainerEdits struct {
			Env []string `json:"env"`
		} `json:"containerEdits"`
	}
	spec := struct {
		CdiVersion string      `json:"cdiVersion"`
		Kind       string      `json:"kind"`
		Devices    []cdiDevice `json:"devices"`
	}{CdiVersion: "0.5.0", Kind: d.name + "/accel"}
	var result kubeletplugin.PrepareResult
	for _, allocated := range claim.Status.Allocation.Devices.Results {
		if allocated.Driver != d.name {
			continue
		}
		device, ok := d.devices[allocated.Device]
		if !ok {
			return kubeletplugin.PrepareResult{Err: fmt.Errorf("claim %s/%s: unknown device %s", claim.Namespace, claim.Name, allocated.Device)}
		}
		value := "allocated"
		for _, key := range []resourceapi.QualifiedName{"resource.kubernetes.io/pcieRoot", "resource.aws.com/devicegroup4_id"} {
			if attribute, ok := device.Attributes[key]; ok && attribute.StringValue != nil {
				value = *attribute.StringValue
			}
		}
		name := string(claim.UID) + "-" + device.Name
		entry := cdiDevice{Name: name}
		entry.ContainerEdits.Env = []string{envName(d.name, device.Name) + "=" + value}
		spec.Devices = append(spec.Devices, entry)
		result.Devices = append(result.Devices, kubeletplugin.Device{
			Requests:     []string{allocated.Request},
			PoolName:     allocated.Pool,
			DeviceName:   allocated.Device,
			CDIDeviceIDs: []string{spec.Kind + "=" + name},
		})
	}
	data, err := json.Marshal(spec)
	if err == nil {
		err = writeAtomically(d.specPath(claim.UID), data)
	}
	if err != nil {
		return kubeletplugin.PrepareResult{Err: fmt.Errorf("claim %s/%s: CDI spec: %w", claim.Namespace, claim.Name, err)}
	}
	return result
}

func writeAtomically(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (d *driver) UnprepareResourceClaims(_ context.Context, claims []kubeletplugin.NamespacedObject) (map[types.UID]error, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	results := map[types.UID]error{}
	for _, claim := range claims {
		err := os.Remove(d.specPath(claim.UID))
		if errors.Is(err, os.ErrNotExist) {
			err = nil
		}
		results[claim.UID] = err
	}
	return results, nil
}

func (d *driver) HandleError(_ context.Context, err error, msg string) {
	fmt.Fprintf(os.Stderr, "accel-driver: %s: %v\n", msg, err)
}

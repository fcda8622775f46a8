package roles

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/kilnlab/kiln/profiles"
)

// A storage node's Ceph configuration, public half: /etc/ceph/ceph.conf and
// the "ceph" part of machine.json (the monitors, and this node's planned
// OSD devices by stable identity). The keys are the secret half
// (RenderSecrets). The rules (replication, memory) are package profiles',
// which validation warns with.
//
// The fsid is not in the rendered ceph.conf: it is made with the cluster's
// keys in the lab's secrets directory and reaches the node only with them
// (CephSecretsDir/fsid), so first boot adds the line (installer/firstboot,
// phase ceph, task conf). It is not secret, but the public configs (the
// state image, which the gate serves to anyone) are rendered from the
// profile alone, with no secrets directory at hand; and a node whose
// keyrings come from another cluster than its ceph.conf cannot happen.

// CephConfPath is Ceph's configuration file (cluster "ceph").
const CephConfPath = "/etc/ceph/ceph.conf"

// Ceph's monitor ports: messenger v2 (IANA) and the legacy v1.
const (
	MonPortV2 = 3300
	MonPortV1 = 6789
)

// DataPartitionNumber is the GPT number of the data partition on a system
// disk: after ESP, root and state (plan.SystemLayout; a plan test checks
// that they agree).
const DataPartitionNumber = 4

// CephNode is a storage node's part of the Ceph cluster, for its first
// boot: machine.json's "ceph".
type CephNode struct {
	// Mons are the cluster's monitors: every storage node, in profile
	// order.
	Mons []CephMon `json:"mons"`
	// OSDs are this node's planned OSD devices, in disk order; first
	// boot makes an OSD on each of them and touches nothing else.
	OSDs []OSDDevice `json:"osds"`
}

// CephMon is one monitor.
type CephMon struct {
	Name    string `json:"name"`    // the storage node's name, the monitor's id
	Address string `json:"address"` // its LAN address (Ceph's public network)
}

// Addrs is the monitor's address vector, v2 first, as mon_host and
// monmaptool --addv write it: [v2:IP:3300,v1:IP:6789].
func (m CephMon) Addrs() string {
	return fmt.Sprintf("[v2:%s:%d,v1:%s:%d]", m.Address, MonPortV2, m.Address, MonPortV1)
}

// OSDDevice is one planned OSD device: a data disk, whole, or the data
// partition of the system disk. Either way the disk is named by what the
// installer found it by (serial or WWN); first boot refuses a device that
// does not match all of it.
type OSDDevice struct {
	Disk   string `json:"disk"` // the profile's name of the disk
	Serial string `json:"serial,omitempty"`
	WWN    string `json:"wwn,omitempty"` // lowercase, as the profile normalises it
	// DiskSize is the disk's planned capacity: the disk found must be
	// at least this large (the installer's rule).
	DiskSize uint64 `json:"disk_size"`
	// Partition is the data partition of a system disk; nil when the
	// OSD takes the whole disk.
	Partition *OSDPartition `json:"partition,omitempty"`
}

// OSDPartition is the planned data partition, as plan.SystemLayout lays it
// out (bytes).
type OSDPartition struct {
	Number int    `json:"number"`
	Name   string `json:"name"` // GPT partition name, e.g. kiln-osd
	UUID   string `json:"uuid"` // PARTUUID: /dev/disk/by-partuuid/<uuid>
	Start  uint64 `json:"start"`
	Size   uint64 `json:"size"`
}

// cephNode is machine m's CephNode; m must be a storage machine of the
// validated profile p.
func cephNode(p *profiles.Profile, m *profiles.Machine, role Role) *CephNode {
	n := &CephNode{Mons: cephMons(p), OSDs: []OSDDevice{}}
	for _, o := range profiles.StorageOSDs(m) {
		d := OSDDevice{Disk: o.Disk.Name, Serial: o.Disk.Serial, WWN: strings.ToLower(o.Disk.WWN), DiskSize: uint64(o.Disk.Size)}
		if o.Part != nil {
			d.Partition = &OSDPartition{
				Number: DataPartitionNumber,
				Name:   "kiln-" + role.DataPartition,
				UUID:   profiles.GUID(p.Name, m.Name, o.Disk.Name, role.DataPartition),
				Start:  o.Part.Start, Size: o.Part.Size,
			}
		}
		n.OSDs = append(n.OSDs, d)
	}
	return n
}

func cephMons(p *profiles.Profile) []CephMon {
	var out []CephMon
	for _, m := range p.Machines {
		if m.Role == profiles.RoleStorage {
			out = append(out, CephMon{Name: m.Name, Address: m.Address})
		}
	}
	return out
}

// cephConf is machine m's /etc/ceph/ceph.conf, less its fsid (see above).
// Everything a daemon or the ceph CLI needs before the monitors answer is
// here; nothing needs the monitors' configuration database.
func cephConf(p *profiles.Profile, m *profiles.Machine, node *CephNode) (string, error) {
	lan, err := netip.ParsePrefix(p.Network.CIDR)
	if err != nil {
		return "", fmt.Errorf("network.cidr: %w", err)
	}
	var names, addrs []string
	for _, mon := range node.Mons {
		names = append(names, mon.Name)
		addrs = append(addrs, mon.Addrs())
	}
	r := profiles.CephReplication(len(node.Mons))
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by kiln: Ceph on %s of lab %s.\n", m.Name, p.Name)
	fmt.Fprintf(&b, "# kiln-firstboot adds the fsid from %s/fsid, with the cluster's keys.\n", CephSecretsDir)
	b.WriteString("[global]\n")
	fmt.Fprintf(&b, "mon_initial_members = %s\n", strings.Join(names, ", "))
	fmt.Fprintf(&b, "mon_host = %s\n", strings.Join(addrs, ","))
	fmt.Fprintf(&b, "public_network = %s\n", lan.Masked())
	if c := p.Network.Cluster; c != nil {
		cluster, err := netip.ParsePrefix(c.CIDR)
		if err != nil {
			return "", fmt.Errorf("network.cluster.cidr: %w", err)
		}
		b.WriteString("# OSD replication and heartbeats, on the non-routed cluster network.\n")
		fmt.Fprintf(&b, "cluster_network = %s\n", cluster.Masked())
	}
	b.WriteString("auth_cluster_required = cephx\nauth_service_required = cephx\nauth_client_required = cephx\n")
	switch len(node.Mons) {
	case 1:
		b.WriteString("# One storage node: one copy of each object, OSDs as the failure domain.\n")
	case 2:
		b.WriteString("# Two storage nodes: two copies on two hosts, writes go on with one.\n")
	default:
		fmt.Fprintf(&b, "# %d storage nodes: three copies on three hosts, writes go on with two.\n", len(node.Mons))
	}
	fmt.Fprintf(&b, "osd_pool_default_size = %d\n", r.Size)
	fmt.Fprintf(&b, "osd_pool_default_min_size = %d\n", r.MinSize)
	fmt.Fprintf(&b, "osd_crush_chooseleaf_type = %d\n", r.ChooseleafType)
	if r.Size == 1 {
		// Pacific refuses pools of size 1 without it, and warns of
		// every pool without redundancy, which is the point here.
		b.WriteString("mon_allow_pool_size_one = true\nmon_warn_on_pool_no_redundancy = false\n")
	}
	b.WriteString("\n[osd]\n")
	osds := len(node.OSDs)
	switch {
	case osds == 0:
		b.WriteString("# No OSD on this machine.\n")
	case m.Memory == 0:
		fmt.Fprintf(&b, "# osd_memory_target: Ceph's default (%s); the profile gives no memory for %s.\n",
			profiles.Size(profiles.DefaultOSDMemoryTarget), m.Name)
	default:
		t, fits := profiles.OSDMemoryTarget(m.Memory, osds)
		note := ""
		switch {
		case !fits:
			note = fmt.Sprintf(", raised to Ceph's minimum (%s)", profiles.Size(profiles.MinOSDMemoryTarget))
		case t == profiles.DefaultOSDMemoryTarget:
			note = fmt.Sprintf(", at most Ceph's default (%s)", profiles.Size(profiles.DefaultOSDMemoryTarget))
		}
		fmt.Fprintf(&b, "# %s of memory, %d OSDs: (%s - %s) x 3/4 / %d%s = %s each.\n",
			m.Memory, osds, m.Memory, profiles.Size(profiles.StorageReserve), osds, note, t)
		fmt.Fprintf(&b, "osd_memory_target = %d\n", uint64(t))
	}
	return b.String(), nil
}

// Package plan owns what kiln will do to each machine, computed once from a
// validated profile: which physical disks are used (by serial/WWN), what is
// wiped and what is kept, the GPT layout with profile-derived GUIDs, the role
// image, the boot chain and the first-boot phases. Everything downstream
// (image builders, the gate, the installer) consumes a Plan; the installer
// receives its machine's part as JSON from the gate.
package plan

import "github.com/kilnlab/kiln/roles"

// Plan is the whole lab's plan.
type Plan struct {
	Lab      string    `json:"lab"`
	Network  Network   `json:"network"`
	Gate     Gate      `json:"gate"`
	Machines []Machine `json:"machines"`
	// Services are the lab's services beyond Ceph (services.go); nil for
	// none.
	Services *Services `json:"services,omitempty"`
}

// Network is what a machine needs to configure its static address.
type Network struct {
	CIDR     string   `json:"cidr"`
	Gateway  string   `json:"gateway"`
	DNS      []string `json:"dns,omitempty"`
	NTP      []string `json:"ntp,omitempty"`
	DHCPMode string   `json:"dhcp_mode"`
	Range    string   `json:"range,omitempty"`
	// Cluster is the non-routed cluster network's CIDR, if the lab has one.
	Cluster string `json:"cluster,omitempty"`
}

// Gate is the machine that serves the netboot service.
type Gate struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

// Machine is one machine's plan.
type Machine struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	Board    string `json:"board"`
	Arch     string `json:"arch"`
	Firmware string `json:"firmware,omitempty"`
	MAC      string `json:"mac"`
	// Address is the static address with its prefix, e.g. 192.168.1.11/24.
	Address  string   `json:"address"`
	Gateway  string   `json:"gateway"`
	DNS      []string `json:"dns,omitempty"`
	Hostname string   `json:"hostname"`
	// ClusterAddress is the address on the cluster network, with its
	// prefix; empty when the machine is not on it.
	ClusterAddress string `json:"cluster_address,omitempty"`
	// Links are the machine's interfaces as its networkd files configure
	// them, when the profile lists any; without, the NIC of MAC alone
	// carries the LAN.
	Links []roles.Link `json:"links,omitempty"`

	Disks []Disk `json:"disks"`
	// RoleImage is the bundle path of the role's root filesystem image,
	// e.g. "roles/storage.squashfs" (empty for the gate).
	RoleImage string `json:"role_image,omitempty"`
	// Netboot and DiskBoot describe the boot chains, for people.
	Netboot  string `json:"netboot,omitempty"`
	DiskBoot string `json:"disk_boot,omitempty"`
	// Cmdline is the kernel command line of the installed system's boot
	// entry (boot mode of the kiln initramfs), naming root and state by
	// PARTUUID so that /dev order never matters.
	Cmdline   string   `json:"cmdline,omitempty"`
	FirstBoot []string `json:"first_boot,omitempty"`
	// Services are what the machine runs (ServiceCeph, ...), in start
	// order; the rehearsal expects a health row for each.
	Services []string `json:"services,omitempty"`
}

// Disk actions.
const (
	// ActionPartition: write the GPT layout and its images.
	ActionPartition = "partition"
	// ActionClear: erase partition tables and signatures so the role can
	// take the whole disk (e.g. a Ceph OSD) at first boot.
	ActionClear = "clear"
	// ActionFlash: the gate's card, written by the user from kiln's gate
	// image; the installer never touches it.
	ActionFlash = "flash"
	// ActionKeep: a reinstall leaves the disk as it is (a data disk holds
	// the lab's data, e.g. an OSD, which outlives the machine's OS).
	ActionKeep = "keep"
)

// Disk is one physical disk and what happens to it.
type Disk struct {
	Name   string `json:"name"`
	Serial string `json:"serial,omitempty"`
	WWN    string `json:"wwn,omitempty"`
	Size   uint64 `json:"size"`
	Use    string `json:"use"`
	// Wipe: the profile allows overwriting existing partitions or
	// filesystems on this disk. Without it the installer refuses a disk
	// that is not blank.
	Wipe   bool   `json:"wipe"`
	Action string `json:"action"` // at the first install
	// Reinstall is the action when the gate reinstalls a machine it
	// installed before (kiln gate reinstall): a system disk is
	// partitioned again, its ContentEmpty partitions kept as they are; a
	// data disk is kept. Empty for the gate's card.
	Reinstall string  `json:"reinstall,omitempty"`
	Layout    *Layout `json:"layout,omitempty"`
}

// Layout is a GPT partition table as data. Offsets and sizes are bytes,
// aligned to 1 MiB; the same Layout is written to image files and to real
// disks by the same code.
type Layout struct {
	DiskGUID   string      `json:"disk_guid"`
	SectorSize uint64      `json:"sector_size"`
	Partitions []Partition `json:"partitions"`
}

// Partition contents.
const (
	ContentESP   = "esp"   // FAT32 boot partition image, per machine
	ContentRoot  = "root"  // the role image (read-only squashfs)
	ContentState = "state" // ext4: /etc overlay, /var, the machine's identity
	// ContentEmpty is left for the role (e.g. a Ceph OSD): the first
	// install clears its signatures, a reinstall keeps it byte for byte.
	ContentEmpty = "empty"
)

// Partition is one GPT entry.
type Partition struct {
	Number  int    `json:"number"`
	Name    string `json:"name"`      // GPT partition name, e.g. "kiln-root"
	Type    string `json:"type_guid"` // GPT partition type GUID
	GUID    string `json:"guid"`      // unique partition GUID, profile-derived
	Start   uint64 `json:"start"`     // bytes from the start of the disk
	Size    uint64 `json:"size"`      // bytes
	Content string `json:"content"`
	// LegacyBIOSBootable sets GPT attribute bit 2, which gptmbr.bin looks
	// for to find the partition to boot under BIOS.
	LegacyBIOSBootable bool `json:"legacy_bios_bootable,omitempty"`
}

// Package roles owns what each role of a lab machine is: the Debian packages
// of its root filesystem, the name of its data partition, its first-boot
// phases, and the per-machine configuration it renders as an Ignition v3.5
// config (the machine's identity: host name, static network, machine.json).
// Apply writes the files/links/units subset of such a config into a
// directory tree, because Ignition's own apply engine is internal to it.
package roles

import (
	"errors"
	"fmt"
	"slices"

	"github.com/kilnlab/kiln/profiles"
)

// Role is what one role runs.
type Role struct {
	Name string
	// Packages are the Debian packages of the role's root filesystem
	// (mmdebstrap --include); empty for the gate, which runs from its
	// u-root initramfs and has no Debian root.
	Packages []string
	// DataPartition names what the system disk holds after system_size;
	// the GPT partition is "kiln-" + DataPartition. Empty: none.
	DataPartition string
	// FirstBoot names the phases of the role OS's first boot, in order.
	FirstBoot []string
}

// ErrUnknownRole is returned by Lookup for a role not in the catalogue.
var ErrUnknownRole = errors.New("unknown role")

// base is the smallest root that boots to multi-user with a static network:
// systemd as init (systemd-sysv), udev for devices, systemd-networkd (part
// of the systemd package in bookworm) configured by Render, dbus for
// networkctl and hostnamed, netbase for /etc/services and /etc/protocols,
// kmod for modules, e2fsprogs for the ext4 state partition (resize2fs),
// systemd-timesyncd to keep the clock on the gate's (Ceph monitors and TLS
// refuse peers whose clocks disagree; the lab may have no internet).
func base() []string {
	return []string{"systemd", "systemd-sysv", "udev", "dbus", "iproute2", "netbase", "kmod", "e2fsprogs", "systemd-timesyncd"}
}

// catalogue builds the roles afresh on every call, so no caller can change
// another's view of them. Storage adds Debian's Ceph to the minimal
// package set; compute keeps it until k3s comes.
//
// The first-boot phases are what kiln-firstboot runs today (its test checks
// they agree): "storage" grows the state file system, "network" waits for
// the static address, "announce" prints KILN-BOOTED and tells the gate;
// storage nodes add "time" and "ceph" (storageFirstBoot). Consul, Vault and
// k3s phases come with those services.
func catalogue() []Role {
	return []Role{
		{
			Name: profiles.RoleStorage, Packages: storage(), DataPartition: "osd",
			FirstBoot: storageFirstBoot(),
		},
		{
			Name: profiles.RoleCompute, Packages: base(), DataPartition: "data",
			FirstBoot: firstBoot(),
		},
		{Name: profiles.RoleGate},
	}
}

// storage adds Debian's Ceph 16.2.15: a monitor, a manager and OSDs on
// every storage node (seed 004); ceph-osd brings ceph-volume, lvm2 and
// ceph-common (the ceph CLI and monmaptool).
func storage() []string {
	return append(base(), "ceph-mon", "ceph-mgr", "ceph-osd")
}

func firstBoot() []string { return []string{"storage", "network", "announce"} }

// storageFirstBoot adds, before the announcement, "time": wait (bounded)
// until the clock agrees with the gate's, since Ceph monitors refuse peers
// whose clocks disagree; and "ceph": bootstrap the node's monitor, manager
// and OSDs (installer/firstboot/ceph.go).
func storageFirstBoot() []string {
	return []string{"storage", "network", "time", "ceph", "announce"}
}

// FirstBootPhases are machine m's first-boot phases: its role's, with,
// before the announcement, "consul" and "vault" on a storage machine of a
// lab that runs them, and "k3s" on a compute machine of a lab that runs
// k3s (what kiln-firstboot runs; its test checks they agree).
func FirstBootPhases(p *profiles.Profile, m *profiles.Machine) ([]string, error) {
	role, err := Lookup(m.Role)
	if err != nil {
		return nil, err
	}
	var extra []string
	switch {
	case m.Role == profiles.RoleStorage && p.Services != nil:
		if p.Services.Consul != nil {
			extra = append(extra, "consul")
		}
		if runsVault(p) {
			extra = append(extra, "vault")
		}
	case K3sIdentity(p, m) != nil:
		extra = append(extra, "k3s")
	}
	phases := slices.Clone(role.FirstBoot)
	if len(extra) == 0 || len(phases) == 0 {
		return phases, nil
	}
	last := len(phases) - 1 // "announce"
	return slices.Concat(phases[:last], extra, phases[last:]), nil
}

// All returns every role, in catalogue order.
func All() []Role { return catalogue() }

// Lookup returns the role called name.
func Lookup(name string) (Role, error) {
	for _, r := range catalogue() {
		if r.Name == name {
			return r, nil
		}
	}
	return Role{}, fmt.Errorf("%w %q", ErrUnknownRole, name)
}

// HasRootfs reports whether the role runs from a Debian role image
// (roles/<name>.squashfs) that the installer writes to the root partition.
func (r Role) HasRootfs() bool { return len(r.Packages) > 0 }

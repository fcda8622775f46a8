package lab

import (
	"github.com/google/uuid"

	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/roles"
)

// StorageMemoryMiB is a rehearsed storage node's memory: a monitor, a
// manager and two OSDs at Ceph's smallest osd_memory_target (896 MiB).
const StorageMemoryMiB = 4096

// ConfigFor is the VM that rehearses machine m of lab: same name, arch,
// firmware, MAC, further NICs (one per planned NIC but the netboot one,
// in profile order, all on the lab's bridge), disk serials, WWNs and disk
// sizes (as blank sparse files),
// and an SMBIOS UUID derived from the lab and machine names (UUIDv5 of
// "kiln:<lab>:<machine>:smbios") so that each rehearsal shows the same
// identity. Memory and CPUs are the defaults, except for a storage node,
// which gets StorageMemoryMiB and two CPUs: Ceph's monitor, manager and
// OSDs do not fit in the default. Only amd64 machines run (NewVM refuses
// the others with ErrUnsupported).
func ConfigFor(lab string, m plan.Machine) VMConfig {
	cfg := VMConfig{
		Name:     m.Name,
		Arch:     m.Arch,
		Firmware: m.Firmware,
		MAC:      m.MAC,
		UUID:     uuid.NewSHA1(uuid.NameSpaceURL, []byte("kiln:"+lab+":"+m.Name+":smbios")).String(),
	}
	for _, l := range m.Links {
		if l.Kind == roles.LinkNIC && !l.Netboot {
			cfg.ExtraMACs = append(cfg.ExtraMACs, l.MAC)
		}
	}
	if m.Role == profiles.RoleStorage {
		cfg.MemoryMiB, cfg.CPUs = StorageMemoryMiB, 2
	}
	for _, d := range m.Disks {
		cfg.Disks = append(cfg.Disks, Disk{Name: d.Name, Size: d.Size, Serial: d.Serial, WWN: d.WWN})
		if d.Use == profiles.UseSystem {
			cfg.BootDisk = d.Name
		}
	}
	return cfg
}

package lab

import (
	"github.com/google/uuid"

	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/profiles"
)

// ConfigFor is the VM that rehearses machine m of lab: same name, arch,
// firmware, MAC, disk serials, WWNs and disk sizes (as blank sparse files),
// and an SMBIOS UUID derived from the lab and machine names (UUIDv5 of
// "kiln:<lab>:<machine>:smbios") so that each rehearsal shows the same
// identity. Memory and CPUs are left to the defaults; only amd64 machines
// run (NewVM refuses the others with ErrUnsupported).
func ConfigFor(lab string, m plan.Machine) VMConfig {
	cfg := VMConfig{
		Name:     m.Name,
		Arch:     m.Arch,
		Firmware: m.Firmware,
		MAC:      m.MAC,
		UUID:     uuid.NewSHA1(uuid.NameSpaceURL, []byte("kiln:"+lab+":"+m.Name+":smbios")).String(),
	}
	for _, d := range m.Disks {
		cfg.Disks = append(cfg.Disks, Disk{Name: d.Name, Size: d.Size, Serial: d.Serial, WWN: d.WWN})
		if d.Use == profiles.UseSystem {
			cfg.BootDisk = d.Name
		}
	}
	return cfg
}

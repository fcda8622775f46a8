package plan

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vincent-petithory/dataurl"

	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/roles"
)

// TestOSDDevicesMatchPlan: the OSD devices a storage node's machine.json
// names (package roles, which cannot import plan) are exactly the plan's:
// the system disk's data partition by number, name, PARTUUID and extent,
// and every disk the plan clears for the role, by serial and WWN.
func TestOSDDevicesMatchPlan(t *testing.T) {
	for _, file := range []string{"../profiles/homelab.yaml", "../profiles/testdata/good-bonded.yaml", "../profiles/testdata/warn-one-node.yaml"} {
		p, err := profiles.Load(file)
		if err != nil {
			t.Fatal(err)
		}
		pl, err := Compute(p)
		if err != nil {
			t.Fatal(err)
		}
		for i := range p.Machines {
			m := &p.Machines[i]
			if m.Role != profiles.RoleStorage {
				continue
			}
			pm, _ := pl.Machine(m.Name)
			var want []roles.OSDDevice
			for _, d := range pm.Disks {
				dev := roles.OSDDevice{Disk: d.Name, Serial: d.Serial, WWN: d.WWN, DiskSize: d.Size}
				switch {
				case d.Action == ActionClear:
				case d.Layout != nil:
					part, ok := d.Layout.Partition(ContentEmpty)
					if !ok {
						continue
					}
					dev.Partition = &roles.OSDPartition{Number: part.Number, Name: part.Name, UUID: part.GUID, Start: part.Start, Size: part.Size}
				default:
					continue
				}
				want = append(want, dev)
			}
			if diff := cmp.Diff(want, identityOSDs(t, p, m)); diff != "" {
				t.Errorf("%s %s: machine.json OSDs (-plan +roles):\n%s", file, m.Name, diff)
			}
		}
	}
}

func identityOSDs(t *testing.T, p *profiles.Profile, m *profiles.Machine) []roles.OSDDevice {
	t.Helper()
	cfg, err := roles.Render(p, m)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range cfg.Storage.Files {
		if f.Path != roles.IdentityPath {
			continue
		}
		u, err := dataurl.DecodeString(*f.Contents.Source)
		if err != nil {
			t.Fatal(err)
		}
		var id roles.Identity
		if err := json.Unmarshal(u.Data, &id); err != nil {
			t.Fatal(err)
		}
		if id.Ceph == nil {
			t.Fatalf("%s: no ceph in machine.json", m.Name)
		}
		return id.Ceph.OSDs
	}
	t.Fatalf("%s: no machine.json", m.Name)
	return nil
}

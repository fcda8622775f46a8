package plan

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/profiles"
)

const mib = profiles.MiB

func TestGUID(t *testing.T) {
	// Pinned: images built earlier must keep matching this plan.
	if got, want := GUID("homelab", "ceph-1", "system", "root"), "cca686a4-ffb9-50e4-9d62-91da967d0354"; got != want {
		t.Errorf("GUID = %s, want %s", got, want)
	}
	seen := map[string]bool{}
	for _, g := range []string{
		GUID("homelab", "ceph-1", "system", ""), GUID("homelab", "ceph-1", "system", "root"),
		GUID("homelab", "ceph-1", "system", "state"), GUID("homelab", "ceph-2", "system", "root"),
		GUID("lab2", "ceph-1", "system", "root"),
	} {
		if seen[g] {
			t.Errorf("GUID %s repeats", g)
		}
		seen[g] = true
	}
}

func TestSystemLayout(t *testing.T) {
	for _, tc := range []struct {
		name         string
		disk, system profiles.Size
		data         string
		want         []string // name start size, in MiB
	}{
		{"whole disk", 500e9, 0, "data", []string{"kiln-esp 1 128", "kiln-root 129 2048", "kiln-state 2177 474659"}},
		{"slice and osd", 1e12, 50 * profiles.GiB, "osd", []string{"kiln-esp 1 128", "kiln-root 129 2048", "kiln-state 2177 49023", "kiln-osd 51200 902473"}},
		{"slice, role without data", 1e12, 50 * profiles.GiB, "", []string{"kiln-esp 1 128", "kiln-root 129 2048", "kiln-state 2177 49023"}},
		{"slice is the disk", 10 * profiles.GiB, 10 * profiles.GiB, "osd", []string{"kiln-esp 1 128", "kiln-root 129 2048", "kiln-state 2177 8062"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := SystemLayout("lab", "m", profiles.Disk{Name: "system", Size: tc.disk, SystemSize: tc.system}, tc.data)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range l.Partitions {
				got = append(got, fmt.Sprintf("%s %d %d", p.Name, p.Start/mib, p.Size/mib))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if !l.Partitions[0].LegacyBIOSBootable || l.Partitions[0].Type != TypeESP {
				t.Errorf("ESP %+v: want legacy BIOS bootable, type ESP", l.Partitions[0])
			}
		})
	}
	_, err := SystemLayout("lab", "m", profiles.Disk{Name: "system", Size: 3 * profiles.GiB}, "")
	if !errors.Is(err, profiles.ErrNoFit) {
		t.Errorf("3GiB disk: err = %v, want ErrNoFit", err)
	}
}

// checkLayout asserts what every layout must be: partitions in order, not
// overlapping, 1 MiB aligned, 1 MiB clear of both ends of the disk, the
// system ones inside the system slice, with the fixed sizes.
func checkLayout(t *testing.T, l *Layout, disk, system uint64) {
	t.Helper()
	next := uint64(mib) // the first free byte
	for i, p := range l.Partitions {
		switch {
		case p.Number != i+1:
			t.Fatalf("partition %d numbered %d", i+1, p.Number)
		case p.Start%mib != 0 || p.Size%mib != 0 || p.Size == 0:
			t.Fatalf("%s start %d size %d: not 1 MiB aligned or empty", p.Name, p.Start, p.Size)
		case p.Start < next:
			t.Fatalf("%s starts at %d, overlapping what ends at %d", p.Name, p.Start, next)
		case p.Start+p.Size > disk-mib:
			t.Fatalf("%s ends at %d, past the disk's last MiB (%d)", p.Name, p.Start+p.Size, disk)
		case p.Content == ContentState && system != 0 && p.Start+p.Size > system:
			t.Fatalf("state ends at %d, past system_size %d", p.Start+p.Size, system)
		}
		next = p.Start + p.Size
	}
	esp, root, state := l.Partitions[0], l.Partitions[1], l.Partitions[2]
	if esp.Size != profiles.ESPSize || root.Size != profiles.RootSize || state.Size < profiles.MinStateSize {
		t.Fatalf("sizes esp %d root %d state %d", esp.Size, root.Size, state.Size)
	}
}

func FuzzSystemLayout(f *testing.F) {
	f.Add(uint64(1e12), uint64(50<<30))
	f.Add(uint64(500e9), uint64(0))
	f.Add(uint64(profiles.MinSystemSize), uint64(0))
	f.Add(uint64(profiles.MinSystemSize), uint64(profiles.MinSystemSize))
	f.Add(uint64(10<<30+12345), uint64(10<<30+1))
	f.Fuzz(func(t *testing.T, disk, system uint64) {
		d := profiles.Disk{Name: "system", Size: profiles.Size(disk), SystemSize: profiles.Size(system)}
		l, err := SystemLayout("lab", "m", d, "osd")
		if err != nil {
			slice := system
			if slice == 0 {
				slice = disk
			}
			if !errors.Is(err, profiles.ErrNoFit) || (system <= disk && slice >= profiles.MinSystemSize) {
				t.Fatalf("SystemLayout(%d, %d) = %v", disk, system, err)
			}
			return
		}
		checkLayout(t, l, disk, system)
	})
}

// TestLayoutSfdisk hands the homelab layouts to sfdisk, an independent GPT
// implementation, on sparse disk files of the profile's sizes, and checks
// that it writes them unchanged and sgdisk finds the tables sound.
func TestLayoutSfdisk(t *testing.T) {
	for _, tool := range []string{"sfdisk", "sgdisk"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s missing under CI: %v", tool, err)
			}
			t.Skipf("%s missing: %v", tool, err)
		}
	}
	for _, m := range homelab(t).Machines {
		for _, d := range m.Disks {
			if d.Layout != nil {
				t.Run(m.Name+"/"+d.Name, func(t *testing.T) { sfdiskRoundTrip(t, d) })
			}
		}
	}
}

func sfdiskRoundTrip(t *testing.T, d Disk) {
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, int64(d.Size)); err != nil {
		t.Skipf("cannot make a sparse %d-byte file here: %v", d.Size, err)
	}
	run(t, strings.NewReader(sfdiskScript(d.Layout)), "sfdisk", "--no-reread", "--no-tell-kernel", "-q", img)
	out := run(t, nil, "sfdisk", "--json", img)
	var got struct {
		PartitionTable struct {
			ID         string
			Partitions []struct {
				Start, Size uint64
				Type, UUID  string
				Name, Attrs string
			}
		}
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("sfdisk --json: %v", err)
	}
	if !strings.EqualFold(got.PartitionTable.ID, d.Layout.DiskGUID) {
		t.Errorf("disk GUID %s, want %s", got.PartitionTable.ID, d.Layout.DiskGUID)
	}
	for i, p := range d.Layout.Partitions {
		g := got.PartitionTable.Partitions[i]
		if g.Start*SectorSize != p.Start || g.Size*SectorSize != p.Size || !strings.EqualFold(g.UUID, p.GUID) || g.Name != p.Name {
			t.Errorf("partition %d: sfdisk has %+v, plan %+v", p.Number, g, p)
		}
		if bootable := strings.Contains(g.Attrs, "LegacyBIOSBootable"); bootable != p.LegacyBIOSBootable {
			t.Errorf("partition %d: sfdisk attrs %q, plan legacy BIOS bootable %v", p.Number, g.Attrs, p.LegacyBIOSBootable)
		}
	}
	if out := run(t, nil, "sgdisk", "-v", img); !strings.Contains(string(out), "No problems found") {
		t.Errorf("sgdisk -v:\n%s", out)
	}
}

// sfdiskScript spells a Layout in sfdisk's input format.
func sfdiskScript(l *Layout) string {
	var b strings.Builder
	fmt.Fprintf(&b, "label: gpt\nlabel-id: %s\nunit: sectors\nsector-size: %d\n", l.DiskGUID, l.SectorSize)
	for _, p := range l.Partitions {
		attrs := ""
		if p.LegacyBIOSBootable {
			attrs = ", attrs=LegacyBIOSBootable"
		}
		fmt.Fprintf(&b, "start=%d, size=%d, type=%s, uuid=%s, name=%s%s\n",
			p.Start/l.SectorSize, p.Size/l.SectorSize, p.Type, p.GUID, p.Name, attrs)
	}
	return b.String()
}

func run(t *testing.T, stdin *strings.Reader, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("%s %v: %v\n%s%s", name, args, err, out, ee.Stderr)
		}
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return out
}

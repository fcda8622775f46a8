package install

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/ignition/v2/config/v3_5/types"

	"github.com/kilnlab/kiln/image/disklayout"
	"github.com/kilnlab/kiln/installer/disks"
	"github.com/kilnlab/kiln/installer/disks/diskstest"
	"github.com/kilnlab/kiln/installer/efiboot/efiboottest"
	"github.com/kilnlab/kiln/installer/gateclient"
	"github.com/kilnlab/kiln/installer/gateclient/gatetest"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/roles"
)

const mib = 1 << 20

const (
	espType   = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	linuxType = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
)

func layout() *plan.Layout {
	return &plan.Layout{
		DiskGUID:   "5e0c1c52-1d1b-5f5a-9d55-000000000000",
		SectorSize: 512,
		Partitions: []plan.Partition{
			{Number: 1, Name: "kiln-esp", Type: espType, GUID: "5e0c1c52-1d1b-5f5a-9d55-000000000001", Start: 1 * mib, Size: 8 * mib, Content: plan.ContentESP, LegacyBIOSBootable: true},
			{Number: 2, Name: "kiln-root", Type: linuxType, GUID: "5e0c1c52-1d1b-5f5a-9d55-000000000002", Start: 9 * mib, Size: 16 * mib, Content: plan.ContentRoot},
			{Number: 3, Name: "kiln-state", Type: linuxType, GUID: "5e0c1c52-1d1b-5f5a-9d55-000000000003", Start: 25 * mib, Size: 30 * mib, Content: plan.ContentState},
			{Number: 4, Name: "kiln-osd", Type: linuxType, GUID: "5e0c1c52-1d1b-5f5a-9d55-000000000004", Start: 55 * mib, Size: 8 * mib, Content: plan.ContentEmpty},
		},
	}
}

func machine() plan.Machine {
	return plan.Machine{
		Name: "ceph-1", MAC: "52:54:00:00:00:11", Hostname: "ceph-1", RoleImage: "roles/storage.squashfs",
		Disks: []plan.Disk{
			{Name: "os", Serial: "WD-A", Size: 64 * mib, Use: "system", Action: plan.ActionPartition, Reinstall: plan.ActionPartition, Layout: layout()},
			{Name: "osd", Serial: "WD-B", Size: 8 * mib, Use: "data", Action: plan.ActionClear, Reinstall: plan.ActionKeep},
		},
	}
}

// images are the bundle files; root is bigger than one progress step so
// that progress is reported mid-stream.
func images() map[string]string {
	root := bytes.Repeat([]byte("squashfs"), mib) // 8 MiB
	return map[string]string{
		"machines/ceph-1/esp.img":   "ESP" + strings.Repeat("e", 4096),
		"roles/storage.squashfs":    "hsqs" + string(root),
		"machines/ceph-1/state.img": "STATE" + strings.Repeat("s", 70000),
		"bios/gptmbr.bin":           strings.Repeat("\xeb", 440),
	}
}

var named = map[string]string{
	"esp": "machines/ceph-1/esp.img", "root": "roles/storage.squashfs",
	"state": "machines/ceph-1/state.img", "gptmbr": "bios/gptmbr.bin",
}

type fixture struct {
	gate    *gatetest.Gate
	sys     disks.System
	in      *Installer
	console *bytes.Buffer
	// applied records what the installer's SecretsApplier was given.
	applied []appliedSecrets
}

type appliedSecrets struct {
	part plan.Partition
	cfg  types.Config
}

// secretConfig is a machine's secret config as the gate holds it.
const secretConfig = `{"ignition":{"version":"3.5.0"},"storage":{"directories":[{"path":"/etc/kiln/secrets","mode":448}],"files":[{"path":"/etc/kiln/secrets/machine.key","contents":{"source":"data:,KEY"},"mode":384}]}}`

func newFixture(t *testing.T, m plan.Machine, ds ...diskstest.Disk) *fixture {
	t.Helper()
	if ds == nil {
		ds = []diskstest.Disk{
			{Name: "vda", Size: 64 * mib, Attrs: diskstest.Serial("WD-A"), Writes: map[int64][]byte{510: {0x55, 0xaa}}},
			{Name: "vdb", Size: 8 * mib, Attrs: diskstest.Serial("WD-B"), Writes: map[int64][]byte{0: []byte("hsqs")}},
		}
	}
	fx := &fixture{gate: gatetest.New(t, m, "tok", images(), named), sys: diskstest.New(t, ds...), console: &bytes.Buffer{}}
	fx.gate.Secrets = []byte(secretConfig)
	fx.in = &Installer{
		Log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Console: fx.console,
		Gate:    fx.gate.Client(),
		Disks:   fx.sys,
		Name:    m.MAC,
		Step:    mib,
		Secrets: func(_ context.Context, p plan.Partition, cfg types.Config) error {
			fx.applied = append(fx.applied, appliedSecrets{p, cfg})
			return nil
		},
	}
	return fx
}

func wipeAll(m plan.Machine) plan.Machine {
	for i := range m.Disks {
		m.Disks[i].Wipe = true
	}
	return m
}

func TestInstall(t *testing.T) {
	fx := newFixture(t, wipeAll(machine()))
	if err := fx.in.Run(context.Background()); err != nil {
		t.Fatalf("Run(): %v\nconsole:\n%s", err, fx.console)
	}
	out := fx.console.String()
	if !strings.HasPrefix(out, "KILN-INSTALL-START ceph-1\n") || !strings.HasSuffix(out, "KILN-INSTALL-OK ceph-1\n") {
		t.Errorf("console:\n%s", out)
	}
	if r := fx.gate.Results(); len(r) != 1 || !r[0].OK {
		t.Errorf("results = %+v", r)
	}
	phases := map[string]bool{}
	midStream := false
	for _, p := range fx.gate.Progress() {
		phases[p.Phase] = true
		if p.Phase == "write-root" && p.Done > 0 && p.Done < p.Total {
			midStream = true
		}
	}
	if len(fx.applied) != 1 || fx.applied[0].part.Content != plan.ContentState || len(fx.applied[0].cfg.Storage.Files) != 1 {
		t.Errorf("secrets applied = %+v, want the secret config once, to the state partition", fx.applied)
	}
	for _, ph := range []string{"check", "partition", "write-esp", "write-root", "write-state", "verify", "secrets", "clear", "done"} {
		if !phases[ph] {
			t.Errorf("no progress for phase %s: %v", ph, phases)
		}
	}
	if !midStream {
		t.Error("no progress in the middle of the root image")
	}

	sys := filepath.Join(fx.sys.DevRoot, "vda")
	f, err := os.Open(sys)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img := images()
	for _, p := range layout().Partitions {
		want, ok := map[string]string{"esp": img[named["esp"]], "root": img[named["root"]], "state": img[named["state"]]}[p.Content]
		if !ok {
			continue
		}
		got := make([]byte, len(want))
		if _, err := f.ReadAt(got, int64(p.Start)); err != nil {
			t.Fatal(err)
		}
		if sha256.Sum256(got) != sha256.Sum256([]byte(want)) {
			t.Errorf("partition %s does not hold its image", p.Name)
		}
	}
	boot := make([]byte, 440)
	if _, err := f.ReadAt(boot, 0); err != nil || string(boot) != img["bios/gptmbr.bin"] {
		t.Errorf("boot code not in the first 440 bytes")
	}
	got, err := disklayout.ReadLayout(f, 64*mib, 512)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Partitions) != 4 || !strings.EqualFold(got.Partitions[2].GUID, layout().Partitions[2].GUID) {
		t.Errorf("ReadLayout() = %+v", got)
	}
	sgdiskVerify(t, sys)

	data, err := os.ReadFile(filepath.Join(fx.sys.DevRoot, "vdb"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data[:4], make([]byte, 4)) {
		t.Error("data disk still has its squashfs signature")
	}
}

// TestInstallPlacesBootEntry: on a UEFI machine the written ESP gets a
// boot entry first in the boot order, the netboot entry the install came
// from right after it.
func TestInstallPlacesBootEntry(t *testing.T) {
	fx := newFixture(t, wipeAll(machine()))
	vars := efiboottest.OVMF()
	fx.in.EFIVars = vars
	if err := fx.in.Run(context.Background()); err != nil {
		t.Fatalf("Run(): %v\nconsole:\n%s", err, fx.console)
	}
	if got, want := vars.Order(), []uint16{6, 2, 0, 1, 3, 4, 5}; !slices.Equal(got, want) {
		t.Errorf("BootOrder %v, want %v", got, want)
	}
	_, opt, err := vars.Get(efiboottest.Desc("Boot0006"))
	if err != nil {
		t.Fatal(err)
	}
	// The ESP's unique GUID in EFI byte order, and the description.
	if !bytes.Contains(opt, []byte{0x52, 0x1c, 0x0c, 0x5e, 0x1b, 0x1d, 0x5a, 0x5f}) || !bytes.Contains(opt, []byte("k\x00i\x00l\x00n\x00 \x00c\x00e\x00p\x00h\x00-\x001\x00")) {
		t.Errorf("Boot0006 = %x", opt)
	}
	if !strings.Contains(fx.console.String(), `kiln: firmware boot order 0006,0002,0000,0001,0003,0004,0005 (was 0000,0001,0002,0003,0004,0005): Boot0006 "kiln ceph-1", then the netboot`) {
		t.Errorf("console:\n%s", fx.console)
	}

	// A firmware without BootCurrent: installed all the same, with a
	// warning that says what it costs.
	fx = newFixture(t, wipeAll(machine()))
	vars = efiboottest.OVMF()
	delete(vars, efiboottest.Desc("BootCurrent"))
	fx.in.EFIVars = vars
	if err := fx.in.Run(context.Background()); err != nil {
		t.Fatalf("Run(): %v\nconsole:\n%s", err, fx.console)
	}
	if out := fx.console.String(); !strings.Contains(out, "warning: the firmware's boot order is unchanged") || !strings.HasSuffix(out, "KILN-INSTALL-OK ceph-1\n") {
		t.Errorf("console:\n%s", out)
	}
}

// TestReinstallKeepsData: the first install blanks the OSD partition and
// the data disk; a reinstall rewrites the system partitions and leaves the
// OSD partition and the data disk byte for byte as they were, wipe or not.
func TestReinstallKeepsData(t *testing.T) {
	for _, wipe := range []bool{true, false} {
		m := machine()
		m.Disks[0].Wipe = true // the system disk is rewritten either way
		m.Disks[1].Wipe = wipe
		osd := layout().Partitions[3]
		fx := newFixture(t, m,
			diskstest.Disk{Name: "vda", Size: 64 * mib, Attrs: diskstest.Serial("WD-A"),
				Writes: map[int64][]byte{510: {0x55, 0xaa}, int64(osd.Start) + 536: []byte("LVM2 001")}},
			diskstest.Disk{Name: "vdb", Size: 8 * mib, Attrs: diskstest.Serial("WD-B")},
		)
		if err := fx.in.Run(context.Background()); err != nil {
			t.Fatalf("first install (data disk wipe %v): %v\nconsole:\n%s", wipe, err, fx.console)
		}
		sys, data := filepath.Join(fx.sys.DevRoot, "vda"), filepath.Join(fx.sys.DevRoot, "vdb")
		if b := readAt(t, sys, int64(osd.Start), mib); !bytes.Equal(b, make([]byte, mib)) {
			t.Errorf("the first install left the OSD partition's old signature")
		}
		// The machine's life: OSDs on the partition and the data disk,
		// and its root image changed by someone.
		fill := func(path string, off, n int64, c byte) {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(bytes.Repeat([]byte{c}, int(n)), off); err != nil {
				t.Fatal(err)
			}
		}
		fill(sys, int64(osd.Start), int64(osd.Size), 0xd5)
		fill(data, 0, 8*mib, 0xd6)
		fill(data, 536, 8, 'L') // not blank: needs wipe unless kept
		root := layout().Partitions[1]
		fill(sys, int64(root.Start), mib, 0x00)
		osdBefore, dataBefore := hashRange(t, sys, int64(osd.Start), int64(osd.Size)), hashRange(t, data, 0, 8*mib)

		fx.gate.Rearm(true)
		fx.console.Reset()
		if err := fx.in.Run(context.Background()); err != nil {
			t.Fatalf("reinstall (data disk wipe %v): %v\nconsole:\n%s", wipe, err, fx.console)
		}
		if hashRange(t, sys, int64(osd.Start), int64(osd.Size)) != osdBefore {
			t.Errorf("wipe %v: the reinstall changed the OSD partition", wipe)
		}
		if hashRange(t, data, 0, 8*mib) != dataBefore {
			t.Errorf("wipe %v: the reinstall changed the data disk", wipe)
		}
		if b := readAt(t, sys, int64(root.Start), 4); string(b) != "hsqs" {
			t.Errorf("wipe %v: the reinstall did not write the root image again: %q", wipe, b)
		}
		out := fx.console.String()
		for _, want := range []string{"kiln: keeping partition kiln-osd", "kiln: keeping osd (", "KILN-INSTALL-OK ceph-1"} {
			if !strings.Contains(out, want) {
				t.Errorf("wipe %v: console lacks %q:\n%s", wipe, want, out)
			}
		}
		sgdiskVerify(t, sys)
	}
}

func readAt(t *testing.T, path string, off, n int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

func hashRange(t *testing.T, path string, off, n int64) [32]byte {
	t.Helper()
	return sha256.Sum256(readAt(t, path, off, n))
}

// sgdiskVerify checks the written table with an independent Debian tool.
func sgdiskVerify(t *testing.T, path string) {
	t.Helper()
	if _, err := exec.LookPath("sgdisk"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("sgdisk missing under CI")
		}
		t.Skip("sgdisk missing")
	}
	out, err := exec.Command("sgdisk", "-v", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "No problems found") {
		t.Errorf("sgdisk -v: %v\n%s", err, out)
	}
}

func hashFiles(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][32]byte{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = sha256.Sum256(b)
	}
	return out
}

func TestRefusals(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(m *plan.Machine)
		token  string
		disks  []diskstest.Disk
		gate   func(*gatetest.Gate)
		want   error
	}{
		{name: "not blank without wipe", mutate: func(m *plan.Machine) {}, want: disks.ErrDiskNotBlank},
		{name: "missing disk", mutate: func(m *plan.Machine) { m.Disks[1].Serial = "WD-Z" }, want: disks.ErrDiskMissing},
		{name: "ambiguous disk", mutate: func(m *plan.Machine) {}, disks: []diskstest.Disk{
			{Name: "vda", Size: 64 * mib, Attrs: diskstest.Serial("WD-A")},
			{Name: "vdb", Size: 8 * mib, Attrs: diskstest.Serial("WD-B")},
			{Name: "vdc", Size: 8 * mib, Attrs: diskstest.Serial("WD-B")},
		}, want: disks.ErrAmbiguousDisk},
		{name: "too small", mutate: func(m *plan.Machine) { m.Disks[1].Size = 16 * mib }, want: disks.ErrDiskTooSmall},
		{name: "layout invalid", mutate: func(m *plan.Machine) {
			m.Disks[0].Layout.Partitions[1].Start = 2 * mib // overlaps the ESP
		}, want: disklayout.ErrInvalidLayout},
		{name: "image bigger than its partition", mutate: func(m *plan.Machine) {
			m.Disks[0].Layout.Partitions[0].Size = 4096
		}},
		{name: "wrong token", mutate: func(m *plan.Machine) {}, token: "stolen", want: gateclient.ErrForbidden},
		{name: "secrets taken by another host", mutate: func(m *plan.Machine) {}, gate: func(g *gatetest.Gate) { g.TakeSecrets() }, want: gateclient.ErrForbidden},
		{name: "secrets outside /etc", mutate: func(m *plan.Machine) {}, gate: func(g *gatetest.Gate) {
			g.Secrets = []byte(`{"ignition":{"version":"3.5.0"},"storage":{"files":[{"path":"/root/.ssh/id","contents":{"source":"data:,K"}}]}}`)
		}},
		{name: "secrets not an ignition config", mutate: func(m *plan.Machine) {}, gate: func(g *gatetest.Gate) { g.Secrets = []byte(`{"storage":1}`) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := machine()
			if tc.name != "not blank without wipe" {
				m = wipeAll(m)
			}
			tc.mutate(&m)
			fx := newFixture(t, m, tc.disks...)
			if tc.gate != nil {
				tc.gate(fx.gate)
			}
			if tc.token != "" {
				fx.in.Gate.Token = tc.token
			}
			before := hashFiles(t, fx.sys.DevRoot)
			err := fx.in.Run(context.Background())
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("Run() = %v, want ErrRefused", err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Run() = %v, want %v", err, tc.want)
			}
			name := "ceph-1"
			if tc.token != "" {
				name = m.MAC
			}
			if !strings.Contains(fx.console.String(), "KILN-INSTALL-REFUSED "+name+": ") {
				t.Errorf("console:\n%s", fx.console)
			}
			if after := hashFiles(t, fx.sys.DevRoot); after["vda"] != before["vda"] || after["vdb"] != before["vdb"] {
				t.Error("a refused install wrote to a disk")
			}
			if len(fx.applied) != 0 {
				t.Error("a refused install applied secrets")
			}
			if tc.token == "" {
				if r := fx.gate.Results(); len(r) != 1 || r[0].OK || r[0].Error == "" {
					t.Errorf("results = %+v", r)
				}
			}
		})
	}
}

func TestFailedChecksum(t *testing.T) {
	fx := newFixture(t, wipeAll(machine()))
	fx.gate.Corrupt = "roles/storage.squashfs"
	err := fx.in.Run(context.Background())
	if err == nil || errors.Is(err, ErrRefused) || !errors.Is(err, disklayout.ErrChecksum) {
		t.Fatalf("Run() = %v, want a checksum failure", err)
	}
	if !strings.Contains(fx.console.String(), "KILN-INSTALL-FAILED ceph-1: ") {
		t.Errorf("console:\n%s", fx.console)
	}
	if r := fx.gate.Results(); len(r) != 1 || r[0].OK {
		t.Errorf("results = %+v", r)
	}
}

// TestInterruptedUnbootable: an install that stops midway (here the
// root image fails its checksum; a power cut stops it the same way, see
// disklayout's TestWriteBootImageCut) over an earlier install leaves no
// boot loader on the disk: the old ESP's head was cleared before the new
// root was touched, and the new ESP was not started. The order of the
// whole install shows on its console.
func TestInterruptedUnbootable(t *testing.T) {
	fx := newFixture(t, wipeAll(machine()))
	sys := filepath.Join(fx.sys.DevRoot, "vda")
	esp := layout().Partitions[0]
	old := bytes.Repeat([]byte("old boot loader "), int(esp.Size)/16)
	f, err := os.OpenFile(sys, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(old, int64(esp.Start)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	fx.gate.Corrupt = "roles/storage.squashfs"
	if err := fx.in.Run(context.Background()); !errors.Is(err, disklayout.ErrChecksum) {
		t.Fatalf("Run() = %v, want a checksum failure", err)
	}
	if head := readAt(t, sys, int64(esp.Start), disklayout.ClearSize); !bytes.Equal(head, make([]byte, disklayout.ClearSize)) {
		t.Errorf("the ESP's head after an interrupted install: %q..., want zeroes", head[:32])
	}

	fx = newFixture(t, wipeAll(machine()))
	if err := fx.in.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := fx.console.String()
	order := []string{
		"kiln: os cannot boot until the install is complete: clearing kiln-esp's head",
		"kiln: partitioning os",
		"kiln: write-root kiln-root",
		"kiln: verifying kiln-root",
		"kiln: writing the machine's secrets to kiln-state",
		"kiln: kiln-esp written and read back, its head last: os can boot",
		"KILN-INSTALL-OK ceph-1",
	}
	at := 0
	for _, want := range order {
		i := strings.Index(out[at:], want)
		if i < 0 {
			t.Fatalf("console: no %q after byte %d:\n%s", want, at, out)
		}
		at += i + len(want)
	}
}

func TestStateTree(t *testing.T) {
	var cfg types.Config
	if err := json.Unmarshal([]byte(secretConfig), &cfg); err != nil {
		t.Fatal(err)
	}
	got, err := stateTree(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got.Storage.Directories[0].Path != "/etc/upper/kiln/secrets" || got.Storage.Files[0].Path != "/etc/upper/kiln/secrets/machine.key" {
		t.Errorf("rebased = %+v", got.Storage)
	}
	if cfg.Storage.Files[0].Path != "/etc/kiln/secrets/machine.key" {
		t.Error("stateTree changed its input")
	}
	dir := t.TempDir()
	if err := roles.Apply(got, dir); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{"etc/upper/kiln/secrets": 0o700, "etc/upper/kiln/secrets/machine.key": 0o600} {
		fi, err := os.Stat(filepath.Join(dir, p))
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v, %v; want mode %v", p, fi.Mode().Perm(), err, want)
		}
	}
}

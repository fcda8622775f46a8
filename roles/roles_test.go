package roles

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v35 "github.com/coreos/ignition/v2/config/v3_5"
	"github.com/coreos/ignition/v2/config/v3_5/types"
	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/internal/golden"
	"github.com/kilnlab/kiln/profiles"
)

func TestCatalogue(t *testing.T) {
	for _, tc := range []struct {
		role, data string
		rootfs     bool
	}{
		{profiles.RoleStorage, "osd", true},
		{profiles.RoleCompute, "data", true},
		{profiles.RoleGate, "", false},
	} {
		r, err := Lookup(tc.role)
		if err != nil {
			t.Fatal(err)
		}
		if r.DataPartition != tc.data || r.HasRootfs() != tc.rootfs {
			t.Errorf("%s: data %q rootfs %v, want %q %v", tc.role, r.DataPartition, r.HasRootfs(), tc.data, tc.rootfs)
		}
		for _, p := range []string{"systemd", "systemd-sysv", "udev", "iproute2", "e2fsprogs", "kmod"} {
			if tc.rootfs && !slices.Contains(r.Packages, p) {
				t.Errorf("%s: packages lack %s", tc.role, p)
			}
		}
	}
	if _, err := Lookup("dns"); !errors.Is(err, ErrUnknownRole) {
		t.Errorf("Lookup(dns) = %v, want ErrUnknownRole", err)
	}
	// Every role a profile may name is in the catalogue.
	for _, name := range []string{profiles.RoleStorage, profiles.RoleCompute, profiles.RoleGate} {
		if !slices.ContainsFunc(All(), func(r Role) bool { return r.Name == name }) {
			t.Errorf("All() lacks %s", name)
		}
	}
}

// TestRender pins each homelab machine's config and checks it with
// Ignition's own v3.5 parser.
func TestRender(t *testing.T) {
	p, err := profiles.Default()
	if err != nil {
		t.Fatal(err)
	}
	for i := range p.Machines {
		m := &p.Machines[i]
		t.Run(m.Name, func(t *testing.T) {
			cfg, err := Render(p, m)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := json.MarshalIndent(cfg, "", "  ")
			if _, rpt, err := v35.Parse(raw); err != nil || len(rpt.Entries) > 0 {
				t.Fatalf("v3_5.Parse: %v\n%s", err, rpt)
			}
			golden.Check(t, filepath.Join("testdata", m.Name+".ign"), append(raw, '\n'))
		})
	}
}

// TestApplyRendered writes ceph-1's config into a tree and pins the tree.
func TestApplyRendered(t *testing.T) {
	p, err := profiles.Default()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Render(p, &p.Machines[1])
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := Apply(cfg, dir); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "testdata/ceph-1.tree", []byte(listTree(t, dir)))
}

// bonded loads the profile with bonds, VLANs, MTUs and a cluster network.
func bonded(t *testing.T) *profiles.Profile {
	t.Helper()
	p, err := profiles.Load("../profiles/testdata/good-bonded.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRenderBonded checks every machine of the bonded lab with Ignition's
// parser and pins ceph-1's config (802.3ad, the cluster VLAN, jumbo) and
// compute-1's networkd files (active-backup), as configs and as trees.
func TestRenderBonded(t *testing.T) {
	p := bonded(t)
	for i := range p.Machines {
		m := &p.Machines[i]
		t.Run(m.Name, func(t *testing.T) {
			cfg, err := Render(p, m)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := json.MarshalIndent(cfg, "", "  ")
			if _, rpt, err := v35.Parse(raw); err != nil || len(rpt.Entries) > 0 {
				t.Fatalf("v3_5.Parse: %v\n%s", err, rpt)
			}
			if m.Name != "ceph-1" && m.Name != "compute-1" {
				return
			}
			if m.Name == "ceph-1" {
				golden.Check(t, "testdata/bonded-ceph-1.ign", append(raw, '\n'))
			}
			dir := t.TempDir()
			if err := Apply(cfg, dir); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, "testdata/bonded-"+m.Name+".tree", []byte(listTree(t, dir)))
		})
	}
}

// TestLinks pins how interfaces resolve: names, MACs, members, the LAN's
// link, MTUs inherited by VLANs, the cluster address.
func TestLinks(t *testing.T) {
	p := bonded(t)
	for _, tc := range []struct {
		machine string
		want    []Link
	}{
		{"gate-1", nil},
		{"ceph-1", []Link{
			{Name: "nic0", Kind: LinkNIC, MAC: "52:54:00:00:01:01", Bond: "bond0", Netboot: true},
			{Name: "nic1", Kind: LinkNIC, MAC: "52:54:00:00:11:01", Bond: "bond0"},
			{Name: "bond0", Kind: LinkBond, MAC: "52:54:00:00:01:01", Mode: "802.3ad", Members: []string{"nic0", "nic1"},
				VLANs: []string{"vlan20"}, MTU: 9000, LAN: true},
			{Name: "vlan20", Kind: LinkVLAN, VLAN: 20, Link: "bond0", MTU: 9000, Cluster: "10.20.0.11/24"},
		}},
		{"compute-1", []Link{
			{Name: "onboard", Kind: LinkNIC, MAC: "52:54:00:00:02:01", Bond: "bond0", Primary: true, Netboot: true},
			{Name: "pcie", Kind: LinkNIC, MAC: "52:54:00:aa:12:01", Bond: "bond0"},
			{Name: "bond0", Kind: LinkBond, MAC: "52:54:00:00:02:01", Mode: "active-backup", Members: []string{"onboard", "pcie"}, LAN: true},
		}},
	} {
		t.Run(tc.machine, func(t *testing.T) {
			i := slices.IndexFunc(p.Machines, func(m profiles.Machine) bool { return m.Name == tc.machine })
			if diff := cmp.Diff(tc.want, Links(p, &p.Machines[i])); diff != "" {
				t.Errorf("Links (-want +got):\n%s", diff)
			}
		})
	}
}

// variants has shapes the bonded lab lacks: the LAN on a plain jumbo NIC
// with the cluster VLAN on it (inheriting its MTU), and the cluster network
// on a bond that does not hold the NIC that netboots.
const variants = `
name: variants
network: {cidr: 10.0.0.0/24, gateway: 10.0.0.1, cluster: {cidr: 10.20.0.0/24}}
machines:
  - {name: gate, role: gate, board: rpi4, arch: arm64, mac: "52:54:00:00:00:01", address: 10.0.0.2}
  - name: ceph-1
    role: storage
    board: pc
    arch: amd64
    firmware: bios
    mac: 52:54:00:00:01:01
    address: 10.0.0.11
    interfaces:
      nics: [{name: lan, mac: "52:54:00:00:01:01", mtu: 9000}]
      vlans: [{id: 7, link: lan}]
      cluster: {link: vlan7, address: 10.20.0.11}
    disks: [{name: system, serial: S1, size: 100GB, use: system}]
  - name: ceph-2
    role: storage
    board: pc
    arch: amd64
    firmware: bios
    mac: 52:54:00:00:01:02
    address: 10.0.0.12
    interfaces:
      nics:
        - {name: lan, mac: "52:54:00:00:01:02"}
        - {name: a, mac: "52:54:00:00:21:02"}
        - {name: b, mac: "52:54:00:00:31:02"}
      bonds: [{name: bond1, mode: active-backup, members: [b, a], mtu: 9000}]
      cluster: {link: bond1, address: 10.20.0.12}
    disks: [{name: system, serial: S2, size: 100GB, use: system}]
`

func TestLinksVariants(t *testing.T) {
	p, err := profiles.Parse("variants.yaml", []byte(variants))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]Link{
		"ceph-1": {
			{Name: "lan", Kind: LinkNIC, MAC: "52:54:00:00:01:01", Netboot: true, VLANs: []string{"vlan7"}, MTU: 9000, LAN: true},
			{Name: "vlan7", Kind: LinkVLAN, VLAN: 7, Link: "lan", MTU: 9000, Cluster: "10.20.0.11/24"},
		},
		"ceph-2": {
			{Name: "lan", Kind: LinkNIC, MAC: "52:54:00:00:01:02", Netboot: true, LAN: true},
			{Name: "a", Kind: LinkNIC, MAC: "52:54:00:00:21:02", Bond: "bond1"},
			{Name: "b", Kind: LinkNIC, MAC: "52:54:00:00:31:02", Bond: "bond1", Primary: true},
			{Name: "bond1", Kind: LinkBond, MAC: "52:54:00:00:31:02", Mode: "active-backup", Members: []string{"b", "a"},
				MTU: 9000, Cluster: "10.20.0.12/24"},
		},
	}
	for _, m := range p.Machines[1:] {
		if diff := cmp.Diff(want[m.Name], Links(p, &m)); diff != "" {
			t.Errorf("%s: Links (-want +got):\n%s", m.Name, diff)
		}
	}
}

func TestApplyUnits(t *testing.T) {
	unit := "[Unit]\nDescription=x\n\n[Service]\nExecStart=/bin/true\n\n[Install]\nWantedBy=multi-user.target\nRequiredBy=a.target b.target\nAlias=kiln-x.service\n"
	dropin := "[Service]\nEnvironment=A=1\n"
	yes := true
	cfg := types.Config{Systemd: types.Systemd{Units: []types.Unit{
		{Name: "kiln-firstboot.service", Contents: &unit, Enabled: &yes,
			Dropins: []types.Dropin{{Name: "10-env.conf", Contents: &dropin}}},
		{Name: "apt-daily.timer", Mask: &yes},
	}}}
	dir := t.TempDir()
	if err := Apply(cfg, dir); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "testdata/units.tree", []byte(listTree(t, dir)))
}

func TestApplyRefuses(t *testing.T) {
	src := "data:,x"
	http := "http://example.com/x"
	no, yes := false, true
	bob := "bob"
	f := func(path string) types.File {
		return types.File{Node: types.Node{Path: path}, FileEmbedded1: types.FileEmbedded1{Contents: types.Resource{Source: &src}}}
	}
	for _, tc := range []struct {
		name string
		cfg  types.Config
		want error
	}{
		{"disks", types.Config{Storage: types.Storage{Disks: []types.Disk{{Device: "/dev/sda"}}}}, ErrUnsupported},
		{"users", types.Config{Passwd: types.Passwd{Users: []types.PasswdUser{{Name: "bob"}}}}, ErrUnsupported},
		{"remote source", types.Config{Storage: types.Storage{Files: []types.File{{Node: types.Node{Path: "/x"},
			FileEmbedded1: types.FileEmbedded1{Contents: types.Resource{Source: &http}}}}}}, ErrUnsupported},
		{"owner", types.Config{Storage: types.Storage{Files: []types.File{{Node: types.Node{Path: "/x", User: types.NodeUser{Name: &bob}}}}}}, ErrUnsupported},
		{"hard link", types.Config{Storage: types.Storage{Links: []types.Link{{Node: types.Node{Path: "/l"},
			LinkEmbedded1: types.LinkEmbedded1{Target: &src, Hard: &yes}}}}}, ErrUnsupported},
		{"disable", types.Config{Systemd: types.Systemd{Units: []types.Unit{{Name: "a.service", Enabled: &no}}}}, ErrUnsupported},
		{"enable without contents", types.Config{Systemd: types.Systemd{Units: []types.Unit{{Name: "a.service", Enabled: &yes}}}}, ErrUnsupported},
		{"exists", types.Config{Storage: types.Storage{Files: []types.File{f("/etc/a"), f("/etc/a")}}}, ErrExists},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Apply(tc.cfg, t.TempDir())
			if !errors.Is(err, tc.want) {
				t.Errorf("Apply = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestApplyEscape: a link out of the tree, made by one config, does not let
// a later config write through it.
func TestApplyEscape(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	if err := Apply(types.Config{Storage: types.Storage{Links: []types.Link{link("/etc/out", outside)}}}, dir); err != nil {
		t.Fatal(err)
	}
	src := "data:,x"
	cfg := types.Config{Storage: types.Storage{Files: []types.File{{Node: types.Node{Path: "/etc/out/pwned"},
		FileEmbedded1: types.FileEmbedded1{Contents: types.Resource{Source: &src}}}}}}
	if err := Apply(cfg, dir); err == nil {
		t.Error("Apply wrote through a link that leaves the tree")
	}
	if _, err := os.Stat(filepath.Join(outside, "pwned")); err == nil {
		t.Error("a config escaped its tree")
	}
}

// TestApplyConfined: paths with .. stay inside the tree.
func TestApplyConfined(t *testing.T) {
	src := "data:,inside"
	cfg := types.Config{Storage: types.Storage{Files: []types.File{{Node: types.Node{Path: "/../../etc/x"},
		FileEmbedded1: types.FileEmbedded1{Contents: types.Resource{Source: &src}}}}}}
	dir := t.TempDir()
	if err := Apply(cfg, dir); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "etc/x")); err != nil || string(b) != "inside" {
		t.Errorf("etc/x = %q, %v", b, err)
	}
}

// listTree prints a tree for goldens: path, mode, and contents or target.
func listTree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			fmt.Fprintf(&b, "%s -> %s\n", rel, target)
		case info.IsDir():
			fmt.Fprintf(&b, "%s/ %v\n", rel, info.Mode().Perm())
		default:
			data, _ := os.ReadFile(p)
			fmt.Fprintf(&b, "%s %v\n\t%s\n", rel, info.Mode(), strings.ReplaceAll(strings.TrimSuffix(string(data), "\n"), "\n", "\n\t"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

package firstboot

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/roles"
)

// The testdata/bonding-*.txt samples are written after the 6.1 kernel's
// bond_procfs.c (Debian 12's kernel), line for line, rather than captured
// (the machine the tests run on has no bonding module): kiln's own
// active-backup bond under QEMU, a server's with its primary unplugged
// (and fail_over_mac set), an 802.3ad bond with its LACP details (as root
// reads them), and the bond0 that loading bonding without max_bonds=0
// makes.

func TestParseBonding(t *testing.T) {
	for _, tc := range []struct {
		file string
		want bonding
	}{
		{"bonding-active-backup.txt", bonding{Mode: "active-backup", Up: true, Active: "enp0s2", Slaves: []bondSlave{
			{Name: "enp0s2", Up: true, PermMAC: "52:54:00:00:0d:01"},
			{Name: "enp0s3", Up: true, PermMAC: "52:54:00:00:0d:02"},
		}}},
		{"bonding-active-backup-degraded.txt", bonding{Mode: "active-backup", Up: true, Active: "enp1s0", Slaves: []bondSlave{
			{Name: "eno1", PermMAC: "3c:ec:ef:10:20:31"},
			{Name: "enp1s0", Up: true, PermMAC: "3c:ec:ef:10:20:32"},
		}}},
		{"bonding-8023ad.txt", bonding{Mode: "802.3ad", Up: true, Slaves: []bondSlave{
			{Name: "eno1", Up: true, PermMAC: "52:54:00:00:01:01"},
			{Name: "eno2", Up: true, PermMAC: "52:54:00:00:11:01"},
		}}},
		{"bonding-default-bond0.txt", bonding{Mode: "balance-rr"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := parseBonding(f)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("parseBonding (-want +got):\n%s", d)
			}
		})
	}
}

func TestParseBondingRefuses(t *testing.T) {
	for name, in := range map[string]string{
		"empty":               "",
		"not bonding":         "Inter-|   Receive\n face |bytes\n",
		"unknown mode":        "Bonding Mode: quantum entanglement\n",
		"slave without name":  "Bonding Mode: load balancing (xor)\n\nSlave Interface: \nMII Status: up\n",
		"slave name too long": "Bonding Mode: load balancing (xor)\n\nSlave Interface: abcdefghijklmnop\n",
		"active with a slash": "Bonding Mode: fault-tolerance (active-backup)\nCurrently Active Slave: a/b\n",
	} {
		if b, err := parseBonding(strings.NewReader(in)); err == nil {
			t.Errorf("%s: parseBonding accepted it: %+v", name, b)
		}
	}
}

// FuzzParseBonding: /proc/net/bonding is the kernel's, but its format is
// not an interface the kernel keeps stable, and whatever gets through ends
// up on the console line a test reads.
func FuzzParseBonding(f *testing.F) {
	samples, _ := filepath.Glob("testdata/bonding-*.txt")
	for _, s := range samples {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("Bonding Mode: fault-tolerance (active-backup)\nSlave Interface: a\nCurrently Active Slave: b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := parseBonding(bytes.NewReader(data))
		if err != nil {
			return
		}
		if !strings.Contains(" balance-rr active-backup balance-xor broadcast 802.3ad balance-tlb balance-alb ", " "+b.Mode+" ") {
			t.Fatalf("mode %q", b.Mode)
		}
		for _, name := range append(b.names(), b.Active) {
			if name != "" && !validIfName(name) {
				t.Fatalf("interface name %q", name)
			}
		}
		line := bondLine("bond0", b, b.up(), nil, "", nil)
		if strings.ContainsAny(line, "\r\n") || len(strings.Fields(line)) != 7+boolInt(b.Mode == "active-backup") {
			t.Fatalf("console line %q", line)
		}
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// bondedMachine is node-s of qemu-tests/testdata/lab.yaml: its two NICs in
// an active-backup bond0 that carries the LAN.
func bondedMachine() Machine {
	return Machine{Name: "node-s", MAC: "52:54:00:00:0d:01", Address: "192.168.1.34/24", Links: []roles.Link{
		{Name: "nic0", Kind: roles.LinkNIC, MAC: "52:54:00:00:0d:01", Bond: "bond0", Primary: true, Netboot: true},
		{Name: "nic1", Kind: roles.LinkNIC, MAC: "52:54:00:00:0d:02", Bond: "bond0"},
		{Name: "bond0", Kind: roles.LinkBond, MAC: "52:54:00:00:0d:01", Mode: "active-backup", Members: []string{"nic0", "nic1"}, LAN: true},
	}}
}

// bondEnv is an Env whose /proc/net/bonding/bond0 is sample (none when
// empty) and whose bond0 has addrs.
func bondEnv(t *testing.T, m Machine, sample string, addrs ...string) (*Env, *bytes.Buffer) {
	t.Helper()
	root := t.TempDir()
	if sample != "" {
		b, err := os.ReadFile(filepath.Join("testdata", sample))
		if err != nil {
			t.Fatal(err)
		}
		writeBonding(t, root, b)
	}
	console := &bytes.Buffer{}
	return &Env{Log: quiet(), Console: console, Machine: m, Net: &NetCheck{
		Root: root, Poll: time.Millisecond, Timeout: 50 * time.Millisecond,
		Link: fakeLink(map[string][]string{"bond0": addrs}),
	}}, console
}

func writeBonding(t *testing.T, root string, b []byte) {
	t.Helper()
	dir := filepath.Join(root, "proc/net/bonding")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bond0"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func fakeLink(links map[string][]string) func(string) (LinkState, error) {
	return func(name string) (LinkState, error) {
		addrs, ok := links[name]
		if !ok {
			return LinkState{}, errors.New("no such network interface")
		}
		st := LinkState{MAC: "52:54:00:00:0d:01"}
		for _, a := range addrs {
			st.Addrs = append(st.Addrs, netip.MustParsePrefix(a))
		}
		return st, nil
	}
}

func TestCheckBonds(t *testing.T) {
	const ok = "KILN-NET-BOND bond0 mode=active-backup slaves=enp0s2,enp0s3 up=2 address=192.168.1.34/24 mac=52:54:00:00:0d:01 active=enp0s2\n"
	oneNIC := bondedMachine()
	oneNIC.Links[1].MAC = "52:54:00:00:0d:99"
	cluster := bondedMachine()
	cluster.Links[2].Cluster = "10.20.0.34/24"
	for _, tc := range []struct {
		name    string
		m       Machine
		sample  string
		addrs   []string
		console string // the console's line, or the start of the failure's
	}{
		{"as planned", bondedMachine(), "bonding-active-backup.txt", []string{"fe80::5054:ff:fe00:d01/64", "192.168.1.34/24"}, ok},
		{"a planned member not enslaved", oneNIC, "bonding-active-backup.txt", []string{"192.168.1.34/24"},
			strings.TrimSuffix(ok, "\n") + " missing=nic1\n"},
		{"LAN and cluster", cluster, "bonding-active-backup.txt", []string{"192.168.1.34/24", "10.20.0.34/24"},
			strings.Replace(ok, "address=192.168.1.34/24", "address=192.168.1.34/24,10.20.0.34/24", 1)},
		{"no bond", bondedMachine(), "", []string{"192.168.1.34/24"}, "KILN-NET-BOND-FAILED bond0: no /proc/net/bonding/bond0"},
		{"the module's own bond0", bondedMachine(), "bonding-default-bond0.txt", []string{"192.168.1.34/24"}, "KILN-NET-BOND-FAILED bond0: mode balance-rr, planned active-backup"},
		{"LAN address elsewhere", bondedMachine(), "bonding-active-backup.txt", nil, "KILN-NET-BOND-FAILED bond0: does not carry 192.168.1.34/24"},
		{"cluster address missing", cluster, "bonding-active-backup.txt", []string{"192.168.1.34/24"}, "KILN-NET-BOND-FAILED bond0: does not carry 10.20.0.34/24"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, console := bondEnv(t, tc.m, tc.sample, tc.addrs...)
			err := env.checkBonds(context.Background())
			if failed := strings.HasPrefix(tc.console, "KILN-NET-BOND-FAILED"); failed != (err != nil) {
				t.Errorf("checkBonds() = %v, want failed=%v", err, failed)
			}
			if !strings.HasPrefix(console.String(), tc.console) || strings.Count(console.String(), "\n") != 1 {
				t.Errorf("console = %q, want one line starting %q", console, tc.console)
			}
		})
	}
}

// TestCheckBondsWaits: a bond whose members come up while the task looks
// passes; one that stays without a member up fails once the wait is over.
func TestCheckBondsWaits(t *testing.T) {
	env, console := bondEnv(t, bondedMachine(), "bonding-active-backup-degraded.txt", "192.168.1.34/24")
	b, _ := os.ReadFile("testdata/bonding-active-backup-degraded.txt")
	down := bytes.ReplaceAll(b, []byte("MII Status: up"), []byte("MII Status: down"))
	writeBonding(t, env.Net.Root, down)
	if err := env.checkBonds(context.Background()); err == nil || !strings.Contains(err.Error(), "no member up of 2 (eno1,enp1s0)") {
		t.Errorf("checkBonds() with every member down = %v", err)
	}
	console.Reset()
	env.Net.Timeout = 10 * time.Second
	looks := 0
	env.Net.Link = func(name string) (LinkState, error) {
		if looks++; looks == 3 {
			writeBonding(t, env.Net.Root, b)
		}
		return fakeLink(map[string][]string{"bond0": {"192.168.1.34/24"}})(name)
	}
	writeBonding(t, env.Net.Root, bytes.Replace(b, []byte("MII Status: up"), []byte("MII Status: down"), 1))
	if err := env.checkBonds(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := "KILN-NET-BOND bond0 mode=active-backup slaves=eno1,enp1s0 up=1 address=192.168.1.34/24 mac=52:54:00:00:0d:01 active=enp1s0 missing=nic0,nic1\n"; console.String() != want {
		t.Errorf("console = %q, want %q", console, want)
	}
}

// TestNetworkPhase: the bonds task is in the network phase of a machine
// with bonds, after wait-address, and absent otherwise.
func TestNetworkPhase(t *testing.T) {
	tasks := func(m Machine) []string {
		var out []string
		for _, ph := range (&Env{Machine: m}).Phases() {
			if ph.Name == "network" {
				for _, t := range ph.Tasks {
					out = append(out, t.Name)
				}
			}
		}
		return out
	}
	if d := cmp.Diff([]string{"wait-address", "bonds"}, tasks(bondedMachine())); d != "" {
		t.Errorf("bonded machine's network tasks (-want +got):\n%s", d)
	}
	plain := bondedMachine()
	plain.Links = []roles.Link{{Name: "nic0", Kind: roles.LinkNIC, MAC: plain.MAC, Netboot: true, LAN: true}}
	for _, m := range []Machine{plain, {Name: "node-a"}} {
		if d := cmp.Diff([]string{"wait-address"}, tasks(m)); d != "" {
			t.Errorf("network tasks of a machine without bonds (-want +got):\n%s", d)
		}
	}
}

// TestLinkRunningKernel: without a fake, an interface is read from the
// kernel, IPv4 addresses as IPv4 with their prefix length.
func TestLinkRunningKernel(t *testing.T) {
	st, err := (&NetCheck{}).link("lo")
	if err != nil {
		t.Skipf("no loopback interface here: %v", err)
	}
	if !slices.Contains(st.Addrs, netip.MustParsePrefix("127.0.0.1/8")) {
		t.Errorf("lo has %v, want 127.0.0.1/8 among them", st.Addrs)
	}
	if _, err := (&NetCheck{}).link("kiln-nosuch0"); err == nil {
		t.Error("an interface that does not exist was found")
	}
}

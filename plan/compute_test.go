package plan

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/profiles"
)

const mini = `
name: mini
network: {cidr: 10.0.0.0/24, gateway: 10.0.0.1, dns: [10.0.0.1]}
machines:
  - {name: gate, role: gate, board: rpi4, arch: arm64, mac: "52:54:00:AA:00:01", address: 10.0.0.2}
  - name: node-1
    role: storage
    board: pc
    arch: amd64
    firmware: bios
    mac: 52:54:00:AA:00:02
    address: 10.0.0.3
    disks:
      - {name: system, wwn: "0x50014ee2b5f0c1a2", size: 100GB, use: system}
      - {name: osd, serial: S2, size: 1TB, use: data, wipe: true}
`

func TestComputeMini(t *testing.T) {
	p, err := profiles.Parse("mini.yaml", []byte(mini))
	if err != nil {
		t.Fatal(err)
	}
	pl, err := Compute(p)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := pl.MachineByMAC("52:54:00:aa:00:02")
	if !ok {
		t.Fatal("MachineByMAC: node-1 not found")
	}
	got := []any{pl.Gate, m.Address, m.RoleImage, m.Disks[0].Action, len(m.Disks[0].Layout.Partitions), m.Disks[1].Action, m.Disks[1].Layout == nil}
	want := []any{Gate{Name: "gate", Address: "10.0.0.2"}, "10.0.0.3/24", "roles/storage.squashfs", ActionPartition, 3, ActionClear, true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	root, _ := m.Disks[0].Layout.Partition(ContentRoot)
	state, _ := m.Disks[0].Layout.Partition(ContentState)
	if want := BootCmdline(root.GUID, state.GUID); m.Cmdline != want {
		t.Errorf("cmdline %q, want %q", m.Cmdline, want)
	}
	g, _ := pl.Machine("gate")
	if g.RoleImage != "" || g.Cmdline != "" || g.Netboot != "" || len(g.Disks) != 0 {
		t.Errorf("gate plan %+v: want no role image, cmdline, netboot or disks", g)
	}
	// Deterministic: the same profile plans the same.
	again, _ := Compute(p)
	if diff := cmp.Diff(pl, again); diff != "" {
		t.Errorf("second Compute differs:\n%s", diff)
	}
}

func TestComputeNoGate(t *testing.T) {
	p := &profiles.Profile{Name: "x", Network: profiles.Network{CIDR: "10.0.0.0/24"}}
	if _, err := Compute(p); !errors.Is(err, ErrNoGate) {
		t.Errorf("Compute = %v, want ErrNoGate", err)
	}
}

func TestCmdlines(t *testing.T) {
	if got, want := BootCmdline("r", "s"), "rdinit=/bbin/kiln-init kiln.mode=boot kiln.root=PARTUUID=r kiln.state=PARTUUID=s console=tty0 console=ttyS0,115200"; got != want {
		t.Errorf("BootCmdline = %q, want %q", got, want)
	}
	if got, want := InstallCmdline("http://10.0.0.2:8080", "52:54:00:aa:00:02", "t0k"), "kiln.mode=install kiln.gate=http://10.0.0.2:8080 kiln.mac=52:54:00:aa:00:02 kiln.token=t0k console=tty0 console=ttyS0,115200"; got != want {
		t.Errorf("InstallCmdline = %q, want %q", got, want)
	}
}

package lab

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/roles"
)

func TestNormalizeWWN(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"0x5000c500a1b2c3d4", "0x5000c500a1b2c3d4", true},
		{"naa.5000C500A1B2C3D4", "0x5000c500a1b2c3d4", true},
		{"5000c500a1b2c3d4", "0x5000c500a1b2c3d4", true},
		{"0x5000c500", "", false},
		{"naa.6000c500a1b2c3d4a1b2c3d4a1b2c3d4", "", false},
		{"zz00c500a1b2c3d4", "", false},
	} {
		got, err := normalizeWWN(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("normalizeWWN(%q) = %q, %v; want %q, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestCreateSparse(t *testing.T) {
	p := filepath.Join(t.TempDir(), "d.img")
	const size = 1_000_000_000_000 // 1 TB, as in the homelab profile
	if err := createSparse(p, size); err != nil {
		if errors.Is(err, ErrNotSparse) {
			t.Skipf("temp folder cannot hold sparse files: %v", err)
		}
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != size {
		t.Errorf("size = %d, want %d", fi.Size(), size)
	}
	if used := fi.Sys().(*syscall.Stat_t).Blocks * 512; used > 1<<20 {
		t.Errorf("%d bytes allocated, want a sparse file", used)
	}
	if err := createSparse(p, 0); err == nil {
		t.Error("size 0 accepted")
	}
}

// testVM is a VM whose files live in a temp folder, for argument tests.
func testVM(t *testing.T, cfg VMConfig) *VM {
	t.Helper()
	if err := vmDefaults(&cfg); err != nil {
		t.Fatal(err)
	}
	vm := &VM{cfg: cfg, tap: "tap0", serial: "/out/vm.serial.log", vars: "/out/vm.OVMF_VARS.fd"}
	for _, d := range cfg.Disks {
		vm.disks = append(vm.disks, "/out/vm-"+d.Name+".img")
	}
	return vm
}

func TestArgs(t *testing.T) {
	vm := testVM(t, VMConfig{
		Name: "ceph-1", Firmware: UEFI, MAC: "52:54:00:12:34:01", UUID: "4b494c4e-0000-4000-8000-000000000001",
		Disks: []Disk{
			{Name: "sys", Size: 1 << 40, Serial: "KILN-CEPH1-A"},
			{Name: "osd", Size: 1 << 40, Serial: "KILN-CEPH1-B", WWN: "naa.5000c500a1b2c3d4"},
		},
	})
	vm.accel = Accel{Name: AccelKVM}.For("amd64")
	got := vm.Args("/tmp/q/qmp.sock")
	want := []string{
		"-name", "ceph-1",
		"-machine", "q35,accel=kvm,graphics=off",
		"-cpu", "max", "-smp", "1", "-m", "1024",
		"-nodefaults", "-display", "none", "-no-reboot",
		"-chardev", "file,id=ser0,path=/out/vm.serial.log,append=on",
		"-serial", "chardev:ser0",
		"-qmp", "unix:/tmp/q/qmp.sock,server=on,wait=on",
		"-device", "virtio-rng-pci",
		"-smbios", "type=1,uuid=4b494c4e-0000-4000-8000-000000000001",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + OVMFCode,
		"-drive", "if=pflash,format=raw,unit=1,file=/out/vm.OVMF_VARS.fd",
		"-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
		// No boot index under UEFI: the variable store's order rules.
		"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:01,romfile=",
		"-drive", "if=none,id=d0,file=/out/vm-sys.img,format=raw,cache=unsafe,discard=unmap",
		"-device", "virtio-blk-pci,drive=d0,serial=KILN-CEPH1-A",
		"-drive", "if=none,id=d1,file=/out/vm-osd.img,format=raw,cache=unsafe,discard=unmap",
		"-device", "virtio-scsi-pci,id=scsi0",
		"-device", "scsi-hd,bus=scsi0.0,drive=d1,wwn=0x5000c500a1b2c3d4,serial=KILN-CEPH1-B",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Args (-want +got):\n%s", d)
	}
	bios := testVM(t, VMConfig{Name: "c", MAC: "52:54:00:12:34:02"}).Args("s")
	if j := strings.Join(bios, " "); strings.Contains(j, "pflash") || strings.Contains(j, "romfile") {
		t.Errorf("BIOS VM args use OVMF or drop the iPXE ROM: %s", j)
	}
	if j := strings.Join(bios, " "); !strings.Contains(j, "q35,accel=tcg,") {
		t.Errorf("a VM with no accelerator chosen does not run under TCG: %s", j)
	}
}

// TestArgsTwoNICs: a bonded machine's VM has its netboot NIC first, as
// the only one with a boot index (and, under SeaBIOS, an iPXE ROM), then
// its second NIC on a tap of its own, then the disks.
// TestArgsUnplugged: a machine off the network has no NIC at all, so its
// firmware can boot only its disks.
func TestArgsUnplugged(t *testing.T) {
	vm := testVM(t, VMConfig{
		Name: "node-a", MAC: "52:54:00:00:0a:01", ExtraMACs: []string{"52:54:00:00:0a:02"}, Unplugged: true,
		Disks: []Disk{{Name: "system", Size: 1 << 30, Serial: "KILN-A"}},
	})
	got := strings.Join(vm.Args("/tmp/q/qmp.sock"), " ")
	if strings.Contains(got, "-netdev") || strings.Contains(got, "virtio-net") {
		t.Errorf("an unplugged VM has a NIC: %s", got)
	}
	if !strings.HasSuffix(got, "-device virtio-blk-pci,drive=d0,serial=KILN-A,bootindex=2") {
		t.Errorf("an unplugged VM's disk: %s", got)
	}
	arm := VMConfig{Name: "g", Arch: ARM64, Kernel: "vmlinuz", Unplugged: true}
	if err := vmDefaults(&arm); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "unplugged") {
		t.Errorf("an unplugged arm64 VM: %v, want ErrUnsupported", err)
	}
}

func TestArgsTwoNICs(t *testing.T) {
	vm := testVM(t, VMConfig{
		Name: "node-s", MAC: "52:54:00:00:0d:01", ExtraMACs: []string{"52:54:00:00:0d:02"},
		Disks: []Disk{{Name: "system", Size: 1 << 30, Serial: "KILN-S-SYSTEM"}},
	})
	got := strings.Join(vm.Args("/tmp/q/qmp.sock"), " ")
	want := "-netdev tap,id=n0,ifname=tap0,script=no,downscript=no" +
		" -device virtio-net-pci,netdev=n0,mac=52:54:00:00:0d:01,bootindex=1" +
		" -netdev tap,id=n1,ifname=tap0n1,script=no,downscript=no" +
		" -device virtio-net-pci,netdev=n1,mac=52:54:00:00:0d:02,romfile=" +
		" -drive if=none,id=d0,file=/out/vm-system.img,format=raw,cache=unsafe,discard=unmap" +
		" -device virtio-blk-pci,drive=d0,serial=KILN-S-SYSTEM,bootindex=2"
	if !strings.HasSuffix(got, want) {
		t.Errorf("Args end\n%s\nwant\n%s", got, want)
	}
	if strings.Count(got, "bootindex=1") != 1 {
		t.Errorf("more than one NIC netboots: %s", got)
	}
	if taps := []string{vm.tapName(0), vm.tapName(1)}; !slices.Equal(taps, []string{"tap0", "tap0n1"}) {
		t.Errorf("taps %q", taps)
	}
}

func TestVMDefaultsRejects(t *testing.T) {
	for _, cfg := range []VMConfig{
		{Name: ""},
		{Name: "a/b"},
		{Name: "a", Arch: "arm64"},
		{Name: "a", Firmware: "coreboot"},
		{Name: "a", MAC: "nope"},
		{Name: "a", Disks: []Disk{{Name: "x", WWN: "12"}}},
		{Name: "a", ExtraMACs: []string{"nope"}},
		{Name: "a", MAC: "52:54:00:00:0d:01", ExtraMACs: []string{"52:54:00:00:0D:01"}},
		{Name: "a", Arch: ARM64, Kernel: "k", ExtraMACs: []string{"52:54:00:00:0d:02"}},
	} {
		if err := vmDefaults(&cfg); err == nil {
			t.Errorf("vmDefaults(%+v) accepted", cfg)
		}
	}
}

func TestWaitForLine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "serial.log")
	stopped := make(chan struct{})
	go func() {
		f, _ := os.Create(p)
		defer f.Close()
		for _, s := range []string{"SeaBIOS\r\n", "KILN-INSTALL-", "START ceph-1\r\n", "KILN-INSTALL-OK ceph-1"} {
			f.WriteString(s)
			time.Sleep(20 * time.Millisecond)
		}
		close(stopped)
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	line, err := waitForLine(ctx, p, 0, regexp.MustCompile(`^KILN-INSTALL-START (\S+)`), nil, stopped)
	if err != nil || line != "KILN-INSTALL-START ceph-1" {
		t.Errorf("start marker: %q, %v", line, err)
	}
	// The last line has no newline: found once the VM stopped.
	line, err = waitForLine(ctx, p, 0, regexp.MustCompile(`^KILN-INSTALL-OK`), nil, stopped)
	if err != nil || line != "KILN-INSTALL-OK ceph-1" {
		t.Errorf("ok marker: %q, %v", line, err)
	}
	_, err = waitForLine(ctx, p, 0, regexp.MustCompile(`KILN-BOOTED`), nil, stopped)
	if !errors.Is(err, ErrVMStopped) {
		t.Errorf("absent marker on a stopped VM: %v, want ErrVMStopped", err)
	}
	_, err = waitForLine(ctx, p, 0, regexp.MustCompile(`KILN-BOOTED`), []*regexp.Regexp{regexp.MustCompile(`^KILN-INSTALL-START`)}, make(chan struct{}))
	if !errors.Is(err, ErrDeadEnd) {
		t.Errorf("dead end: %v, want ErrDeadEnd", err)
	}
	short, cancel2 := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel2()
	_, err = waitForLine(short, p, 0, regexp.MustCompile(`KILN-BOOTED`), nil, make(chan struct{}))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("running VM without the marker: %v, want DeadlineExceeded", err)
	}
	fi, _ := os.Stat(p)
	_, err = waitForLine(ctx, p, fi.Size(), regexp.MustCompile(`SeaBIOS`), nil, stopped)
	if !errors.Is(err, ErrVMStopped) {
		t.Errorf("scan from the end saw old output: %v", err)
	}
}

func TestTailLines(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	os.WriteFile(p, []byte("a\nb\nc\nd\n"), 0o644)
	got, err := tailLines(p, 2)
	if err != nil || got != "c\nd" {
		t.Errorf("tailLines = %q, %v", got, err)
	}
}

func TestDnsmasqArgs(t *testing.T) {
	n := &Network{}
	var err error
	if n.gate, err = netip.ParsePrefix("192.168.1.10/24"); err != nil {
		t.Fatal(err)
	}
	cfg := ISPConfig{TFTPRoot: "/srv/tftp", Extra: []string{"--dhcp-boot=x"}}
	if err := n.ispDefaults(&cfg); err != nil {
		t.Fatal(err)
	}
	got := dnsmasqArgs(cfg, "/out/leases")
	for _, want := range []string{
		"--dhcp-range=192.168.1.100,192.168.1.199,12h",
		"--dhcp-option=3,192.168.1.1",
		"--enable-ra",
		"--enable-tftp", "--tftp-root=/srv/tftp",
		"--dhcp-boot=x",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("dnsmasq args lack %s: %q", want, got)
		}
	}
	if cfg.Addr != "192.168.1.1/24" {
		t.Errorf("ISP address = %s, want 192.168.1.1/24", cfg.Addr)
	}
}

func TestConfigFor(t *testing.T) {
	m := plan.Machine{
		Name: "ceph-1", Arch: "amd64", Firmware: "uefi", MAC: "52:54:00:6b:00:11",
		Disks: []plan.Disk{
			{Name: "sys", Serial: "WD-KILN-CEPH1-A", Size: 1_000_204_886_016},
			{Name: "osd", WWN: "0x50014ee2b5f0c1a2", Size: 1_000_204_886_016},
		},
	}
	got := ConfigFor("homelab", m)
	want := VMConfig{
		Name: "ceph-1", Arch: "amd64", Firmware: UEFI, MAC: "52:54:00:6b:00:11",
		UUID: got.UUID,
		Disks: []Disk{
			{Name: "sys", Serial: "WD-KILN-CEPH1-A", Size: 1_000_204_886_016},
			{Name: "osd", WWN: "0x50014ee2b5f0c1a2", Size: 1_000_204_886_016},
		},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("ConfigFor (-want +got):\n%s", d)
	}
	if again := ConfigFor("homelab", m).UUID; again != got.UUID || len(got.UUID) != 36 {
		t.Errorf("SMBIOS UUID %q then %q: want one stable UUID", got.UUID, again)
	}
	if other := ConfigFor("other", m).UUID; other == got.UUID {
		t.Error("two labs give a machine the same SMBIOS UUID")
	}
	if err := vmDefaults(&got); err != nil {
		t.Errorf("ConfigFor's config is refused: %v", err)
	}
}

// TestConfigForBond: a machine with planned NICs gets one NIC per planned
// NIC, the netboot one (MAC) first, whatever the profile's order.
func TestConfigForBond(t *testing.T) {
	m := plan.Machine{
		Name: "node-s", Arch: "amd64", Firmware: "bios", MAC: "52:54:00:00:0d:01",
		Links: []roles.Link{
			{Name: "nic1", Kind: roles.LinkNIC, MAC: "52:54:00:00:0d:02", Bond: "bond0"},
			{Name: "nic0", Kind: roles.LinkNIC, MAC: "52:54:00:00:0d:01", Bond: "bond0", Netboot: true},
			{Name: "nic2", Kind: roles.LinkNIC, MAC: "52:54:00:00:0d:03"},
			{Name: "bond0", Kind: roles.LinkBond, MAC: "52:54:00:00:0d:01", Mode: "active-backup", Members: []string{"nic1", "nic0"}, LAN: true},
			{Name: "vlan20", Kind: roles.LinkVLAN, VLAN: 20, Link: "bond0"},
		},
	}
	got := ConfigFor("e2e", m)
	if got.MAC != "52:54:00:00:0d:01" || !slices.Equal(got.ExtraMACs, []string{"52:54:00:00:0d:02", "52:54:00:00:0d:03"}) {
		t.Errorf("ConfigFor: MAC %s, ExtraMACs %q", got.MAC, got.ExtraMACs)
	}
	if err := vmDefaults(&got); err != nil {
		t.Errorf("ConfigFor's config is refused: %v", err)
	}
}

func TestBootIndex(t *testing.T) {
	disks := []Disk{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	for _, tc := range []struct {
		boot string
		want []int
	}{
		{"", []int{2, 3, 4}},
		{"a", []int{2, 3, 4}},
		{"b", []int{3, 2, 4}},
		{"c", []int{3, 4, 2}},
	} {
		vm := &VM{cfg: VMConfig{Disks: disks, BootDisk: tc.boot}}
		var got []int
		for i := range disks {
			got = append(got, vm.bootIndex(i))
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("BootDisk %q: boot indexes (-want +got):\n%s", tc.boot, diff)
		}
	}
}

// TestOn: a later VM of the same machine gets the earlier one's disks, in
// its own config's order, and its variable store; the config it was made
// from is not changed.
func TestOn(t *testing.T) {
	cfg := VMConfig{Name: "m", Firmware: UEFI, Disks: []Disk{{Name: "sys", Size: 1}, {Name: "osd", Size: 1}}}
	got := cfg.On(Hardware{Disks: []string{"/a/sys.img", "/a/osd.img"}, Vars: "/a/m.OVMF_VARS.fd"})
	if got.Vars != "/a/m.OVMF_VARS.fd" || got.Disks[0].Path != "/a/sys.img" || got.Disks[1].Path != "/a/osd.img" {
		t.Errorf("On() = %+v", got)
	}
	if cfg.Disks[0].Path != "" || cfg.Vars != "" {
		t.Errorf("On() changed its receiver: %+v", cfg)
	}
}

package lab

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// mbr is a 512-byte sector with partition 1 of type typ at LBA start.
func mbr(typ byte, start, size uint32, sig bool) []byte {
	b := make([]byte, 512)
	p := b[446:]
	p[4] = typ
	binary.LittleEndian.PutUint32(p[8:], start)
	binary.LittleEndian.PutUint32(p[12:], size)
	if sig {
		b[510], b[511] = 0x55, 0xaa
	}
	return b
}

func TestBootPartitionOffset(t *testing.T) {
	for _, tc := range []struct {
		name string
		img  []byte
		want int64
		err  error
	}{
		{"gate image", mbr(0x0c, 8192, 524288, true), 4 << 20, nil},
		{"no signature", mbr(0x0c, 8192, 524288, false), 0, ErrNoBootPartition},
		{"empty p1", mbr(0, 0, 0, true), 0, ErrNoBootPartition},
		{"gpt", mbr(0xee, 1, 1000, true), 0, ErrNoBootPartition},
		{"short", []byte{1, 2, 3}, 0, nil},
	} {
		got, err := BootPartitionOffset(bytes.NewReader(tc.img))
		if tc.name == "short" {
			if err == nil {
				t.Errorf("%s: no error", tc.name)
			}
			continue
		}
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("%s: %d, %v; want %d, %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}

func FuzzBootPartitionOffset(f *testing.F) {
	f.Add(mbr(0x0c, 8192, 524288, true))
	f.Fuzz(func(t *testing.T, b []byte) {
		off, err := BootPartitionOffset(bytes.NewReader(b))
		if err == nil && (off <= 0 || off%512 != 0) {
			t.Errorf("offset %d accepted", off)
		}
	})
}

func TestArm64Args(t *testing.T) {
	vm := testVM(t, VMConfig{
		Name: "gate-1", Arch: ARM64, MAC: "52:54:00:6b:00:01",
		Kernel: "/out/gate-1-boot/vmlinuz", Initrd: "/out/gate-1-boot/initrd.gz",
		Append: "console=tty1 console=ttyAMA0,115200 kiln.perm=PARTUUID=4b494c4e-02",
		Disks:  []Disk{{Name: "sd", Path: "/out/gate-1-sd.img"}},
	})
	// A KVM chosen for the run is for amd64 guests; the arm64 gate on
	// this amd64 host runs under TCG.
	vm.accel = Accel{Name: AccelKVM}.For(ARM64)
	got := vm.Args("/tmp/q/qmp.sock")
	want := []string{
		"-name", "gate-1",
		"-machine", "virt,accel=tcg",
		"-cpu", "cortex-a72", "-smp", "1", "-m", "1024",
		"-nodefaults", "-display", "none", "-no-reboot",
		"-chardev", "file,id=ser0,path=/out/vm.serial.log,append=on",
		"-serial", "chardev:ser0",
		"-qmp", "unix:/tmp/q/qmp.sock,server=on,wait=on",
		"-device", "virtio-rng-pci",
		"-kernel", "/out/gate-1-boot/vmlinuz",
		"-initrd", "/out/gate-1-boot/initrd.gz",
		"-append", "console=tty1 console=ttyAMA0,115200 kiln.perm=PARTUUID=4b494c4e-02",
		"-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:6b:00:01,romfile=",
		"-drive", "if=none,id=d0,file=/out/vm-sd.img,format=raw,cache=unsafe,discard=unmap",
		"-device", "virtio-blk-pci,drive=d0,bootindex=2",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Args (-want +got):\n%s", d)
	}
	if vm.cfg.Firmware != Direct || qemuBinary(vm.cfg.Arch) != "qemu-system-aarch64" {
		t.Errorf("arm64 VM: firmware %q, binary %q", vm.cfg.Firmware, qemuBinary(vm.cfg.Arch))
	}
	for _, bad := range []VMConfig{
		{Name: "a", Arch: ARM64, Firmware: UEFI, Kernel: "k"},
		{Name: "a", Firmware: Direct, Kernel: "k"},
	} {
		if err := vmDefaults(&bad); err == nil {
			t.Errorf("vmDefaults(%+v) accepted", bad)
		}
	}
}

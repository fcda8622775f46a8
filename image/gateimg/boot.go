package gateimg

import (
	"encoding/binary"
	"strings"

	"github.com/google/uuid"

	"github.com/kilnlab/kiln/plan"
)

// Paths on the boot partition that the Pi 4 firmware (start4.elf) and
// config.txt name; the firmware looks for them at the root.
const (
	ConfigPath  = "/config.txt"
	CmdlinePath = "/cmdline.txt"
	KernelPath  = "/vmlinuz"
	InitrdPath  = "/initrd.gz"
)

// RequiredBootFiles lists the boot files without which a Pi 4 cannot boot
// the gate: Build refuses boot files lacking one.
func RequiredBootFiles() []string {
	return []string{"/start4.elf", "/fixup4.dat", "/bcm2711-rpi-4-b.dtb", KernelPath, InitrdPath}
}

// Signature is the MBR disk signature of a gate's card: the first four
// bytes, big-endian, of the lab's stable GUID for the machine's "sd" disk.
func Signature(lab, machine string) uint32 {
	g := uuid.MustParse(plan.GUID(lab, machine, "sd", ""))
	return binary.BigEndian.Uint32(g[:4])
}

// ConfigTxt is the firmware's config.txt: 64-bit, the Debian kernel
// (upstream device trees) and the gate initramfs, serial console on.
func ConfigTxt() string {
	return strings.Join([]string{
		"# kiln gate: written by kiln build",
		"arm_64bit=1",
		"enable_uart=1",
		"upstream_kernel=1",
		"kernel=" + strings.TrimPrefix(KernelPath, "/"),
		"initramfs " + strings.TrimPrefix(InitrdPath, "/") + " followkernel",
		"disable_overscan=1",
	}, "\n") + "\n"
}

// Cmdline is cmdline.txt: one line (the firmware reads only the first).
// The last console is /dev/console: ttyAMA0, QEMU virt's PL011 (and the
// Pi's, which the firmware gives to Bluetooth). tty1 is the Pi's HDMI
// screen: it shows the kernel's messages and the gate's progress lines,
// which the appliance also writes to /dev/kmsg for that reason.
// The Pi's GPIO mini-UART (ttyS1 under Debian's kernel) is deliberately
// absent: where no such port exists (QEMU virt), console=ttyS1 makes the
// 8250 driver's empty port /dev/console, and every write of init and kiln
// fails (measured: the uinit exits at once, silently).
func Cmdline(signature uint32) string {
	return "console=tty1 console=ttyAMA0,115200" +
		" kiln.perm=PARTUUID=" + PartUUID(signature, 2) +
		" kiln.payload=PARTUUID=" + PartUUID(signature, 3) + " panic=10\n"
}

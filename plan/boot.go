package plan

import (
	"fmt"

	"github.com/kilnlab/kiln/profiles"
)

// Console is the console part of every kiln kernel command line: the
// screen for people, the first serial port for logs and tests.
const Console = "console=tty0 console=ttyS0,115200"

// BootCmdline is the installed system's kernel command line (boot mode of
// the kiln initramfs, run as PID 1 via rdinit so it can switch_root).
func BootCmdline(rootGUID, stateGUID string) string {
	return fmt.Sprintf("rdinit=/bbin/kiln-init kiln.mode=boot kiln.root=PARTUUID=%s kiln.state=PARTUUID=%s %s",
		rootGUID, stateGUID, Console)
}

// InstallCmdline is the installer's kernel command line that the gate puts
// in a machine's iPXE script; gateURL is e.g. http://192.168.1.10:8080.
func InstallCmdline(gateURL, mac, token string) string {
	return fmt.Sprintf("kiln.mode=install kiln.gate=%s kiln.mac=%s kiln.token=%s %s", gateURL, mac, token, Console)
}

// netboot describes, for people, how a machine reaches the installer.
func netboot(firmware, gateURL string) string {
	first := "PXE (BIOS) -> tftp/undionly.kpxe"
	if firmware == profiles.FirmwareUEFI {
		first = "PXE (UEFI x64) -> tftp/ipxe.efi or tftp/snponly.efi"
	}
	return first + " -> iPXE -> " + gateURL + "/boot.ipxe -> /ipxe/${mac} -> amd64/vmlinuz + amd64/initramfs.cpio.gz (install mode)"
}

// diskBoot describes, for people, how an installed machine boots.
func diskBoot(firmware string) string {
	first := "BIOS -> bios/gptmbr.bin -> legacy-BIOS-bootable ESP (syslinux)"
	if firmware == profiles.FirmwareUEFI {
		first = "UEFI -> ESP \\EFI\\BOOT\\BOOTX64.EFI (systemd-boot)"
	}
	return first + " -> vmlinuz + initramfs (boot mode) -> kiln-root squashfs + kiln-state overlay -> systemd"
}

// gateBoot describes the gate's boot chain (DESIGN.md §5).
const gateBoot = "Pi 4 firmware (start4.elf, config.txt) -> arm64 kernel + u-root initramfs (uinit: kiln gate) -> payload + /perm partitions"

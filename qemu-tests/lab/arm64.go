package lab

import "fmt"

// ARM64 is the Arch of a VM on QEMU's arm64 `virt` board with a Cortex-A72
// (the Pi 4's core). The Pi firmware cannot be emulated, so QEMU loads the
// kernel, initramfs and command line itself (Firmware Direct), as the Pi
// firmware would from the SD card's boot partition (see GateVMConfig).
const ARM64 = "arm64"

// arm64Defaults checks an arm64 VM: only Direct boots exist.
func arm64Defaults(cfg *VMConfig) error {
	if cfg.Firmware == "" {
		cfg.Firmware = Direct
	}
	if cfg.Firmware != Direct {
		return fmt.Errorf("lab: vm %s: firmware %q on arm64: %w", cfg.Name, cfg.Firmware, ErrUnsupported)
	}
	if cfg.Kernel == "" {
		return fmt.Errorf("lab: vm %s: arm64 boots a kernel directly: Kernel is required", cfg.Name)
	}
	return nil
}

// qemuBinary is the QEMU system emulator for arch.
func qemuBinary(arch string) string {
	if arch == ARM64 {
		return "qemu-system-aarch64"
	}
	return "qemu-system-x86_64"
}

// arm64Args is QEMU's command line for an arm64 VM: the same shape as an
// amd64 one (serial log, QMP, virtio-rng, virtio-net on the VM's tap,
// virtio disks) on the virt board, with the kernel loaded by QEMU.
func (vm *VM) arm64Args(qmp string) []string {
	c := vm.cfg
	// The accelerator is TCG on an amd64 host (Accel.For); virt's PL011
	// (ttyAMA0) is the serial port of the log.
	args := append(vm.baseArgs("virt,accel="+vm.accelName(), "cortex-a72", qmp), "-kernel", c.Kernel)
	if c.Initrd != "" {
		args = append(args, "-initrd", c.Initrd)
	}
	if c.Append != "" {
		args = append(args, "-append", c.Append)
	}
	args = append(args,
		"-netdev", "tap,id=n0,ifname="+vm.tap+",script=no,downscript=no",
		// No option ROM: nothing on this board runs it.
		"-device", "virtio-net-pci,netdev=n0,mac="+c.MAC+",romfile=")
	return append(append(args, vm.diskArgs()...), c.ExtraArgs...)
}

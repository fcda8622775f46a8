// Command smokeinit is the whole userspace of the harness smoke test. As
// PID 1 it prints one marker line to the console (ttyS0 via console=) with
// the kiln.smoke= value of the kernel command line and the SMBIOS system
// UUID, then powers the machine off. It needs no kernel modules.
package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

func main() {
	for _, m := range []struct{ fs, dir string }{{"proc", "/proc"}, {"sysfs", "/sys"}} {
		_ = os.MkdirAll(m.dir, 0o755)
		if err := syscall.Mount(m.fs, m.dir, m.fs, 0, ""); err != nil {
			fmt.Printf("smokeinit: mount %s: %v\n", m.dir, err)
		}
	}
	nonce := "none"
	if b, err := os.ReadFile("/proc/cmdline"); err == nil {
		for _, f := range strings.Fields(string(b)) {
			if v, ok := strings.CutPrefix(f, "kiln.smoke="); ok {
				nonce = v
			}
		}
	}
	uuid := "none"
	if b, err := os.ReadFile("/sys/class/dmi/id/product_uuid"); err == nil {
		uuid = strings.TrimSpace(string(b))
	}
	fmt.Printf("KILN-SMOKE-OK nonce=%s uuid=%s\n", nonce, uuid)
	syscall.Sync()
	err := syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	// PID 1 must not exit (the kernel would panic): report and idle.
	fmt.Printf("smokeinit: power off: %v\n", err)
	for {
		time.Sleep(time.Hour)
	}
}

package firstboot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kilnlab/kiln/installer/efiboot"
)

// ReportHealth is one run of the health report: check the services, print
// the console line when it changed, send the report, and do what the
// gate's answer asks. A gate that cannot be told fails the run (the
// journal says why); the next timer run tries again.
//
// The answer's netboot is how a re-armed machine gets back to the gate:
// a UEFI machine boots its disk first (installer/efiboot), so its OS makes
// the firmware's next boot, that one only, its netboot (BootNext), says so
// on the console, and reports again at once so that the gate's page shows
// it. A BIOS machine (no EFIVars) netboots first anyway.
func (e *Env) ReportHealth(ctx context.Context, doneDir string) error {
	h := e.Health(ctx, doneDir)
	for _, s := range h.Services {
		e.Log.Info("health", "service", s.Name, "status", s.Status, "detail", s.Detail)
	}
	if err := e.PrintHealthChange(HealthLine(e.Machine.Name, h)); err != nil {
		e.Log.Warn("health: console line", "err", err)
	}
	if e.HTTP == nil {
		return fmt.Errorf("cannot report to the gate: %w", e.HTTPErr)
	}
	if boot, err := e.bootTime(); err != nil {
		e.Log.Warn("health: when this system started", "err", err)
	} else {
		h.Boot = boot
	}
	if e.EFIVars != nil {
		next, err := efiboot.NetbootsNext(e.EFIVars, e.Machine.MAC)
		if err != nil {
			e.Log.Warn("health: the firmware's next boot", "err", err)
		}
		h.NetbootNext = next
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	a, err := e.HTTP.Health(ctx, h)
	if err != nil || !a.Netboot || h.NetbootNext || e.EFIVars == nil {
		return err
	}
	n, _, err := efiboot.NetbootNext(e.EFIVars, e.Machine.MAC)
	if err != nil {
		fmt.Fprintf(e.Console, "KILN-NETBOOT-FAILED host=%s: the gate re-armed this machine, but its next boot cannot be made a netboot: %v\n", e.Machine.Name, err)
		return fmt.Errorf("the gate re-armed this machine: %w", err)
	}
	fmt.Fprintf(e.Console, "KILN-NETBOOT-NEXT host=%s entry=Boot%04X: the gate re-armed this machine; its next boot netboots and installs it\n", e.Machine.Name, n)
	e.Log.Info("re-armed by the gate: the next boot is a netboot", "entry", fmt.Sprintf("Boot%04X", n))
	h.NetbootNext = true
	_, err = e.HTTP.Health(ctx, h)
	return err
}

// bootTime is when the running system started: the kernel's btime in
// /proc/stat (Env.BootTime in tests). The gate takes it for the power-on
// of a boot it did not see begin (a UEFI machine boots its disk first).
func (e *Env) bootTime() (time.Time, error) {
	if e.BootTime != nil {
		return e.BootTime()
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, err
	}
	return parseBtime(b)
}

// parseBtime reads the btime line of /proc/stat: seconds since the epoch.
func parseBtime(stat []byte) (time.Time, error) {
	for _, line := range strings.Split(string(stat), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil || n <= 0 {
				return time.Time{}, fmt.Errorf("/proc/stat: btime %q", v)
			}
			return time.Unix(n, 0).UTC(), nil
		}
	}
	return time.Time{}, errors.New("/proc/stat: no btime")
}

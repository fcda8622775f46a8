package appliance

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kilnlab/kiln/image/payload"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/profiles"
)

// The phases up to /perm: modules, payload, clock, perm.

func (a *Appliance) loadModules(ctx context.Context) error {
	n, err := a.sys.LoadModules(a.log)
	if errors.Is(err, fs.ErrNotExist) {
		// An initramfs without modules.dep: a kernel with its drivers
		// built in. The phases that need a driver say so if one is
		// missing.
		a.con.printf("modules: none to load (%v)", err)
		return nil
	}
	if err != nil && n == 0 {
		return err
	}
	// A module for absent hardware may fail; the phases that need the
	// rest (disks, NIC) say so themselves if something is missing.
	if err != nil {
		a.log.Warn("some modules did not load", "err", err)
	}
	a.con.printf("modules: %d loaded", n)
	return nil
}

func (a *Appliance) readCmdline(ctx context.Context) error {
	b, err := os.ReadFile(a.path("proc/cmdline"))
	if err != nil {
		return err
	}
	if a.payloadID, err = partUUIDArg(string(b), "kiln.payload"); err != nil {
		return err
	}
	a.permID, err = partUUIDArg(string(b), "kiln.perm")
	return err
}

// mountAt finds the partition and mounts it on dir unless it already is.
func (a *Appliance) mountAt(ctx context.Context, partuuid, dir, fstype string, flags uintptr) (string, error) {
	target := a.path(dir)
	if err := os.MkdirAll(target, 0o755); err != nil {
		return "", err
	}
	if ok, err := a.sys.Mounted(target); err != nil || ok {
		return "", err
	}
	ctx, cancel := context.WithTimeoutCause(ctx, a.cfg.WaitDevices,
		fmt.Errorf("no PARTUUID=%s after %s", partuuid, a.cfg.WaitDevices))
	defer cancel()
	node, err := blockFinder{root: a.cfg.Root, sys: a.sys}.wait(ctx, partuuid, 100*time.Millisecond)
	if err != nil {
		return "", err
	}
	if err := a.sys.Mount(node, target, fstype, flags, ""); err != nil {
		return "", err
	}
	return node, nil
}

func (a *Appliance) mountPayload(ctx context.Context) error {
	node, err := a.mountAt(ctx, a.payloadID, PayloadDir, "squashfs", unix.MS_RDONLY)
	if err == nil && node != "" {
		a.con.printf("payload: %s (squashfs) on /%s", node, PayloadDir)
	}
	return err
}

// readPayload reads gate.json and the profile, and plans the lab.
func (a *Appliance) readPayload(ctx context.Context) error {
	dir := a.path(PayloadDir)
	info, err := payload.ReadInfo(dir)
	if err != nil {
		return err
	}
	mac, err := net.ParseMAC(info.InterfaceMAC)
	if err != nil {
		return err // Check accepted it: cannot happen
	}
	prof, err := profiles.Load(filepath.Join(dir, info.Profile))
	if err != nil {
		return err
	}
	pl, err := plan.Compute(prof)
	if err != nil {
		return err
	}
	if info.Lab != pl.Lab {
		return fmt.Errorf("gate.json is for lab %q, the profile for %q", info.Lab, pl.Lab)
	}
	gate, ok := pl.Machine(info.Machine)
	if !ok || gate.Role != profiles.RoleGate {
		return fmt.Errorf("gate.json machine %q is not the profile's gate", info.Machine)
	}
	a.payload = Payload{Dir: dir, Info: info, Profile: prof, Plan: pl, Gate: gate}
	a.mac = mac
	a.con.printf("payload: lab %s, gate %s, built %s", pl.Lab, gate.Name, info.BuildTime.UTC().Format(time.RFC3339))
	return nil
}

// buildTimeFloor: the Pi wakes up in 1970; the image is younger than its
// build.
func (a *Appliance) buildTimeFloor(ctx context.Context) error {
	return a.raiseClock("build time", a.payload.Info.BuildTime)
}

func (a *Appliance) raiseClock(what string, t time.Time) error {
	stepped, err := a.clock.raise(t)
	if err != nil {
		return err
	}
	if stepped {
		a.con.printf("clock: set to %s (%s)", a.clock.floor.UTC().Format(time.RFC3339), what)
	}
	return nil
}

func (a *Appliance) mountPerm(ctx context.Context) error {
	node, err := a.mountAt(ctx, a.permID, PermDir, "ext4", unix.MS_NOATIME|unix.MS_NOSUID|unix.MS_NODEV)
	if err != nil {
		return err
	}
	if node != "" {
		a.con.printf("perm: %s (ext4) on /%s", node, PermDir)
	}
	for _, d := range []string{"state", "logs"} {
		if err := os.MkdirAll(a.path(PermDir, d), 0o700); err != nil {
			return err
		}
	}
	return nil
}

func (a *Appliance) openLog(ctx context.Context) error {
	return a.file.open(a.path(PermDir, "logs", "gate.log"))
}

// permFloor raises the clock to what a running gate last saved: a reboot
// without NTP then goes on from there, not from the build time.
func (a *Appliance) permFloor(ctx context.Context) error {
	t, err := readClockFile(a.path(PermDir))
	if err != nil {
		// A torn or foreign file must not keep the gate down: the
		// build time still holds, and the next save rewrites it.
		a.log.Warn("ignoring /perm/clock", "err", err)
		return nil
	}
	return a.raiseClock("/"+PermDir+"/"+clockFile, t)
}

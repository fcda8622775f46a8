package firstboot

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/u-root/u-root/pkg/efivarfs"

	"github.com/kilnlab/kiln/installer/gateclient"
	"github.com/kilnlab/kiln/pxe/api"
)

// Env is what the tasks act on; tests replace the system parts.
type Env struct {
	Log           *slog.Logger
	Console       io.Writer
	Machine       Machine
	StatePartUUID string
	// Exec runs a program; nil means os/exec.
	Exec func(ctx context.Context, name string, args ...string) error
	// Addrs lists the host's addresses; nil means net.InterfaceAddrs.
	Addrs func() ([]net.Addr, error)
	// Poll is how often to look for the address; 0 means 1 s.
	Poll time.Duration
	// AddressTimeout bounds the wait for the address; 0 means 5 min.
	AddressTimeout time.Duration
	// HTTP reports to the gate's TLS port as the machine (its
	// certificate); HTTPErr says why there is none.
	HTTP    *gateclient.Client
	HTTPErr error
	// Hostname reports the running system's host name; nil means
	// os.Hostname. The announcement shows what systemd actually set from
	// the state's /etc, not what the identity file says it should be.
	Hostname func() (string, error)
	// Storage is what a storage node's time and ceph phases act on
	// (storage.go); nil means the running system.
	Storage *Storage
	// Net is what the network phase's bond check reads (netcheck.go);
	// nil means the running system.
	Net *NetCheck
	// EFIVars are the firmware's variables on a UEFI machine (nil under
	// BIOS): the health report sets BootNext through them when the gate
	// has re-armed the machine (report.go).
	EFIVars efivarfs.EFIVar
	// BootTime says when the running system started; nil means the
	// kernel's btime (report.go).
	BootTime func() (time.Time, error)
}

// Phases are the first-boot phases of a role OS, in the order of its
// role's FirstBoot (package roles; a test checks that they agree).
func (e *Env) Phases() []Phase {
	phases := []Phase{
		{Name: "storage", Tasks: []Task{{Name: "grow-state", Run: e.growState}}},
		{Name: "network", Tasks: append([]Task{{Name: "wait-address", Run: e.waitAddress}}, e.bondTasks()...)},
	}
	// A storage node's time and ceph phases (storage.go); none otherwise.
	phases = append(phases, e.storagePhases()...)
	// A compute machine's k3s (k3s.go); none otherwise.
	if t := e.storageNode().k3sTasks(); len(t) > 0 {
		phases = append(phases, Phase{Name: "k3s", Tasks: t})
	}
	return append(phases, Phase{Name: "announce", Tasks: []Task{
		{Name: "console", Run: e.announce},
		{Name: "gate", Run: e.reportBooted, Optional: true},
	}})
}

// growState grows the state ext4 (mounted: resize2fs grows it online) to
// its partition; already grown is a no-op for resize2fs.
func (e *Env) growState(ctx context.Context) error {
	if e.StatePartUUID == "" {
		return fmt.Errorf("no state PARTUUID (kiln.state= on the kernel command line)")
	}
	return e.exec(ctx, "resize2fs", "/dev/disk/by-partuuid/"+e.StatePartUUID)
}

func (e *Env) exec(ctx context.Context, name string, args ...string) error {
	if e.Exec != nil {
		return e.Exec(ctx, name, args...)
	}
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// waitAddress waits until the planned static address is on an interface
// (systemd-networkd applies it from the state's /etc overlay).
func (e *Env) waitAddress(ctx context.Context) error {
	want, _, err := net.ParseCIDR(e.Machine.Address)
	if err != nil {
		return fmt.Errorf("machine address %q: %w", e.Machine.Address, err)
	}
	addrs := e.Addrs
	if addrs == nil {
		addrs = net.InterfaceAddrs
	}
	ctx, cancel := context.WithTimeout(ctx, or(e.AddressTimeout, 5*time.Minute))
	defer cancel()
	for {
		as, err := addrs()
		if err != nil {
			return err
		}
		for _, a := range as {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(want) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("address %s never appeared: %w", e.Machine.Address, ctx.Err())
		case <-time.After(or(e.Poll, time.Second)):
		}
	}
}

func (e *Env) announce(context.Context) error {
	host, err := e.hostname()
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.Console, "KILN-BOOTED host=%s addr=%s\n", host, e.Machine.Address)
	return err
}

func (e *Env) hostname() (string, error) {
	if e.Hostname != nil {
		return e.Hostname()
	}
	return os.Hostname()
}

func (e *Env) reportBooted(ctx context.Context) error {
	if e.HTTP == nil {
		return fmt.Errorf("cannot report to the gate: %w", e.HTTPErr)
	}
	host, err := e.hostname()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return e.HTTP.Booted(ctx, api.Booted{Hostname: host, Address: e.Machine.Address})
}

func or(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

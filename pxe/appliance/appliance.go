// Package appliance owns the gate's life as an appliance: `kiln gate run`,
// the uinit of the gate's u-root initramfs, brings a Raspberry Pi 4 from
// a bare kernel to serving the lab's netboot with no Debian userland.
//
// It runs declared phases of small idempotent tasks, in order (talos
// style): modules, payload, clock, perm, network, time, wireguard, serve.
// Each phase is logged and shown on every console (stdout and /dev/kmsg).
// A phase that fails prints `KILN-GATE-FAILED phase=<name>: <error>` and
// is retried from its first task every RetryEvery: a uinit must never
// exit (u-root's init would drop to a shell, the kernel would panic), and
// a gate that waits for its SD card or its NIC recovers by itself. Once
// listening it prints `KILN-GATE-SERVING addr=<ip> http=<url> boot=<s>`.
// The wireguard phase alone is detached: when it fails (the VPS's name
// does not resolve without the internet) it is reported and retried in
// the background, and the gate goes on to serve the lab.
//
// The clock floor comes first where it can: the payload carries the
// build time, so the payload is mounted before /perm, the floor applied,
// and then raised again from /perm/clock (what a running gate last saved).
//
// Everything that touches the kernel goes through System, and every path
// is below Config.Root, so the phase logic is tested without root.
package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kilnlab/kiln/image/payload"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/pxe"
)

// ErrSkipped, returned by a task, skips the rest of its phase (e.g. no
// WireGuard block in the profile).
var ErrSkipped = errors.New("skipped")

// Defaults of Config.
const (
	DefaultRetryEvery  = 10 * time.Second
	DefaultWaitDevices = 30 * time.Second
	DefaultSaveClock   = 5 * time.Minute
	// UEFI PXE gets snponly.efi, as `kiln gate serve` does by default.
	DefaultUEFIBootFile = "snponly.efi"
)

// Paths on the gate, below Config.Root.
const (
	PayloadDir = "payload"
	PermDir    = "perm"
)

// TimeService is SNTP (package pxe/ntp): the client that sets the clock
// from the profile's servers and the server the lab asks.
type TimeService interface {
	// Serve answers the lab's SNTP requests on pc until ctx ends.
	Serve(ctx context.Context, pc net.PacketConn, log *slog.Logger) error
	// Sync asks servers, in order, how far they are ahead of the local
	// clock.
	Sync(ctx context.Context, servers []string) (time.Duration, error)
	// Synced tells the server side the clock was just set by Sync.
	Synced()
}

// WireGuardFunc brings the tunnel up from the payload (the gate's
// wireguard block, secrets/wireguard.json); it returns ErrSkipped when the
// gate has none.
type WireGuardFunc func(ctx context.Context, p *Payload, log *slog.Logger) error

// ServeFunc runs the netboot service until ctx ends; it calls cfg.Ready
// once listening. nil in Config means pxe.New(cfg).Run(ctx).
type ServeFunc func(ctx context.Context, cfg pxe.Config) error

// Config configures the appliance.
type Config struct {
	// Root is where the gate's / is: "/" on the gate, a temp dir in tests.
	Root string
	// System touches the kernel; nil means Linux{Root}.
	System System
	// Log is the structured log; it is also written to
	// /perm/logs/gate.log once /perm is mounted.
	Log *slog.Logger
	// Stdout gets the progress lines (so does Root/dev/kmsg).
	Stdout io.Writer

	// Time is the SNTP client and server; nil leaves the clock at its
	// floor (still saved to /perm/clock) and serves no time.
	Time TimeService
	// WireGuard brings the tunnel up; nil skips the phase.
	WireGuard WireGuardFunc
	// Serve runs the netboot service; nil means the pxe package's.
	Serve ServeFunc
	// UEFIBootFile is passed to pxe.Config; default DefaultUEFIBootFile.
	UEFIBootFile string

	// RetryEvery paces the retries of a failed phase.
	RetryEvery time.Duration
	// WaitDevices bounds one wait for a partition or the NIC (then the
	// phase fails, is reported, and retried).
	WaitDevices time.Duration
	// SaveClock paces the writes of /perm/clock.
	SaveClock time.Duration
}

// Payload is what the payload partition (image/payload's format) says
// about this gate.
type Payload struct {
	// Dir is the mounted payload (Root/payload).
	Dir     string
	Info    payload.Info
	Profile *profiles.Profile
	Plan    *plan.Plan
	// Gate is the gate's machine in the plan.
	Gate *plan.Machine
}

// Appliance is one run of the gate.
type Appliance struct {
	cfg  Config
	sys  System
	log  *slog.Logger
	con  *console
	file *lateFile

	payloadID, permID string
	payload           Payload
	mac               net.HardwareAddr
	clock             clock
	iface             string
	addr              netip.Prefix

	bg                                sync.WaitGroup
	savingClock, servingTime, syncing bool
	synced                            atomic.Bool
}

// New checks cfg and fills in its defaults.
func New(cfg Config) (*Appliance, error) {
	if cfg.Log == nil {
		return nil, errors.New("appliance: no logger")
	}
	if cfg.Root == "" {
		cfg.Root = "/"
	}
	if cfg.Stdout == nil {
		cfg.Stdout = io.Discard
	}
	if cfg.System == nil {
		cfg.System = Linux{Root: cfg.Root}
	}
	if cfg.Serve == nil {
		cfg.Serve = servePXE
	}
	if cfg.UEFIBootFile == "" {
		cfg.UEFIBootFile = DefaultUEFIBootFile
	}
	cfg.RetryEvery = orDefault(cfg.RetryEvery, DefaultRetryEvery)
	cfg.WaitDevices = orDefault(cfg.WaitDevices, DefaultWaitDevices)
	cfg.SaveClock = orDefault(cfg.SaveClock, DefaultSaveClock)
	file := &lateFile{}
	log := slog.New(newQuietHandler(slog.NewMultiHandler(cfg.Log.Handler(), slog.NewTextHandler(file, nil))))
	a := &Appliance{cfg: cfg, sys: cfg.System, log: log, file: file, con: &console{out: cfg.Stdout}}
	a.clock.sys = cfg.System
	return a, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func servePXE(ctx context.Context, cfg pxe.Config) error {
	s, err := pxe.New(cfg)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// path is p below Root.
func (a *Appliance) path(p ...string) string {
	return filepath.Join(append([]string{a.cfg.Root}, p...)...)
}

// Run brings the gate up and serves until ctx ends; it returns only then,
// with nil: a requested stop is not a failure (and a failure never stops
// the gate).
func (a *Appliance) Run(ctx context.Context) error {
	if k, err := os.OpenFile(a.path("dev/kmsg"), os.O_WRONLY, 0); err == nil {
		defer k.Close()
		a.con.kmsg = k
	}
	defer a.file.Close()
	defer a.bg.Wait()
	for _, p := range a.phases() {
		if a.runPhase(ctx, p) != nil {
			return nil // ctx ended
		}
	}
	return nil
}

// phase is a named list of tasks; a failure reruns it from the start, so
// every task is idempotent.
type phase struct {
	name  string
	tasks []task
	// detach: a failure does not hold back the later phases; it is
	// reported and the phase retried in the background. The lab must
	// come up without the internet, so the tunnel must not stop serving.
	detach bool
}

type task struct {
	name string
	run  func(ctx context.Context) error
}

// Phases names the phases in the order Run runs them.
func Phases() []string {
	var a Appliance
	var names []string
	for _, p := range a.phases() {
		names = append(names, p.name)
	}
	return names
}

func (a *Appliance) phases() []phase {
	return []phase{
		{"modules", []task{{"load", a.loadModules}}, false},
		{"payload", []task{{"cmdline", a.readCmdline}, {"mount", a.mountPayload}, {"read", a.readPayload}}, false},
		{"clock", []task{{"floor", a.buildTimeFloor}}, false},
		{"perm", []task{{"mount", a.mountPerm}, {"log", a.openLog}, {"floor", a.permFloor}}, false},
		{"network", []task{{"lo", a.loopback}, {"nic", a.findNIC}, {"address", a.address}, {"route", a.route}, {"resolv", a.resolvConf}}, false},
		{"time", []task{{"save", a.startSavingClock}, {"server", a.startTimeServer}, {"client", a.startTimeClient}}, false},
		{"wireguard", []task{{"up", a.wireguard}}, true},
		{"serve", []task{{"netboot", a.serve}}, false},
	}
}

// runPhase runs p until it succeeds or ctx ends; a detached phase that
// fails once goes on in the background.
func (a *Appliance) runPhase(ctx context.Context, p phase) error {
	for {
		err := a.tryPhase(ctx, p)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		a.con.printf("KILN-GATE-FAILED phase=%s: %v", p.name, err)
		a.log.Error("phase failed", "phase", p.name, "err", err, "retry_in", a.cfg.RetryEvery, "detached", p.detach)
		if p.detach {
			p.detach = false
			a.background(ctx, p.name, func(ctx context.Context) error {
				if err := a.sleep(ctx); err != nil {
					return nil
				}
				if a.runPhase(ctx, p) == nil {
					a.con.printf("%s: up after a retry", p.name)
				}
				return nil
			})
			return nil
		}
		if err := a.sleep(ctx); err != nil {
			return err
		}
	}
}

// sleep waits RetryEvery, or until ctx ends.
func (a *Appliance) sleep(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(a.cfg.RetryEvery):
		return nil
	}
}

func (a *Appliance) tryPhase(ctx context.Context, p phase) error {
	start := time.Now()
	a.log.Info("phase", "phase", p.name)
	for _, t := range p.tasks {
		err := t.run(ctx)
		if errors.Is(err, ErrSkipped) {
			a.con.printf("%s: %v", p.name, err)
			a.log.Info("phase skipped", "phase", p.name, "task", t.name, "why", err)
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		a.log.Debug("task done", "phase", p.name, "task", t.name)
	}
	a.log.Info("phase done", "phase", p.name, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// background runs f until ctx ends; Run waits for it before returning.
func (a *Appliance) background(ctx context.Context, name string, f func(ctx context.Context) error) {
	a.bg.Go(func() {
		if err := f(ctx); err != nil && ctx.Err() == nil {
			a.log.Error("background task stopped", "task", name, "err", err)
		}
	})
}

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/kilnlab/kiln/image/payload"
	"github.com/kilnlab/kiln/image/secrets"
	"github.com/kilnlab/kiln/pxe/appliance"
	"github.com/kilnlab/kiln/pxe/ntp"
	"github.com/kilnlab/kiln/pxe/wireguard"
)

func runGateRun(ctx context.Context, env *cli, args []string) error {
	fs := newFlags(env, "gate run [--root DIR] [--force] [-v]",
		"Run the gate appliance. This is the uinit of the gate's u-root initramfs\n"+
			"(kiln build puts it there): it loads the initramfs's kernel modules, mounts\n"+
			"the payload (read-only) and /perm found by kiln.payload=PARTUUID=... and\n"+
			"kiln.perm=PARTUUID=... on /proc/cmdline, keeps the clock at or after the\n"+
			"image's build time, configures the lab NIC (the MAC in the payload's\n"+
			"gate.json) from the profile, serves SNTP to the lab and follows the\n"+
			"profile's NTP servers, brings the WireGuard tunnel up when the profile\n"+
			"has one (retried in the background: the lab comes up without the internet),\n"+
			"and serves the lab's netboot (as `kiln gate serve`).\n"+
			"It never returns on its own: a failed phase prints KILN-GATE-FAILED and is\n"+
			"retried every 10 s. It mounts filesystems, sets the clock, the host name\n"+
			"and the network: it refuses to run where PID 1 did not start it, unless --force.")
	root := fs.String("root", "/", "the gate's root directory: every path is below it (debugging; the clock, network and mounts are still the running kernel's)")
	force := fs.Bool("force", false, "run although not started by PID 1 (not the gate's init)")
	fs.Lookup("v").Usage = "log everything on stderr (default: warnings; /perm/logs/gate.log gets info)"
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("gate run takes no arguments")
	}
	if !*force && os.Getpid() != 1 && os.Getppid() != 1 {
		return usagef("gate run is the gate's init (started by PID 1); use --force to run it here anyway")
	}
	a, err := appliance.New(appliance.Config{
		Root:      *root,
		Log:       env.loggerTo(env.stderr, slog.LevelWarn),
		Stdout:    env.stdout,
		Time:      &gateTime{clock: ntp.NewClock(nil)},
		WireGuard: gateWireGuard,
	})
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// gateTime is pxe/ntp as the appliance's TimeService. Sync and Synced are
// called in turn by one goroutine, so last needs no lock.
type gateTime struct {
	clock *ntp.Clock
	last  ntp.Response
}

func (g *gateTime) Serve(ctx context.Context, pc net.PacketConn, log *slog.Logger) error {
	return ntp.Serve(ctx, pc, g.clock, log)
}

func (g *gateTime) Sync(ctx context.Context, servers []string) (time.Duration, error) {
	r, err := ntp.Sync(ctx, servers)
	if err != nil {
		return 0, err
	}
	g.last = r
	return r.Offset, nil
}

func (g *gateTime) Synced() { g.clock.Synced(g.last) }

// gateWireGuard is pxe/wireguard as the appliance's wireguard phase: the
// profile's block and the payload's keys.
func gateWireGuard(ctx context.Context, p *appliance.Payload, log *slog.Logger) error {
	_, tunnel, err := wireguard.Gate(p.Profile)
	if errors.Is(err, wireguard.ErrNoTunnel) {
		return fmt.Errorf("no wireguard block in the profile: %w", appliance.ErrSkipped)
	}
	if err != nil {
		return err
	}
	keys, err := secrets.LoadGateKeys(filepath.Join(p.Dir, payload.SecretsDir, secrets.WireGuardFile))
	if err != nil {
		return err
	}
	return wireguard.Up(ctx, wireguard.Config{Tunnel: *tunnel}, keys, log)
}

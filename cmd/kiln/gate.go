package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/kilnlab/kiln/image/build"
	"github.com/kilnlab/kiln/image/bundle"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/pxe"
	"github.com/kilnlab/kiln/pxe/ntp"
)

const defaultStateDir = "/var/lib/kiln/gate"

func gateCommands() map[string]command {
	return map[string]command{
		"serve":          {"gate serve --bundle DIR --listen IFACE [flags]", "run DHCP (proxy or full), TFTP and HTTP for the lab", runGateServe},
		"machines":       {"gate machines [--state DIR] [--profile P]", "list each machine's install state, first boot and services' health", runGateMachines},
		"reinstall":      {"gate reinstall [--state DIR] [--profile P] MACHINE", "re-arm a machine (name or MAC): its next netboot installs it again", runGateReinstall},
		"wireguard-peer": {"gate wireguard-peer [--secrets DIR] [PROFILE]", "print the VPS side of the gate's WireGuard tunnel (a wg-quick config)", runGateWireGuardPeer},
		"run":            {"gate run [--root DIR] [--force] [-v]", "the gate appliance: the init of the gate's SD image (never returns)", runGateRun},
	}
}

func runGate(ctx context.Context, env *cli, args []string) error {
	cmds := gateCommands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		printUsage(env.stdout, "kiln gate", cmds)
		return nil
	}
	c, ok := cmds[args[0]]
	if !ok {
		printUsage(env.stderr, "kiln gate", cmds)
		return usagef("unknown gate command %q", args[0])
	}
	return c.run(ctx, env, args[1:])
}

// gateFlags are the flags every gate command shares.
type gateFlags struct {
	profile, state string
}

func (g *gateFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&g.profile, "profile", "", "lab profile (default: the embedded reference lab)")
	fs.StringVar(&g.state, "state", defaultStateDir, "state directory: machine states, leases")
}

func (g *gateFlags) plan() (*plan.Plan, error) {
	var args []string
	if g.profile != "" {
		args = []string{g.profile}
	}
	_, pl, err := loadPlan(args)
	return pl, err
}

func runGateServe(ctx context.Context, env *cli, args []string) error {
	fs := newFlags(env, "gate serve --bundle DIR --listen IFACE [flags]",
		"Serve the lab's netboot: DHCP (proxy beside an existing DHCP server, or full),\nTFTP for iPXE and HTTP for scripts, kernels, images and the installer API.\nUnknown MACs are logged and never booted.")
	var g gateFlags
	g.register(fs)
	bundleFlag := fs.String("bundle", "", "netboot bundle: kiln build's output directory, or its bundle/")
	iface := fs.String("listen", "", "lab network interface to serve on, e.g. eth0")
	mode := fs.String("mode", "", "DHCP mode: proxy or full (default: the profile's network.dhcp.mode)")
	port := fs.Int("http-port", pxe.DefaultHTTPPort, "HTTP port")
	addr := fs.String("address", "", "the gate's address on IFACE (default: the profile's gate address)")
	uefi := fs.String("uefi-boot-file", "snponly.efi", "TFTP file for UEFI x64 PXE: snponly.efi (drives the NIC through the firmware, and hands it back cleanly when iPXE exits to the disk) or ipxe.efi (its own drivers)")
	gateSecrets := fs.String("gate-secrets", "", "the gate's share of the lab's secrets: machines' secret configs, the gate's TLS identity (default: kiln build's DIR/"+build.OutGateSecrets+" beside the bundle)")
	serveTime := fs.Bool("ntp", false, "also serve NTP (UDP 123) on the gate's address from this host's clock, as the gate appliance does (a local clock at stratum 10); off by default: a host usually runs its own NTP daemon there")
	fs.Lookup("v").Usage = "log debug detail (every packet)"
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *bundleFlag == "" || *iface == "" || fs.NArg() != 0 {
		fs.Usage()
		return usagef("gate serve needs --bundle and --listen, and no arguments")
	}
	pl, err := g.plan()
	if err != nil {
		return err
	}
	dir, err := openBundle(*bundleFlag, pl)
	if err != nil {
		return err
	}
	if *gateSecrets == "" {
		if d := filepath.Join(filepath.Dir(dir), build.OutGateSecrets); isDir(d) {
			*gateSecrets = d
		}
	}
	cfg := pxe.Config{
		Interface: *iface, Plan: pl, BundleDir: dir, StateDir: g.state, SecretsDir: *gateSecrets,
		HTTPPort: *port, Mode: *mode, UEFIBootFile: *uefi,
		Logger: env.logger(),
	}
	if *addr != "" {
		a, err := netip.ParseAddr(*addr)
		if err != nil {
			return usagef("--address: %v", err)
		}
		cfg.Address = a
	}
	s, err := pxe.New(cfg)
	if err != nil {
		return err
	}
	if *serveTime {
		a := cfg.Address
		if !a.IsValid() {
			if a, err = netip.ParseAddr(pl.Gate.Address); err != nil {
				return fmt.Errorf("--ntp: the gate's address: %w", err)
			}
		}
		if _, err := serveNTP(ctx, netip.AddrPortFrom(a, 123), cfg.Logger); err != nil {
			return err
		}
	}
	return s.Run(ctx)
}

// serveNTP answers NTP on ap until ctx ends (the gate's address, port
// 123): the lab's machines set their clocks from the gate, and a storage
// node's Ceph needs them to agree. It returns the address it listens on.
func serveNTP(ctx context.Context, ap netip.AddrPort, log *slog.Logger) (net.Addr, error) {
	pc, err := net.ListenPacket("udp", ap.String())
	if err != nil {
		return nil, fmt.Errorf("--ntp: %w", err)
	}
	log = log.With("service", "ntp")
	log.Info("serving NTP", "addr", pc.LocalAddr().String())
	go func() {
		if err := ntp.Serve(ctx, pc, ntp.NewClock(nil), log); err != nil {
			log.Error("ntp stopped", "err", err)
		}
	}()
	return pc.LocalAddr(), nil
}

// openBundle returns the netboot bundle of dir, which is either the bundle
// or a `kiln build -o` directory holding it, and refuses a bundle built
// from another profile: its images carry that profile's partition GUIDs
// and identities.
func openBundle(dir string, pl *plan.Plan) (string, error) {
	if _, err := os.Stat(filepath.Join(dir, build.OutBundle, bundle.PlanFile)); err == nil {
		dir = filepath.Join(dir, build.OutBundle)
	}
	return dir, checkBundlePlan(dir, pl)
}

func checkBundlePlan(dir string, pl *plan.Plan) error {
	built, err := os.ReadFile(filepath.Join(dir, bundle.PlanFile))
	if err != nil {
		return fmt.Errorf("bundle %s: %w", dir, err)
	}
	var want bytes.Buffer
	if err := plan.WriteJSON(&want, pl); err != nil {
		return err
	}
	if !bytes.Equal(bytes.TrimSpace(built), bytes.TrimSpace(want.Bytes())) {
		return fmt.Errorf("bundle %s was built from another profile or kiln version than lab %q: rebuild it with kiln build", dir, pl.Lab)
	}
	return nil
}

func runGateMachines(ctx context.Context, env *cli, args []string) error {
	fs := newFlags(env, "gate machines [--state DIR] [--profile P]", "List every machine with its state, last update, first-boot phases and services'\nhealth (as it last reported them) and last progress or error; then the whole\nerror of each failing phase and the detail of each service not ok.")
	var g gateFlags
	g.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("gate machines takes no arguments")
	}
	pl, err := g.plan()
	if err != nil {
		return err
	}
	rows, err := pxe.Machines(pl, g.state)
	if err != nil {
		return err
	}
	return pxe.WriteMachines(env.stdout, rows)
}

func runGateReinstall(ctx context.Context, env *cli, args []string) error {
	fs := newFlags(env, "gate reinstall [--state DIR] [--profile P] MACHINE", "Re-arm MACHINE (name or MAC): its next netboot installs it again.\nA UEFI machine kiln installed boots its disk first: its OS makes its\nnext boot a netboot at its next health report (kiln gate machines\nsays when), then its next power-on installs it; if its OS does not\ncome up, choose network boot in its firmware's boot menu.\nA reinstall rewrites the system disk's table and system partitions\n(ESP, root, state: its secrets are handed out again) and keeps its data:\nthe data disks and the empty partitions (an OSD's) stay byte for byte\n(kiln plan shows ON REINSTALL per disk and partition).")
	var g gateFlags
	g.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("gate reinstall needs exactly one MACHINE")
	}
	pl, err := g.plan()
	if err != nil {
		return err
	}
	row, err := pxe.Reinstall(pl, g.state, fs.Arg(0))
	if errors.Is(err, pxe.ErrUnknownMachine) || errors.Is(err, pxe.ErrNotNetbooted) {
		return usagef("%v", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "%s (%s): %s; its next netboot installs it\n", row.Machine, row.MAC, row.State)
	if row.Detail != "" {
		fmt.Fprintf(env.stdout, "%s: %s\n", row.Machine, row.Detail)
	}
	return nil
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

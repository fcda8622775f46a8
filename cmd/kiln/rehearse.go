package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/pxe/httpd"
	"github.com/kilnlab/kiln/qemu-tests/lab"
	"github.com/kilnlab/kiln/qemu-tests/rehearse"
)

func runRehearse(ctx context.Context, env *cli, args []string) error {
	fs := newFlags(env, "rehearse [--bundle DIR] [--gate vm|host] [--accel auto|kvm|tcg] [PROFILE]",
		"Rehearse the lab in QEMU before a real disk is touched: its LAN as a network\nnamespace (with a dnsmasq ISP box in proxy mode), the gate, and each amd64\nserver as a VM with the profile's MAC, disk serials and disk sizes (sparse\nfiles). With --gate vm (the default) the gate is its own SD image (DIR/<gate>.img)\nbooted on qemu-system-aarch64 -M virt with the kernel, initramfs and cmdline of\nthe image's boot partition: it serves the lab itself, as the Pi will. With\n--gate host, `kiln gate serve` runs on the gate's address instead (any DHCP\nmode). Each server netboots, is installed, boots its role OS, then is powered\non again to show the gate sends it to its disk. Storage nodes start together\n(their Ceph monitors need a quorum), and once all are up the rehearsal waits\n(15 min at most) until each reports Ceph HEALTH_OK with every planned OSD up;\nthe others follow one after the other.\nThe amd64 VMs run under KVM only when it can run their firmware: --accel auto\n(the default, or $KILN_ACCEL) boots SeaBIOS under KVM first and uses TCG when\nthat fails (a paravirtual KVM of a nested cloud, say) or when there is no\n/dev/kvm. The arm64 gate VM always runs under TCG on an amd64 host.\nNeeds root, QEMU and a build of the same profile (kiln build).")
	bundleDir := fs.String("bundle", "out", "kiln build's output directory (or its bundle/, with --gate host)")
	gateKind := fs.String("gate", "vm", "vm: boot the gate's SD image as an arm64 VM; host: run kiln gate serve on the host side")
	out := fs.String("output", "out/rehearse", "serial logs, bridge.pcap, gate log and state")
	only := fs.String("machines", "", "comma-separated machines to rehearse (default: every amd64 server)")
	mode := fs.String("mode", "", "gate DHCP mode: proxy or full (default: the profile's)")
	timeout := fs.Duration("timeout", 45*time.Minute, "deadline for each machine (a storage node brings up Ceph first)")
	accelMode := fs.String("accel", lab.AccelAuto, "accelerator of the amd64 VMs: auto (KVM if it boots firmware, else TCG), kvm or tcg; default $"+lab.AccelEnv+" when set")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if !flagSet(fs, "accel") {
		m, err := lab.AccelModeFromEnv()
		if err != nil {
			return usagef("%v", err)
		}
		*accelMode = m
	}
	if err := lab.CheckAccelMode(*accelMode); err != nil {
		return usagef("--accel %v", err)
	}
	_, pl, err := loadPlan(fs.Args())
	if err != nil {
		return err
	}
	machines, err := pickMachines(pl, *only)
	if err != nil {
		return err
	}
	dir, err := openBundle(*bundleDir, pl)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	accel, err := lab.ChooseAccel(ctx, *accelMode)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stderr, "rehearse: accelerator %s\n", accel)
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	opts := rehearse.Options{Plan: pl, Bundle: abs(dir), Kiln: self, Out: abs(*out), Mode: *mode, Accel: accel, Log: newLogger(env, false)}
	if fs.NArg() == 1 {
		opts.Profile = abs(fs.Arg(0))
	}
	switch *gateKind {
	case "vm":
		img := filepath.Join(*bundleDir, pl.Gate.Name+".img")
		if _, err := os.Stat(img); err != nil {
			return fmt.Errorf("--gate vm needs the gate's image from kiln build: %w", err)
		}
		opts.GateImage = abs(img)
		fmt.Fprintf(env.stderr, "rehearse: booting gate %s from %s (arm64 VM)...\n", pl.Gate.Name, img)
	case "host":
	default:
		return usagef("--gate %q: want vm or host", *gateKind)
	}
	l, err := rehearse.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer l.Close()
	if l.Gate != nil {
		fmt.Fprintf(env.stderr, "  %s serving after %s (kernel boot=%ss); status page %s\n",
			pl.Gate.Name, l.Gate.Serving.Round(100*time.Millisecond), l.Gate.Kernel, l.Gate.URL)
	}
	// Storage nodes come up together: their monitors need a quorum
	// before any of them finishes its first boot. The others follow one
	// by one (TCG has few cores to share).
	var storage, rest []plan.Machine
	for _, m := range machines {
		if m.Role == profiles.RoleStorage {
			storage = append(storage, m)
		} else {
			rest = append(rest, m)
		}
	}
	install := func(m plan.Machine) rehearse.Result {
		fmt.Fprintf(env.stderr, "rehearse %s (%s): netboot, install, first boot, power cycle...\n", m.Name, m.Firmware)
		mctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		r := l.Install(mctx, m, lab.ConfigFor(pl.Lab, m))
		fmt.Fprintf(env.stderr, "  %s: %s\n", m.Name, r.State)
		return r
	}
	// They stay up until the last is up (its monitor needs the others'),
	// then each is power-cycled to show it boots from its disk.
	results := make([]rehearse.Result, len(storage))
	vms := make([]*lab.VM, len(storage))
	var wg sync.WaitGroup
	for i, m := range storage {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fmt.Fprintf(env.stderr, "rehearse %s (%s): netboot, install, first boot with its peers...\n", m.Name, m.Firmware)
			results[i], vms[i] = l.InstallUp(ctx, m, lab.ConfigFor(pl.Lab, m))
		}()
	}
	wg.Wait()
	health, herr := cephHealth(ctx, env, l, pl, storage, vms)
	for i, m := range storage {
		if vms[i] != nil {
			fmt.Fprintf(env.stderr, "rehearse %s: power cycle...\n", m.Name)
			results[i] = l.PowerCycle(ctx, results[i], lab.ConfigFor(pl.Lab, m), vms[i])
		}
		fmt.Fprintf(env.stderr, "  %s: %s\n", m.Name, results[i].State)
	}
	for _, m := range rest {
		results = append(results, install(m))
	}
	errs := []error{herr}
	for _, r := range results {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	fmt.Fprintln(env.stdout)
	rehearse.Summary(env.stdout, results)
	if len(health) > 0 {
		fmt.Fprintf(env.stdout, "\nservices, as each storage node last reported them to the gate:\n")
		for _, line := range health {
			fmt.Fprintf(env.stdout, "  %s\n", line)
		}
	}
	fmt.Fprintf(env.stdout, "\naccelerator: %s\n", accel)
	fmt.Fprintf(env.stdout, "\nserial logs (the gate's too), bridge.pcap and the gate's card: %s\n", opts.Out)
	return errors.Join(errs...)
}

// cephHealthWait bounds the wait for every storage node to report the
// cluster healthy once all are up (their periodic reports come every minute;
// placement groups peer in a few minutes under TCG).
const cephHealthWait = 15 * time.Minute

// cephHealth waits, when the rehearsal runs every storage node of the plan
// and all came up, until each reports HEALTH_OK with every monitor in
// quorum and every planned OSD up and in; it returns their reports.
func cephHealth(ctx context.Context, env *cli, l *rehearse.Lab, pl *plan.Plan, storage []plan.Machine, vms []*lab.VM) ([]string, error) {
	mons, osds := rehearse.CephSize(pl)
	if len(storage) == 0 || len(storage) != mons || slices.Contains(vms, nil) {
		return nil, nil
	}
	names := make([]string, len(storage))
	for i, m := range storage {
		names[i] = m.Name
	}
	fmt.Fprintf(env.stderr, "rehearse: waiting for every storage node to report Ceph healthy (%d monitors, %d OSDs)...\n", mons, osds)
	ctx, cancel := context.WithTimeout(ctx, cephHealthWait)
	defer cancel()
	var lines []string
	err := l.WaitHealth(ctx, names, time.Time{}, rehearse.CephHealthy(mons, osds), func(m string, h *httpd.HealthStatus) {
		line := m + ": " + rehearse.Describe(h)
		fmt.Fprintf(env.stderr, "  %s\n", line)
		lines = append(lines, line)
	})
	return lines, err
}

func pickMachines(pl *plan.Plan, only string) ([]plan.Machine, error) {
	all := rehearse.Machines(pl)
	if only == "" {
		return all, nil
	}
	var out []plan.Machine
	for _, name := range strings.Split(only, ",") {
		m, ok := pl.Machine(name)
		if !ok {
			return nil, usagef("--machines: no machine %q in the plan", name)
		}
		if !slices.ContainsFunc(all, func(a plan.Machine) bool { return a.Name == name }) {
			return nil, usagef("--machines: %s is not an amd64 server; only those are rehearsed", name)
		}
		out = append(out, *m)
	}
	return out, nil
}

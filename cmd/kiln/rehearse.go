package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/pxe/api"
	"github.com/kilnlab/kiln/pxe/httpd"
	"github.com/kilnlab/kiln/qemu-tests/lab"
	"github.com/kilnlab/kiln/qemu-tests/rehearse"
)

// rehearseHelp is kiln rehearse's help; it names servicesWait.
func rehearseHelp() string {
	return fmt.Sprintf(`Rehearse the lab in QEMU before a real disk is touched: its LAN as a network
namespace (with a dnsmasq ISP box in proxy mode), the gate, and each amd64
server as a VM with the profile's MAC, disk serials and disk sizes (sparse
files). With --gate vm (the default) the gate is its own SD image (DIR/<gate>.img)
booted on qemu-system-aarch64 -M virt with the kernel, initramfs and cmdline of
the image's boot partition: it serves the lab itself, as the Pi will. With
--gate host, `+"`kiln gate serve`"+` runs on the gate's address instead (any DHCP
mode). Each server netboots, is installed, boots its role OS, then is powered
on again to show the gate sends it to its disk. Storage nodes start together
(their Ceph monitors need a quorum); once all are up the rehearsal waits
(%d min at most) until each reports the services the plan gives it healthy
(Ceph: HEALTH_OK with every planned OSD up, judged only when every storage
node is rehearsed), then power-cycles them. The others follow one after the
other: up, services healthy, power cycle.
The amd64 VMs run under KVM only when it can run their firmware: --accel auto
(the default, or $KILN_ACCEL) boots SeaBIOS under KVM first and uses TCG when
that fails (a paravirtual KVM of a nested cloud, say) or when there is no
/dev/kvm. The arm64 gate VM always runs under TCG on an amd64 host.
Progress goes to stderr: one line per machine with its state, its first-boot
phase (as the gate reports it) and the time since its power-on, redrawn in
place on a terminal, else one plain line per change. The structured log (VMs,
network, gate) goes to %s in the --output folder, or with -v to stderr
(the progress then comes as plain lines). At the end stdout gets a table of
the machines' results, one of the lab's services as each machine last
reported them, the accelerator and where the logs are.
Needs root, QEMU and a build of the same profile (kiln build).`, int(servicesWait.Minutes()), rehearseLogFile)
}

// rehearseLogFile is the structured log's file in the output folder.
const rehearseLogFile = "rehearse.log"

// rehearseFlags are kiln rehearse's flags.
type rehearseFlags struct {
	bundle, gate, out, only, mode, accel string
	timeout                              time.Duration
}

// parseRehearse parses kiln rehearse's command line; it returns the
// PROFILE argument, if any, with the flags.
func parseRehearse(env *cli, args []string) (rehearseFlags, []string, error) {
	var f rehearseFlags
	fs := newFlags(env, "rehearse [--bundle DIR] [--gate vm|host] [--accel auto|kvm|tcg] [-v] [PROFILE]", rehearseHelp())
	fs.StringVar(&f.bundle, "bundle", "out", "kiln build's output directory (or its bundle/, with --gate host)")
	fs.StringVar(&f.gate, "gate", "vm", "vm: boot the gate's SD image as an arm64 VM; host: run kiln gate serve on the host side")
	fs.StringVar(&f.out, "output", "out/rehearse", "serial logs, bridge.pcap, gate log, state and "+rehearseLogFile)
	fs.StringVar(&f.only, "machines", "", "comma-separated machines to rehearse (default: every amd64 server)")
	fs.StringVar(&f.mode, "mode", "", "gate DHCP mode: proxy or full (default: the profile's)")
	fs.DurationVar(&f.timeout, "timeout", 45*time.Minute, "deadline for each machine, and for the storage nodes together (they wait for one another)")
	fs.StringVar(&f.accel, "accel", lab.AccelAuto, "accelerator of the amd64 VMs: auto (KVM if it boots firmware, else TCG), kvm or tcg; default $"+lab.AccelEnv+" when set")
	fs.Lookup("v").Usage = "the structured log on stderr, not in the --output folder's " + rehearseLogFile + ", with debug detail (the progress then as plain lines)"
	if err := parseFlags(fs, args); err != nil {
		return f, nil, err
	}
	if !flagSet(fs, "accel") {
		m, err := lab.AccelModeFromEnv()
		if err != nil {
			return f, nil, usagef("%v", err)
		}
		f.accel = m
	}
	if err := lab.CheckAccelMode(f.accel); err != nil {
		return f, nil, usagef("--accel %v", err)
	}
	if f.gate != "vm" && f.gate != "host" {
		return f, nil, usagef("--gate %q: want vm or host", f.gate)
	}
	return f, fs.Args(), nil
}

func runRehearse(ctx context.Context, env *cli, args []string) error {
	f, rest, err := parseRehearse(env, args)
	if err != nil {
		return err
	}
	_, pl, err := loadPlan(rest)
	if err != nil {
		return err
	}
	machines, err := pickMachines(pl, f.only)
	if err != nil {
		return err
	}
	opts, err := rehearseOptions(f, rest, pl)
	if err != nil {
		return err
	}
	storage, others := byStart(machines)
	scr := screenOf(env.stdout)
	// With -v the log's lines come between the board's: no redraw.
	scr.tty = scr.tty && !env.verbose
	b := newBoard(scr, time.Now, machineNames(append(slices.Clone(storage), others...)))
	log, closeLog, err := rehearseLog(env, b, opts.Out)
	if err != nil {
		return err
	}
	defer closeLog()
	opts.Log = log
	// The board outlives an interrupt until the machines' failures show.
	pctx, stopProgress := context.WithCancel(context.WithoutCancel(ctx))
	var progress sync.WaitGroup
	// The last redraw leaves the board on screen above what follows.
	done := func() { stopProgress(); progress.Wait() }
	defer done()
	progress.Go(func() { b.refresh(pctx, time.Second) })
	if opts.Accel, err = lab.ChooseAccel(ctx, f.accel); err != nil {
		return err
	}
	b.note("accelerator: %s", opts.Accel)
	l, err := startLab(ctx, b, opts)
	if err != nil {
		return err
	}
	defer l.Close()
	progress.Go(func() { followPhases(pctx, l, b) })
	rh := &rehearsal{l: l, pl: pl, b: b, log: log, timeout: f.timeout}
	results, rows, err := rh.all(ctx, storage, others)
	done()
	report(env.stdout, results, rows, opts)
	return err
}

// startLab starts the lab's network and gate, telling people of the gate.
func startLab(ctx context.Context, b *board, opts rehearse.Options) (*rehearse.Lab, error) {
	gate := opts.Plan.Gate.Name
	if opts.GateImage != "" {
		b.note("booting gate %s from %s (arm64 VM)...", gate, opts.GateImage)
	}
	l, err := rehearse.Start(ctx, opts)
	if err != nil {
		return nil, err
	}
	if l.Gate != nil {
		b.note("%s serving after %s (kernel boot=%ss); status page %s",
			gate, l.Gate.Serving.Round(100*time.Millisecond), l.Gate.Kernel, l.Gate.URL)
	}
	return l, nil
}

// rehearseOptions are the rehearsal's options from the command line but
// its accelerator and log, chosen once the board shows.
func rehearseOptions(f rehearseFlags, rest []string, pl *plan.Plan) (rehearse.Options, error) {
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	dir, err := openBundle(f.bundle, pl)
	if err != nil {
		return rehearse.Options{}, err
	}
	self, err := os.Executable()
	if err != nil {
		return rehearse.Options{}, err
	}
	opts := rehearse.Options{Plan: pl, Bundle: abs(dir), Kiln: self, Out: abs(f.out), Mode: f.mode}
	if len(rest) == 1 {
		opts.Profile = abs(rest[0])
	}
	if f.gate == "vm" {
		img := filepath.Join(f.bundle, pl.Gate.Name+".img")
		if _, err := os.Stat(img); err != nil {
			return opts, fmt.Errorf("--gate vm needs the gate's image from kiln build: %w", err)
		}
		opts.GateImage = abs(img)
	}
	return opts, nil
}

// rehearseLog is the structured log: on stderr with -v, else in the
// output folder's rehearse.log, which the board notes.
func rehearseLog(env *cli, b *board, out string) (*slog.Logger, func() error, error) {
	if env.verbose {
		return env.logger(), func() error { return nil }, nil
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, nil, err
	}
	path := filepath.Join(out, rehearseLogFile)
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, err
	}
	b.note("log: %s (-v: on stderr)", path)
	return env.loggerTo(f, slog.LevelInfo), f.Close, nil
}

// byStart splits machines into the storage nodes, which come up
// together (their monitors need a quorum before any of them finishes its
// first boot), and the others, which follow one by one (TCG has few
// cores to share).
func byStart(machines []plan.Machine) (storage, others []plan.Machine) {
	for _, m := range machines {
		if m.Role == profiles.RoleStorage {
			storage = append(storage, m)
		} else {
			others = append(others, m)
		}
	}
	return storage, others
}

func machineNames(machines []plan.Machine) []string {
	out := make([]string, len(machines))
	for i, m := range machines {
		out[i] = m.Name
	}
	return out
}

// States of a machine on the board, in the order a rehearsal goes.
const (
	stateInstall    = "netboot + install"
	stateFirstBoot  = "first boot"
	statePeers      = "up, waiting for its peers"
	stateServices   = "services"
	stateHealthy    = "healthy"
	stateUnhealthy  = "services not healthy"
	statePowerCycle = "power cycle"
)

// rehearsal runs the chosen machines on a started lab, showing each on
// the board.
type rehearsal struct {
	l       *rehearse.Lab
	pl      *plan.Plan
	b       *board
	log     *slog.Logger
	timeout time.Duration // for each machine, and for the storage nodes together
}

// all rehearses the storage nodes together, then the others one by one;
// it returns their results and their services' rows.
func (r *rehearsal) all(ctx context.Context, storage, others []plan.Machine) ([]rehearse.Result, []rehearse.Row, error) {
	results, rows, err := r.storage(ctx, storage)
	errs := []error{err}
	for _, m := range others {
		res, hr, err := r.one(ctx, m)
		results, rows, errs = append(results, res), append(rows, hr...), append(errs, err)
	}
	for _, res := range results {
		errs = append(errs, res.Err)
	}
	return results, rows, errors.Join(errs...)
}

// storage brings the storage nodes up together. They stay up until the
// last is up (its monitor needs the others'), until every one's services
// are healthy, then each is power-cycled to show it boots from its disk.
func (r *rehearsal) storage(ctx context.Context, ms []plan.Machine) ([]rehearse.Result, []rehearse.Row, error) {
	// One deadline for the group: without one, each console wait has
	// lab.DefaultWaitTimeout, shorter than three storage nodes' first
	// boots (Ceph, Consul, Vault) take under TCG.
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	results := make([]rehearse.Result, len(ms))
	vms := make([]*lab.VM, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Go(func() {
			r.b.powerOn(m.Name, stateInstall)
			results[i], vms[i] = r.l.InstallUp(ctx, m, lab.ConfigFor(r.pl.Lab, m))
			r.up(results[i], statePeers)
		})
	}
	wg.Wait()
	rows, err := r.servicesHealth(ctx, ms, results, vms)
	for i, m := range ms {
		if vms[i] != nil {
			r.b.set(m.Name, statePowerCycle)
			results[i] = r.l.PowerCycle(ctx, results[i], lab.ConfigFor(r.pl.Lab, m), vms[i])
		}
		r.b.finish(m.Name, endState(results[i], rows))
	}
	return results, rows, err
}

// one rehearses m alone under its deadline: up, services healthy, power
// cycle.
func (r *rehearsal) one(ctx context.Context, m plan.Machine) (rehearse.Result, []rehearse.Row, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	r.b.powerOn(m.Name, stateInstall)
	res, vm := r.l.InstallUp(ctx, m, lab.ConfigFor(r.pl.Lab, m))
	r.up(res, stateFirstBoot)
	var rows []rehearse.Row
	var err error
	if vm != nil {
		rows, err = r.servicesHealth(ctx, []plan.Machine{m}, []rehearse.Result{res}, []*lab.VM{vm})
		r.b.set(m.Name, statePowerCycle)
		res = r.l.PowerCycle(ctx, res, lab.ConfigFor(r.pl.Lab, m), vm)
	}
	r.b.finish(m.Name, endState(res, rows))
	return res, rows, err
}

// up shows a machine InstallUp returned: next, or its failure.
func (r *rehearsal) up(res rehearse.Result, next string) {
	if res.Err != nil {
		r.b.finish(res.Machine, endState(res, nil))
		return
	}
	r.b.set(res.Machine, next)
}

// endState is a machine's last state on the board: its result, and
// whether the services it runs were found healthy (rows: the
// rehearsal's, when its services were judged).
func endState(res rehearse.Result, rows []rehearse.Row) string {
	if res.Err != nil {
		return "FAILED: " + strings.TrimPrefix(res.State, "failed: ")
	}
	for _, row := range rows {
		if row.Machine == res.Machine && row.Healthy == 0 {
			return res.State + "; " + stateUnhealthy
		}
	}
	return res.State
}

// report writes the results and the services' table for people.
func report(w io.Writer, results []rehearse.Result, rows []rehearse.Row, opts rehearse.Options) {
	fmt.Fprintln(w)
	rehearse.Summary(w, results)
	if len(rows) > 0 {
		fmt.Fprintf(w, "\nthe lab's services, as each machine last reported them to the gate:\n")
		rehearse.Table(w, rows)
	}
	fmt.Fprintf(w, "\naccelerator: %s\n", opts.Accel)
	fmt.Fprintf(w, "\nserial logs (the gate's too), bridge.pcap and the gate's card: %s\n", opts.Out)
}

// phasePoll is how often the board asks the gate for the machines'
// first-boot phases: a phase lasts from seconds to minutes.
const phasePoll = 3 * time.Second

// followPhases shows each machine's first-boot phase as the gate reports
// it until ctx ends. A reported phase is the first sign that a machine's
// role OS runs (InstallUp returns only once it has sent its first-boot
// report): it is past its install.
func followPhases(ctx context.Context, l *rehearse.Lab, b *board) {
	t := time.NewTicker(phasePoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// A failed poll is the next one's to retry: the rehearsal
		// itself says when the gate stops answering.
		phases, err := l.Phases()
		if err != nil {
			continue
		}
		for _, m := range slices.Sorted(maps.Keys(phases)) {
			b.phase(m, phaseText(phases[m]), stateInstall, stateFirstBoot)
		}
	}
}

// phaseText is a phase on the board: its name while it runs, else with
// its status ("ceph done").
func phaseText(p httpd.PhaseStatus) string {
	if p.Status == api.PhaseRunning {
		return p.Name
	}
	return p.Name + " " + p.Status
}

// servicesWait bounds the wait for machines' services to be healthy once
// they are up: their reports come every minute; Ceph's placement groups
// peer and Consul elects a leader in a few minutes under TCG, then Vault
// is unsealed by the gate.
const servicesWait = 20 * time.Minute

// servicesHealth waits until each of machines (up in vms, started as
// results say) reports every service the plan gives it healthy, and
// returns their rows of the whole-lab table. A Ceph cluster is only
// judged when the rehearsal runs all its storage nodes and all came up.
func (r *rehearsal) servicesHealth(ctx context.Context, machines []plan.Machine, results []rehearse.Result, vms []*lab.VM) ([]rehearse.Row, error) {
	if len(machines) == 0 || slices.Contains(vms, nil) {
		return nil, nil
	}
	if mons, _ := rehearse.CephSize(r.pl); machines[0].Role == profiles.RoleStorage && len(machines) != mons {
		return nil, nil
	}
	started := map[string]time.Time{} // of the machines that run services
	for i, m := range machines {
		if len(m.Services) > 0 {
			started[m.Name] = results[i].Started
			r.b.set(m.Name, stateServices)
		}
	}
	if len(started) == 0 {
		return nil, nil
	}
	wctx, cancel := context.WithTimeout(ctx, servicesWait)
	defer cancel()
	// One machine after the other, under one deadline: they all run
	// meanwhile, so the wait is the slowest's.
	healthy := map[string]time.Duration{}
	var err error
	for _, m := range machines {
		if _, ok := started[m.Name]; !ok {
			continue
		}
		herr := r.l.WaitHealth(wctx, []string{m.Name}, time.Time{}, rehearse.ServicesHealthy(r.pl, m), func(name string, h *httpd.HealthStatus) {
			healthy[name] = healthyAfter(h, started[name])
			r.b.set(name, stateHealthy)
			r.log.Info("services healthy", "vm", name, "after", healthy[name].Round(time.Second), "report", rehearse.Describe(h))
		})
		if herr != nil {
			r.b.set(m.Name, stateUnhealthy)
		}
		err = errors.Join(err, herr)
	}
	var rows []rehearse.Row
	for _, m := range machines {
		h, herr := r.l.Health(m.Name)
		err = errors.Join(err, herr)
		rows = append(rows, rehearse.Rows(m, h, healthy[m.Name])...)
	}
	return rows, err
}

// healthyAfter is the time from started to report h: the gate's time of
// the report, not this poll's (which may come after a wait on another
// machine).
func healthyAfter(h *httpd.HealthStatus, started time.Time) time.Duration {
	if d := h.At.Sub(started); d > 0 {
		return d
	}
	return time.Since(started)
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

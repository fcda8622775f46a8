// Package rehearse owns the rehearsal of a lab: its LAN as a network
// namespace (with a dnsmasq ISP box in proxy mode), the gate — either its
// own SD image booted as an arm64 QEMU VM (what the real Pi runs: the same
// kernel, initramfs and command line, read from the image's boot
// partition), or kiln's gate service run on the host side of the LAN —
// and each amd64 server as a QEMU VM with its profile's MAC, disk serials
// and sizes, watched from the first netboot through the install to its
// role OS's first boot, and once more through a PXE boot that must go to
// its disk. `kiln rehearse` and the end-to-end tests both run it.
package rehearse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/pxe"
	"github.com/kilnlab/kiln/pxe/api"
	"github.com/kilnlab/kiln/pxe/httpd"
	"github.com/kilnlab/kiln/pxe/state"
	"github.com/kilnlab/kiln/qemu-tests/lab"
)

// Options say what to rehearse.
type Options struct {
	Plan *plan.Plan
	// Profile is the profile file the gate loads; "" means the embedded
	// default (the plan must have been computed from the same profile).
	Profile string
	Bundle  string // the netboot bundle (kiln build's DIR/bundle)
	Kiln    string // the kiln binary that runs `gate serve`
	// GateImage is the gate's SD image (kiln build's DIR/<gate>.img). When
	// set, the gate is a VM booted from it and serves the lab itself: no
	// kiln process on the host serves anything, and Mode must be the
	// profile's (the image carries it). When empty, `kiln gate serve`
	// runs in the lab's namespace on the gate's address.
	GateImage string
	Out       string // serial logs, pcap, gate log and state
	// Mode is the gate's DHCP mode; "" means the plan's. In proxy mode a
	// dnsmasq ISP box hands out the leases.
	Mode string
	// Accel is the accelerator of the amd64 VMs (lab.ChooseAccel); the
	// zero value is TCG.
	Accel lab.Accel
	Log   *slog.Logger
}

// Lab is a running rehearsal LAN with its gate.
type Lab struct {
	opts Options
	Net  *lab.Network
	// Gate is the gate VM's boot, when Options.GateImage was set.
	Gate *GateBoot

	gateVM  *lab.VM
	gateCfg lab.VMConfig
	gateOns int // the gate VM's power-ons so far
}

// GateBoot is how the gate VM came up.
type GateBoot struct {
	Serving time.Duration // QEMU start to KILN-GATE-SERVING
	Kernel  string        // the marker's boot=: seconds since the kernel started
	URL     string        // the gate's HTTP service (status page)
	Line    string        // the marker line
}

// Start brings up the LAN, the ISP box (proxy mode) and the gate service.
func Start(ctx context.Context, o Options) (*Lab, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Mode == "" {
		o.Mode = o.Plan.Network.DHCPMode
	}
	if o.GateImage != "" && o.Mode != o.Plan.Network.DHCPMode {
		return nil, fmt.Errorf("the gate image serves the profile's DHCP mode %q, not %q", o.Plan.Network.DHCPMode, o.Mode)
	}
	gateAddr, err := GatePrefix(o.Plan)
	if err != nil {
		return nil, err
	}
	hostAddr := gateAddr
	if o.GateImage != "" {
		// The gate VM owns the gate's address; the host side of the LAN
		// (tests reading the status page) takes another.
		if hostAddr, err = lab.HostAddr(gateAddr); err != nil {
			return nil, err
		}
	}
	n, err := lab.NewNetwork(ctx, lab.NetworkConfig{OutDir: o.Out, GateAddr: hostAddr.String(), Logger: o.Log, Accel: o.Accel})
	if err != nil {
		return nil, err
	}
	l := &Lab{opts: o, Net: n}
	if err := l.startServices(ctx); err != nil {
		n.Close()
		return nil, err
	}
	return l, nil
}

func (l *Lab) startServices(ctx context.Context) error {
	if l.opts.Mode == profiles.DHCPProxy {
		if _, err := l.Net.StartISP(ctx, lab.ISPConfig{Router: l.opts.Plan.Network.Gateway}); err != nil {
			return fmt.Errorf("ISP box: %w", err)
		}
	}
	if l.opts.GateImage != "" {
		return l.startGateVM(ctx)
	}
	// --ntp: the gate appliance serves time, and the machines' first
	// boots (a storage node's Ceph) need it.
	args := []string{"gate", "serve", "--bundle", l.opts.Bundle, "--listen", l.Net.Bridge(),
		"--state", filepath.Join(l.opts.Out, "gate-state"), "--mode", l.opts.Mode, "--ntp"}
	if l.opts.Profile != "" {
		args = append(args, "--profile", l.opts.Profile)
	}
	cmd := l.Net.Command(l.opts.Kiln, args...)
	logFile, err := os.Create(filepath.Join(l.opts.Out, "gate.log"))
	if err != nil {
		return fmt.Errorf("gate: %w", err)
	}
	// The child has its own descriptor: ours can go now.
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	proc, err := l.Net.Start("gate", cmd)
	if err != nil {
		return fmt.Errorf("gate: %w", err)
	}
	return l.waitServing(ctx, proc)
}

// waitServing waits until kiln gate serve answers on its HTTP port: a
// machine powered on before that would find no one to netboot from.
func (l *Lab) waitServing(ctx context.Context, proc *lab.Process) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		_, err := l.Net.Get(l.StatusURL())
		if err == nil {
			return nil
		}
		select {
		case <-proc.Done():
			return fmt.Errorf("gate: kiln gate serve exited before serving (see %s)", filepath.Join(l.opts.Out, "gate.log"))
		case <-ctx.Done():
			return fmt.Errorf("gate: not serving %s: %w", l.StatusURL(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// gateDeadline bounds the gate VM's boot to serving (TCG arm64: about a
// minute on two loaded cores).
const gateDeadline = 5 * time.Minute

// serving is the appliance's marker once the netboot service listens.
var serving = regexp.MustCompile(`KILN-GATE-SERVING addr=\S+ http=(\S+) boot=(\S+)`)

// startGateVM boots the gate's SD image and waits until it serves.
func (l *Lab) startGateVM(ctx context.Context) error {
	g, ok := l.opts.Plan.Machine(l.opts.Plan.Gate.Name)
	if !ok {
		return fmt.Errorf("gate %s is not among the plan's machines", l.opts.Plan.Gate.Name)
	}
	cfg, err := lab.GateVMConfig(ctx, g.Name, g.MAC, l.opts.GateImage, l.opts.Out)
	if err != nil {
		return fmt.Errorf("gate VM: %w", err)
	}
	cfg.FailOn = append(lab.DeadEnds(), regexp.MustCompile(`KILN-GATE-FAILED .*`))
	l.gateCfg = cfg
	return l.bootGate(ctx, cfg)
}

// bootGate starts the gate VM of cfg and waits until it serves.
func (l *Lab) bootGate(ctx context.Context, cfg lab.VMConfig) error {
	start := time.Now()
	vm, err := l.Net.NewVM(ctx, cfg)
	if err == nil {
		err = vm.Start(ctx)
	}
	if err != nil {
		return fmt.Errorf("gate VM: %w", err)
	}
	l.gateVM = vm
	l.gateOns++
	wctx, cancel := context.WithTimeout(ctx, gateDeadline)
	defer cancel()
	line, err := vm.WaitFor(wctx, serving)
	if err != nil {
		return fmt.Errorf("gate VM %s: %w\n--- serial (last lines) ---\n%s", cfg.Name, err, vm.Tail(40))
	}
	m := serving.FindStringSubmatch(line)
	l.Gate = &GateBoot{Serving: time.Since(start), URL: m[1], Kernel: m[2], Line: line}
	l.opts.Log.Info("gate serving", "gate", cfg.Name, "after", l.Gate.Serving, "line", line)
	return nil
}

// CutGate powers the gate VM off, no shutdown: a power cut.
func (l *Lab) CutGate() error {
	if l.gateVM == nil {
		return errors.New("no gate VM: the gate is kiln gate serve")
	}
	l.gateVM.Stop()
	return nil
}

// PowerOnGate boots the gate VM again from its card, as it was when its
// power was cut, and waits until it serves.
func (l *Lab) PowerOnGate(ctx context.Context) error {
	if l.gateVM == nil {
		return errors.New("no gate VM: the gate is kiln gate serve")
	}
	cfg := l.gateCfg.On(l.gateVM.Hardware())
	cfg.Name = fmt.Sprintf("%s-on%d", l.gateCfg.Name, l.gateOns+1)
	return l.bootGate(ctx, cfg)
}

// GateCard is the gate VM's SD card image (read it while the VM is off).
func (l *Lab) GateCard() string {
	if l.gateVM == nil {
		return ""
	}
	return l.gateVM.DiskPaths()[0]
}

// Close stops every VM and service and removes the namespaces.
func (l *Lab) Close() error { return l.Net.Close() }

// GatePrefix is the gate's address with the lab network's prefix length.
func GatePrefix(p *plan.Plan) (netip.Prefix, error) {
	cidr, err := netip.ParsePrefix(p.Network.CIDR)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("lab network: %w", err)
	}
	a, err := netip.ParseAddr(p.Gate.Address)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("gate address: %w", err)
	}
	return netip.PrefixFrom(a, cidr.Bits()), nil
}

// Markers the rehearsal waits for on a serial console.
var (
	installStart = regexp.MustCompile(`KILN-INSTALL-START (\S+)`)
	installOK    = regexp.MustCompile(`KILN-INSTALL-OK (\S+)`)
	bootMode     = regexp.MustCompile(`KILN-BOOTMODE \S+`)
	// refusals end a rehearsal at once instead of waiting for a deadline.
	refusals = []*regexp.Regexp{
		regexp.MustCompile(`KILN-INSTALL-REFUSED .*`),
		regexp.MustCompile(`KILN-INSTALL-FAILED .*`),
	}
)

func booted(m plan.Machine) *regexp.Regexp {
	return regexp.MustCompile(`KILN-BOOTED host=` + regexp.QuoteMeta(m.Hostname) + ` addr=` + regexp.QuoteMeta(m.Address))
}

// Result is one machine's rehearsal.
type Result struct {
	Machine  string
	Firmware string
	Started  time.Time     // the first power-on
	State    string        // installed-and-booted, refused, failed, ...
	Install  time.Duration // VM start to KILN-INSTALL-OK
	Booted   time.Duration // VM start to KILN-BOOTED in the role OS
	Reboot   time.Duration // second power-on to boot mode from disk
	Boots    int
	Detail   string // the marker line, or the error
	Err      error
}

// ErrRefused is returned (wrapped) when the installer refused the machine.
var ErrRefused = errors.New("installer refused")

// Install runs machine m from power-on to its role OS: netboot, install,
// reboot, KILN-BOOTED; then powers it off and on again and checks that this
// boot goes to its disk (boot mode) and not to a reinstall: under BIOS
// the gate sends its netboot there, under UEFI its disk comes first. cfg is the
// VM, normally lab.ConfigFor(plan.Lab, m), which tests adjust.
func (l *Lab) Install(ctx context.Context, m plan.Machine, cfg lab.VMConfig) Result {
	r, vm := l.InstallUp(ctx, m, cfg)
	if r.Err != nil {
		return r
	}
	return l.PowerCycle(ctx, r, cfg, vm)
}

// InstallUp runs machine m from power-on to its role OS and its first-boot
// report on the gate, and leaves it running: Ceph's storage nodes must stay
// up together for their monitors' quorum. PowerCycle then powers it off
// and on again. On error the VM is already stopped.
func (l *Lab) InstallUp(ctx context.Context, m plan.Machine, cfg lab.VMConfig) (Result, *lab.VM) {
	r := Result{Machine: m.Name, Firmware: m.Firmware}
	before, err := l.bootReport(m.Name)
	if err != nil {
		return r.fail("gate status", err), nil
	}
	start := time.Now()
	r.Started = start
	cfg.FailOn = append(cfg.FailOn, refusals...)
	vm, err := l.Net.NewVM(ctx, cfg)
	if err == nil {
		err = vm.Start(ctx)
	}
	if err != nil {
		return r.fail("start", err), nil
	}
	fail := func(step string, err error) (Result, *lab.VM) {
		r := r.failVM(step, vm, err)
		vm.Stop()
		return r, nil
	}
	if _, err := vm.WaitFor(ctx, installOK); err != nil {
		return fail("install", err)
	}
	r.Install = time.Since(start)
	line, err := vm.WaitFor(ctx, booted(m))
	if err != nil {
		return fail("first boot", err)
	}
	r.Booted, r.Detail = time.Since(start), line
	if err := l.waitReported(ctx, m.Name, before); err != nil {
		return fail("first-boot report", err)
	}
	return r, vm
}

// PowerCycle powers off m's VM from InstallUp and boots it again from
// cold: it must boot its disk (PowerOn).
func (l *Lab) PowerCycle(ctx context.Context, r Result, cfg lab.VMConfig, vm *lab.VM) Result {
	vm.Stop()
	r.Boots = vm.Boots()
	return l.powerCycle(ctx, r, cfg, vm.Hardware())
}

// reportWait bounds the wait for a machine's first-boot report to reach
// the gate after its console said KILN-BOOTED (seconds, even under TCG).
const reportWait = 2 * time.Minute

// bootReport is the gate's record of machine's last first-boot report
// ("" when none), read from its status.json across the lab LAN.
func (l *Lab) bootReport(machine string) (string, error) {
	st, err := l.status()
	if err != nil {
		return "", err
	}
	for _, m := range st.Machines {
		if m.Name == machine && m.Booted != nil {
			return m.Booted.At.String() + " " + m.Booted.Hostname + " " + m.Booted.Address, nil
		}
	}
	return "", nil
}

// waitReported waits until the gate records a first-boot report of
// machine other than before: the role OS reached the gate's TLS port with
// its own certificate (an unauthenticated report is refused).
func (l *Lab) waitReported(ctx context.Context, machine, before string) error {
	ctx, cancel := context.WithTimeout(ctx, reportWait)
	defer cancel()
	for {
		now, err := l.bootReport(machine)
		if err == nil && now != "" && now != before {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the gate has no first-boot report from %s (last: %q, %v): %w", machine, now, err, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// StatusURL is the gate's status.json: the gate VM's, or kiln gate
// serve's on the plan's gate address.
func (l *Lab) StatusURL() string {
	if l.Gate != nil {
		return strings.TrimSuffix(l.Gate.URL, "/") + "/status.json"
	}
	return "http://" + net.JoinHostPort(l.opts.Plan.Gate.Address, strconv.Itoa(pxe.DefaultHTTPPort)) + "/status.json"
}

// powerCycle boots the installed machine again from cold: it must boot
// its disk (PowerOn).
func (l *Lab) powerCycle(ctx context.Context, r Result, cfg lab.VMConfig, hw lab.Hardware) Result {
	cfg.Name += "-again"
	start := time.Now()
	vm, err := l.PowerOn(ctx, cfg, hw)
	if err != nil {
		return r.fail("power cycle", err)
	}
	defer vm.Stop()
	r.Reboot = time.Since(start)
	r.Boots += vm.Boots()
	r.State = "installed, booted"
	return r
}

// PowerOn boots an installed machine from cold on its hardware (an
// earlier VM's disks and firmware variables) and leaves it running once
// its kernel is up from disk, not an install: under BIOS PXE comes first
// and the gate sends it to its disk; under UEFI the installer put the
// disk first (installer/efiboot). The caller stops the VM.
func (l *Lab) PowerOn(ctx context.Context, cfg lab.VMConfig, hw lab.Hardware) (*lab.VM, error) {
	cfg = cfg.On(hw)
	cfg.FailOn = append(slices.Clone(cfg.FailOn), installStart)
	vm, err := l.Net.NewVM(ctx, cfg)
	if err == nil {
		err = vm.Start(ctx)
	}
	if err != nil {
		return nil, err
	}
	if _, err := vm.WaitFor(ctx, bootMode); err != nil {
		err = fmt.Errorf("%w\n--- %s serial (last lines) ---\n%s", err, vm.Name(), vm.Tail(30))
		vm.Stop()
		return nil, err
	}
	return vm, nil
}

// Reinstall re-arms machine on the gate, as its operator would with
// `kiln gate reinstall`: its next netboot installs it again. Only a gate
// that kiln gate serve runs on this host can be told (the gate VM's
// states are on its card).
func (l *Lab) Reinstall(ctx context.Context, machine string) error {
	if l.opts.GateImage != "" {
		return errors.New("reinstall: the gate VM's states are on its card; rehearse with kiln gate serve")
	}
	args := []string{"gate", "reinstall", "--state", filepath.Join(l.opts.Out, "gate-state")}
	if l.opts.Profile != "" {
		args = append(args, "--profile", l.opts.Profile)
	}
	out, err := exec.CommandContext(ctx, l.opts.Kiln, append(args, machine)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("kiln gate reinstall %s: %w: %s", machine, err, out)
	}
	return nil
}

// WaitHealth waits until each of machines has sent the gate a health
// report, received after since, that accept takes (accept returns "" or
// why not); took is told of each accepted report as it comes. The error
// says, per machine still waited for, why its last report was not taken.
func (l *Lab) WaitHealth(ctx context.Context, machines []string, since time.Time, accept func(*httpd.HealthStatus) string, took func(machine string, h *httpd.HealthStatus)) error {
	pending := slices.Clone(machines)
	why := map[string]string{}
	for {
		for _, m := range slices.Clone(pending) {
			h, err := l.Health(m)
			switch {
			case err != nil:
				why[m] = err.Error()
			case h == nil || h.At.Before(since):
				why[m] = "no report since " + since.Format(time.TimeOnly)
			default:
				if why[m] = accept(h); why[m] == "" {
					took(m, h)
					pending = slices.DeleteFunc(pending, func(s string) bool { return s == m })
				}
			}
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			var errs []error
			for _, m := range pending {
				errs = append(errs, fmt.Errorf("%s: %s", m, why[m]))
			}
			return fmt.Errorf("health reports: %w: %w", ctx.Err(), errors.Join(errs...))
		case <-time.After(5 * time.Second):
		}
	}
}

// CephHealthy takes a storage node's report of HEALTH_OK with 3 monitors
// (or all of them, when fewer) in quorum, osds OSDs up and in, and every
// self-test object read back.
func CephHealthy(mons, osds int) func(*httpd.HealthStatus) string {
	wantOSDs := fmt.Sprintf("OSDs %d up %d in of %d", osds, osds, osds)
	wantMons := fmt.Sprintf("monitors %d/%d in quorum", mons, mons)
	return func(h *httpd.HealthStatus) string {
		ceph, data := Service(h, "ceph"), Service(h, "ceph-data")
		switch {
		case ceph.Status != "ok" || !strings.HasPrefix(ceph.Detail, "HEALTH_OK:") || !strings.Contains(ceph.Detail, wantOSDs) || !strings.Contains(ceph.Detail, wantMons):
			return fmt.Sprintf("ceph %s (%s), want HEALTH_OK, %s, %s", ceph.Status, ceph.Detail, wantMons, wantOSDs)
		case data.Status != "ok":
			return "ceph-data " + data.Status + " (" + data.Detail + ")"
		}
		return ""
	}
}

// Service is the service name of a health report ("missing" when the
// report has none).
func Service(h *httpd.HealthStatus, name string) httpd.ServiceStatus {
	for _, s := range h.Services {
		if s.Name == name {
			return s
		}
	}
	return httpd.ServiceStatus{Name: name, Status: "missing"}
}

// Describe is a health report in one line.
func Describe(h *httpd.HealthStatus) string {
	var parts []string
	for _, s := range h.Services {
		parts = append(parts, s.Name+"="+s.Status+" ("+s.Detail+")")
	}
	return strings.Join(parts, "; ")
}

// CephSize is the lab's Ceph as planned: its monitors (one per storage
// node) and OSDs (each storage node's empty partitions and data disks).
func CephSize(p *plan.Plan) (mons, osds int) {
	for _, m := range p.Machines {
		if m.Role != profiles.RoleStorage {
			continue
		}
		mons++
		for _, d := range m.Disks {
			if d.Layout == nil {
				osds++
				continue
			}
			for _, pt := range d.Layout.Partitions {
				if pt.Content == plan.ContentEmpty {
					osds++
				}
			}
		}
	}
	return mons, osds
}

// Health is machine's last health report on the gate; nil when it has
// sent none.
func (l *Lab) Health(machine string) (*httpd.HealthStatus, error) {
	st, err := l.status()
	if err != nil {
		return nil, err
	}
	for _, m := range st.Machines {
		if m.Name == machine {
			return m.Health, nil
		}
	}
	return nil, fmt.Errorf("gate status has no machine %s", machine)
}

// Phases is each machine's current first-boot phase as the gate reports
// it: the one running, else one failed, else the last done. A machine
// that has none since it was last installed is absent: until its install
// begins, the gate keeps the phases of the one before.
func (l *Lab) Phases() (map[string]httpd.PhaseStatus, error) {
	st, err := l.status()
	if err != nil {
		return nil, err
	}
	out := map[string]httpd.PhaseStatus{}
	for _, m := range st.Machines {
		if m.State != state.Installed {
			continue
		}
		if p, ok := currentPhase(m.Phases); ok {
			out[m.Name] = p
		}
	}
	return out, nil
}

// currentPhase is the phase of phases (in plan order) a machine is at.
func currentPhase(phases []httpd.PhaseStatus) (httpd.PhaseStatus, bool) {
	for _, want := range []string{api.PhaseRunning, api.PhaseFailed} {
		if i := slices.IndexFunc(phases, func(p httpd.PhaseStatus) bool { return p.Status == want }); i >= 0 {
			return phases[i], true
		}
	}
	for _, p := range slices.Backward(phases) {
		if p.Status == api.PhaseDone {
			return p, true
		}
	}
	return httpd.PhaseStatus{}, false
}

// status is the gate's status.json, read across the lab LAN.
func (l *Lab) status() (httpd.Status, error) {
	body, err := l.Net.Get(l.StatusURL())
	if err != nil {
		return httpd.Status{}, fmt.Errorf("gate status: %w", err)
	}
	var st httpd.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return httpd.Status{}, fmt.Errorf("gate status.json: %w", err)
	}
	return st, nil
}

func (r Result) fail(step string, err error) Result {
	r.State, r.Err = "failed: "+step, fmt.Errorf("%s: %s: %w", r.Machine, step, err)
	r.Detail = err.Error()
	return r
}

// failVM records a VM's failure with the tail of its serial console.
func (r Result) failVM(step string, vm *lab.VM, err error) Result {
	if errors.Is(err, lab.ErrDeadEnd) {
		r.State = "refused or failed"
		err = fmt.Errorf("%w: %v", ErrRefused, err)
	}
	r = r.fail(step, err)
	r.Err = fmt.Errorf("%w\n--- %s serial (last lines) ---\n%s", r.Err, vm.Name(), vm.Tail(30))
	return r
}

// Summary writes the results as a table for people.
func Summary(w io.Writer, rs []Result) {
	fmt.Fprintf(w, "%-12s %-8s %-22s %9s %9s %9s %6s\n", "MACHINE", "FIRMWARE", "STATE", "INSTALL", "BOOTED", "REBOOT", "BOOTS")
	for _, r := range rs {
		fmt.Fprintf(w, "%-12s %-8s %-22s %9s %9s %9s %6d\n", r.Machine, r.Firmware, r.State,
			secs(r.Install), secs(r.Booted), secs(r.Reboot), r.Boots)
	}
}

func secs(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return d.Round(100 * time.Millisecond).String()
}

// Machines returns the plan's machines a rehearsal boots: the amd64 PCs.
func Machines(p *plan.Plan) []plan.Machine {
	var out []plan.Machine
	for _, m := range p.Machines {
		if m.Board == profiles.BoardPC && m.Arch == "amd64" {
			out = append(out, m)
		}
	}
	return out
}

// Package vmboot measures a whole netboot in QEMU: power-on of a BIOS VM
// until the installer's first console line ("Welcome to u-root!"), the
// same kernel and initramfs served by kiln (kiln gate serve in full DHCP
// mode: DHCP, then iPXE's script, kernel and initramfs over HTTP) and by
// dnsmasq as a user would set it up (DHCP and TFTP: an iPXE script, the
// kernel and the initramfs all over TFTP), alternating over rounds. Both
// lab networks answer iPXE's IPv6 router solicitations (kiln in full
// mode, dnsmasq with --enable-ra), so neither side waits for a router.
package vmboot

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/kilnlab/kiln/image/bundle"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/pxe/httpd"
	"github.com/kilnlab/kiln/qemu-tests/bench/netboot"
	"github.com/kilnlab/kiln/qemu-tests/lab"
	"github.com/kilnlab/kiln/qemu-tests/rehearse"
)

// Options say what to boot and how often.
type Options struct {
	Plan    *plan.Plan
	Profile string // the profile file of Plan; "" for the embedded default
	Bundle  string // kiln build's DIR/bundle
	Kiln    string // the kiln binary
	Machine string // the plan machine booted (amd64); "" picks the first
	Out     string
	Rounds  int
	Accel   lab.Accel
	// Progress gets a line per boot.
	Progress io.Writer
}

// installerUp is the installer's first console line.
var installerUp = regexp.MustCompile(`Welcome to u-root`)

// fetched is iPXE's line for the initramfs fetched, its last before the
// kernel starts, over HTTP (kiln) or TFTP (dnsmasq).
func fetched(m plan.Machine) *regexp.Regexp {
	return regexp.MustCompile(regexp.QuoteMeta(filepath.Base(bundle.Initramfs(m.Arch))) + `\.\.\. ok`)
}

// Servers in the report's order.
var Servers = []string{"kiln", "dnsmasq"}

// Run boots the machine Rounds times per server and returns two figures:
// power-on to the installer's first line (the goal's), and power-on to
// the initramfs fetched (firmware and the server's part, without the
// kernel's start, which is the same on both sides).
func Run(ctx context.Context, o Options) ([]netboot.Figure, error) {
	notes := []string{
		"kiln: kiln gate serve, full DHCP mode: DHCP, then the iPXE script, the kernel and the initramfs over HTTP",
		"dnsmasq: DHCP and TFTP: an iPXE script, the kernel and the initramfs over TFTP",
	}
	up := netboot.Figure{
		Name:    "Netboot to installer: a BIOS VM's power-on to the installer's first console line, the same kernel and initramfs (s; lower is better)",
		Servers: Servers, MiBps: map[string][]float64{}, Unit: "s", LowerBetter: true, Notes: notes,
	}
	fetch := netboot.Figure{
		Name:    "Netboot, the server's part: the same VM's power-on to iPXE's line for the initramfs fetched, before the kernel starts (s; lower is better)",
		Servers: Servers, MiBps: map[string][]float64{}, Unit: "s", LowerBetter: true,
		Notes: []string{"the firmware's start (SeaBIOS, the NIC's iPXE ROM and its banners) is in both sides' figure, the same"},
	}
	m, err := machine(o.Plan, o.Machine)
	if err != nil {
		return nil, err
	}
	for round := range o.Rounds {
		for i := range Servers {
			name := Servers[(i+round)%len(Servers)]
			dir := filepath.Join(o.Out, fmt.Sprintf("%s-%d", name, round+1))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, err
			}
			boot := bootKiln
			if name == "dnsmasq" {
				boot = bootDnsmasq
			}
			t, err := boot(ctx, o, m, dir)
			if err != nil {
				return nil, fmt.Errorf("%s round %d: %w", name, round+1, err)
			}
			up.MiBps[name] = append(up.MiBps[name], t.installer.Seconds())
			fetch.MiBps[name] = append(fetch.MiBps[name], t.fetched.Seconds())
			fmt.Fprintf(o.Progress, "bench: netboot to installer, %s round %d: %.1f s (initramfs fetched at %.1f s)\n", name, round+1, t.installer.Seconds(), t.fetched.Seconds())
		}
	}
	return []netboot.Figure{up, fetch}, nil
}

// times are a boot's marks from power-on.
type times struct {
	fetched, installer time.Duration
}

// machine is the plan's machine name, or its first amd64 netbooted one.
func machine(p *plan.Plan, name string) (plan.Machine, error) {
	for _, m := range p.Machines {
		if (name == "" || m.Name == name) && m.Arch == "amd64" {
			if ok, _ := httpd.Netboot(p, &m); ok {
				return m, nil
			}
		}
	}
	return plan.Machine{}, fmt.Errorf("the plan has no netbooted amd64 machine %q", name)
}

// vmConfig is the machine as a BIOS VM (the firmware both sides share:
// SeaBIOS, its NIC's iPXE ROM).
func vmConfig(p *plan.Plan, m plan.Machine, name string) lab.VMConfig {
	cfg := lab.ConfigFor(p.Lab, m)
	cfg.Name, cfg.Firmware, cfg.MaxBoots = name, lab.BIOS, 1
	return cfg
}

// bootKiln boots the machine from kiln gate serve, full mode, its state
// fresh: the machine is to be installed.
func bootKiln(ctx context.Context, o Options, m plan.Machine, dir string) (times, error) {
	l, err := rehearse.Start(ctx, rehearse.Options{
		Plan: o.Plan, Profile: o.Profile, Bundle: o.Bundle, Kiln: o.Kiln, Out: dir,
		Mode: profiles.DHCPFull, Accel: o.Accel,
	})
	if err != nil {
		return times{}, err
	}
	defer l.Close()
	return timeBoot(ctx, l.Net, vmConfig(o.Plan, m, "kiln-"+m.Name), fetched(m))
}

// bootDnsmasq boots the machine from dnsmasq: the lab's DHCP server, its
// TFTP serving a boot script that loads the bundle's kernel and
// initramfs with the command line kiln would give.
func bootDnsmasq(ctx context.Context, o Options, m plan.Machine, dir string) (times, error) {
	root := filepath.Join(dir, "tftp")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return times{}, err
	}
	for _, f := range []string{bundle.Kernel(m.Arch), bundle.Initramfs(m.Arch)} {
		if err := os.Symlink(filepath.Join(o.Bundle, f), filepath.Join(root, filepath.Base(f))); err != nil {
			return times{}, err
		}
	}
	cmdline := httpd.InstallCmdline("http://"+o.Plan.Gate.Address, m.MAC, "bench")
	script := fmt.Sprintf("#!ipxe\nkernel tftp://${next-server}/%s %s\ninitrd tftp://${next-server}/%s\nboot\n",
		filepath.Base(bundle.Kernel(m.Arch)), cmdline, filepath.Base(bundle.Initramfs(m.Arch)))
	if err := os.WriteFile(filepath.Join(root, "boot.ipxe"), []byte(script), 0o644); err != nil {
		return times{}, err
	}
	gate, err := rehearse.GatePrefix(o.Plan)
	if err != nil {
		return times{}, err
	}
	n, err := lab.NewNetwork(ctx, lab.NetworkConfig{OutDir: dir, GateAddr: gate.String(), Accel: o.Accel, NoCapture: true})
	if err != nil {
		return times{}, err
	}
	defer n.Close()
	// The NIC's ROM is iPXE already: it is given the script directly,
	// as dnsmasq's manual does for iPXE clients.
	if _, err := n.StartISP(ctx, lab.ISPConfig{Router: o.Plan.Network.Gateway, TFTPRoot: root,
		Extra: []string{"--dhcp-userclass=set:ipxe,iPXE", "--dhcp-boot=tag:ipxe,boot.ipxe"}}); err != nil {
		return times{}, err
	}
	return timeBoot(ctx, n, vmConfig(o.Plan, m, "dnsmasq-"+m.Name), fetched(m))
}

// timeBoot starts the VM and times it to fetched, then to the
// installer's first line.
func timeBoot(ctx context.Context, n *lab.Network, cfg lab.VMConfig, fetched *regexp.Regexp) (times, error) {
	var t times
	vm, err := n.NewVM(ctx, cfg)
	if err != nil {
		return t, err
	}
	start := time.Now()
	if err := vm.Start(ctx); err != nil {
		return t, err
	}
	defer vm.Stop()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if _, err := vm.WaitFor(wctx, fetched); err != nil {
		return t, fmt.Errorf("%w\n%s", err, vm.Tail(20))
	}
	t.fetched = time.Since(start)
	if _, err := vm.WaitFor(wctx, installerUp); err != nil {
		return t, fmt.Errorf("%w\n%s", err, vm.Tail(20))
	}
	t.installer = time.Since(start)
	return t, nil
}

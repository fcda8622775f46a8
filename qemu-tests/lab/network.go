// Package lab runs throwaway QEMU labs for kiln's end-to-end tests and for
// `kiln rehearse`: a network namespace holding a bridge (the lab's LAN, with
// the gate's address), tap devices for the VMs, a pcap of the bridge, an
// optional dnsmasq in a second namespace playing the ISP box, and QEMU VMs
// whose serial logs are watched for markers.
//
// Nothing here touches the host's own network: every link, address and
// process lives in namespaces the lab creates and deletes on Close. QEMU runs
// with -no-reboot and is relaunched by the lab after each guest reset, so
// every boot is observed and counted.
package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults for a NetworkConfig.
const (
	DefaultBridge   = "br0"
	DefaultGateAddr = "192.168.1.10/24"
)

// readyTimeout bounds how long a helper (tcpdump, dnsmasq) may take to start.
const readyTimeout = 20 * time.Second

// ErrClosed is returned when a closed Network is used.
var ErrClosed = errors.New("lab network closed")

// NetworkConfig describes the lab's LAN.
type NetworkConfig struct {
	// Name of the network namespace; empty picks a unique "kiln-<pid>-<rand>".
	Name string
	// Bridge is the bridge's name inside the namespace (default br0).
	Bridge string
	// GateAddr is the bridge's address in CIDR form: the gate's address, so
	// kiln's gate service run in the namespace answers there
	// (default 192.168.1.10/24).
	GateAddr string
	// OutDir receives bridge.pcap and the helpers' logs. Required.
	OutDir string
	// NoCapture skips the tcpdump capture of the bridge.
	NoCapture bool
	// Logger receives what the lab does; nil discards it.
	Logger *slog.Logger
	// Accel is the accelerator the amd64 VMs run under, chosen once per
	// run (ChooseAccel); the zero value is TCG. arm64 VMs on an amd64
	// host always run under TCG.
	Accel Accel
}

// Network is a lab LAN: a namespace, its bridge, taps and helper processes.
type Network struct {
	ns, bridge string
	gate       netip.Prefix
	out        string
	log        *slog.Logger
	accel      Accel

	mu      sync.Mutex
	closed  bool
	procs   []*Process
	extraNS []string // namespaces to delete on Close (e.g. the ISP box's)
	vms     []*VM
	pcap    string
	isp     *ISP
}

// NewNetwork creates the namespace, its bridge with the gate's address, and
// starts the capture. On error everything created so far is removed.
func NewNetwork(ctx context.Context, cfg NetworkConfig) (*Network, error) {
	if cfg.OutDir == "" {
		return nil, errors.New("lab: NetworkConfig.OutDir is required")
	}
	if cfg.Name == "" {
		cfg.Name = uniqueName("kiln")
	}
	if cfg.Bridge == "" {
		cfg.Bridge = DefaultBridge
	}
	if cfg.GateAddr == "" {
		cfg.GateAddr = DefaultGateAddr
	}
	gate, err := netip.ParsePrefix(cfg.GateAddr)
	if err != nil {
		return nil, fmt.Errorf("lab: gate address: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	sweepStale(ctx, cfg.Logger)
	switch cfg.Accel.Name {
	case "":
		cfg.Accel = Accel{AccelTCG, "no accelerator chosen"}
	case AccelKVM, AccelTCG:
	default:
		return nil, fmt.Errorf("lab: accelerator %q: want kvm or tcg (see ChooseAccel)", cfg.Accel.Name)
	}
	n := &Network{ns: cfg.Name, bridge: cfg.Bridge, gate: gate, out: cfg.OutDir, log: cfg.Logger, accel: cfg.Accel}
	if err := n.setup(ctx, !cfg.NoCapture); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

func (n *Network) setup(ctx context.Context, capture bool) error {
	if err := run(ctx, "ip", "netns", "add", n.ns); err != nil {
		return err
	}
	n.log.Info("namespace created", "netns", n.ns)
	steps := [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", n.bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0"},
		{"addr", "add", n.gate.String(), "dev", n.bridge},
		{"link", "set", n.bridge, "up"},
	}
	for _, s := range steps {
		if err := n.ip(ctx, s...); err != nil {
			return err
		}
	}
	if capture {
		return n.startCapture(ctx)
	}
	return nil
}

// startCapture runs tcpdump on the bridge and waits until it listens, so
// the first DHCP packet of the first VM is in the pcap.
func (n *Network) startCapture(ctx context.Context) error {
	pcap := filepath.Join(n.out, "bridge.pcap")
	out := &lineWatcher{}
	// -Z root: keep privileges so the file can be written in a root-owned
	// folder; -U: flush per packet so a killed run still leaves a pcap.
	cmd := n.Command("tcpdump", "-i", n.bridge, "-U", "-n", "-Z", "root", "-w", pcap)
	cmd.Stdout, cmd.Stderr = out, out
	p, err := n.Start("tcpdump", cmd)
	if err != nil {
		return err
	}
	if err := waitReady(ctx, p, out, "listening on", readyTimeout); err != nil {
		return err
	}
	n.mu.Lock()
	n.pcap = pcap
	n.mu.Unlock()
	return nil
}

// Namespace is the name of the lab's network namespace.
func (n *Network) Namespace() string { return n.ns }

// Bridge is the name of the bridge inside the namespace.
func (n *Network) Bridge() string { return n.bridge }

// GateAddr is the bridge's address (the gate's), with its prefix.
func (n *Network) GateAddr() netip.Prefix { return n.gate }

// Accel is the accelerator the network's amd64 VMs run under.
func (n *Network) Accel() Accel { return n.accel }

// OutDir is the folder for logs and captures.
func (n *Network) OutDir() string { return n.out }

// PcapPath is the bridge capture's path, or "" without a capture.
func (n *Network) PcapPath() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pcap
}

// Command returns a command that runs name inside the namespace
// (`ip netns exec NS name args...`). Start it with Network.Start so Close
// stops it.
func (n *Network) Command(name string, args ...string) *exec.Cmd {
	return nsCommand(n.ns, name, args...)
}

func nsCommand(ns, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Start starts cmd (usually from Command) and keeps it to stop on Close.
func (n *Network) Start(name string, cmd *exec.Cmd) (*Process, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrClosed
	}
	p, err := startProcess(name, cmd)
	if err != nil {
		return nil, err
	}
	n.procs = append(n.procs, p)
	n.log.Info("started", "proc", name, "pid", p.Pid())
	return p, nil
}

// Do runs fn on an OS thread switched into the namespace. Sockets fn opens
// belong to the namespace and keep working after Do returns, so a Go
// server (kiln's gate) can listen inside the lab and serve from any
// goroutine. Goroutines started by fn do not run in the namespace: an
// http.Client, which dials from its own goroutines, must get a connection
// dialed inside fn.
func (n *Network) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked: if switching back fails, the
		// runtime discards it when this goroutine ends.
		runtime.LockOSThread()
		errc <- n.doLocked(fn)
	}()
	return <-errc
}

func (n *Network) doLocked(fn func() error) error {
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		return fmt.Errorf("lab: current netns: %w", err)
	}
	defer orig.Close()
	target, err := os.Open(filepath.Join("/run/netns", n.ns))
	if err != nil {
		return fmt.Errorf("lab: open netns: %w", err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("lab: setns %s: %w", n.ns, err)
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		return errors.Join(ferr, fmt.Errorf("lab: setns back: %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// AddTap creates a tap device in the namespace, attached to the bridge,
// for a VM's NIC. Names are per namespace, at most 15 bytes.
func (n *Network) AddTap(ctx context.Context, name string) error {
	if err := n.ip(ctx, "tuntap", "add", "dev", name, "mode", "tap"); err != nil {
		return err
	}
	if err := n.ip(ctx, "link", "set", name, "master", n.bridge); err != nil {
		return err
	}
	return n.ip(ctx, "link", "set", name, "up")
}

// ip runs `ip -n NS args...`.
func (n *Network) ip(ctx context.Context, args ...string) error {
	return run(ctx, "ip", append([]string{"-n", n.ns}, args...)...)
}

// Close stops every VM and process of the lab and deletes its namespaces.
// It is safe to call more than once and after a failed setup.
func (n *Network) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	vms, procs, extra := n.vms, n.procs, n.extraNS
	n.mu.Unlock()

	for _, vm := range vms {
		vm.Stop()
	}
	// Reverse order: dnsmasq and servers before the capture, so their last
	// packets are in the pcap.
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop(syscall.SIGTERM)
	}
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, ns := range append(extra, n.ns) {
		if err := run(ctx, "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
			continue
		}
		n.log.Info("namespace deleted", "netns", ns)
	}
	return errors.Join(errs...)
}

// run runs a short setup command and returns its output in the error.
func run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// uniqueName returns prefix-<pid>-<4 random bytes hex>.
func uniqueName(prefix string) string {
	var b [4]byte
	_, _ = io.ReadFull(rand.Reader, b[:])
	return fmt.Sprintf("%s-%d-%s", prefix, os.Getpid(), hex.EncodeToString(b[:]))
}

// staleName matches the namespaces uniqueName("kiln") makes, and their ISP
// boxes'.
var staleName = regexp.MustCompile(`^kiln-([0-9]+)-[0-9a-f]{8}(-isp)?$`)

// sweepStale deletes the namespaces of lab runs whose process is gone (a
// killed test binary cannot run its cleanup; its QEMUs died with it by
// their parent-death signal). Namespaces of live processes are left alone.
func sweepStale(ctx context.Context, log *slog.Logger) {
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		m := staleName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		if _, err := os.Stat("/proc/" + m[1]); err == nil {
			continue
		}
		if err := run(ctx, "ip", "netns", "del", e.Name()); err != nil {
			log.Warn("stale namespace", "netns", e.Name(), "err", err)
			continue
		}
		log.Info("stale namespace deleted", "netns", e.Name())
	}
}

// HostAddr is an address for the host side of the LAN (the bridge) when a
// VM owns the gate's address: the highest host address of the gate's
// network that is not the gate's.
func HostAddr(gate netip.Prefix) (netip.Prefix, error) {
	p := gate.Masked()
	if !p.Addr().Is4() || p.Bits() > 29 {
		return netip.Prefix{}, fmt.Errorf("gate network %s: want IPv4, /29 or wider", p)
	}
	a := p.Addr().As4()
	host := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	host |= 1<<(32-p.Bits()) - 2 // the last address before broadcast
	cand := netip.AddrFrom4([4]byte{byte(host >> 24), byte(host >> 16), byte(host >> 8), byte(host)})
	if cand == gate.Addr() {
		cand = cand.Prev()
	}
	return netip.PrefixFrom(cand, p.Bits()), nil
}

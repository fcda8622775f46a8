package lab

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
)

// ISPConfig describes dnsmasq playing the lab's ISP box: a full DHCP server
// on the LAN, the default route's next hop. It runs in its own namespace,
// joined to the bridge by a veth pair, so that it owns its address alone:
// the gate's address stays free for kiln's proxyDHCP, TFTP and HTTP.
type ISPConfig struct {
	// Addr is the box's address in CIDR form; default the subnet's .1.
	Addr string
	// RangeStart and RangeEnd bound the leases; default .100 to .199.
	RangeStart, RangeEnd string
	// Router is DHCP option 3; default Addr's address.
	Router string
	// TFTPRoot, when set, turns on dnsmasq's TFTP server over that folder
	// (a reference PXE server for the smoke tests).
	TFTPRoot string
	// IPv6Addr is the box's IPv6 address in CIDR form, from which it sends
	// router advertisements (SLAAC, as ISP boxes do; it also spares iPXE
	// ~13 s of router solicitations per netboot); default
	// fd6b:696c:6e00::1/64. NoRA turns the advertisements off.
	IPv6Addr string
	NoRA     bool
	// Extra are more dnsmasq options, e.g. --dhcp-boot=... lines.
	Extra []string
}

// DefaultISPv6 is the ISP box's default IPv6 address (a ULA: "kiln").
const DefaultISPv6 = "fd6b:696c:6e00::1/64"

// ISP is the running dnsmasq.
type ISP struct {
	ns   string
	addr netip.Prefix
	log  string
	proc *Process
}

// Addr is the box's address with its prefix.
func (i *ISP) Addr() netip.Prefix { return i.addr }

// Namespace is the ISP box's own namespace.
func (i *ISP) Namespace() string { return i.ns }

// LogPath is dnsmasq's log (every DHCP exchange, with --log-dhcp).
func (i *ISP) LogPath() string { return i.log }

// StartISP starts dnsmasq as the lab's ISP box and waits until it serves
// DHCP. One per network.
func (n *Network) StartISP(ctx context.Context, cfg ISPConfig) (*ISP, error) {
	if err := n.ispDefaults(&cfg); err != nil {
		return nil, err
	}
	addr, err := netip.ParsePrefix(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("lab: ISP address: %w", err)
	}
	isp := &ISP{ns: n.ns + "-isp", addr: addr, log: filepath.Join(n.out, "dnsmasq.log")}
	if err := n.addISPNamespace(ctx, isp, cfg.IPv6Addr); err != nil {
		return nil, err
	}
	logf, err := os.Create(isp.log)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	out := &lineWatcher{}
	cmd := nsCommand(isp.ns, "dnsmasq", dnsmasqArgs(cfg, filepath.Join(n.out, "dnsmasq.leases"))...)
	cmd.Stdout = io.MultiWriter(logf, out)
	cmd.Stderr = cmd.Stdout
	p, err := n.Start("dnsmasq", cmd)
	if err != nil {
		logf.Close()
		return nil, err
	}
	// The log is written through a pipe by this process: close it only
	// once dnsmasq is gone.
	go func() {
		<-p.Done()
		logf.Close()
	}()
	isp.proc = p
	if err := waitReady(ctx, p, out, "DHCP, IP range", readyTimeout); err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.isp = isp
	n.mu.Unlock()
	return isp, nil
}

// ispDefaults fills cfg from the gate's subnet.
func (n *Network) ispDefaults(cfg *ISPConfig) error {
	base := n.gate.Masked().Addr()
	if !base.Is4() {
		return fmt.Errorf("lab: ISP box needs an IPv4 subnet, have %s", n.gate)
	}
	nth := func(i byte) string {
		a := base.As4()
		a[3] += i
		return netip.AddrFrom4(a).String()
	}
	if cfg.Addr == "" {
		cfg.Addr = fmt.Sprintf("%s/%d", nth(1), n.gate.Bits())
	}
	if cfg.RangeStart == "" {
		cfg.RangeStart = nth(100)
	}
	if cfg.RangeEnd == "" {
		cfg.RangeEnd = nth(199)
	}
	if cfg.IPv6Addr == "" && !cfg.NoRA {
		cfg.IPv6Addr = DefaultISPv6
	}
	if cfg.Router == "" {
		p, err := netip.ParsePrefix(cfg.Addr)
		if err != nil {
			return fmt.Errorf("lab: ISP address: %w", err)
		}
		cfg.Router = p.Addr().String()
	}
	return nil
}

// addISPNamespace creates the box's namespace and a veth pair: "isp0" on
// the lab's bridge, "eth0" with the box's address inside.
func (n *Network) addISPNamespace(ctx context.Context, isp *ISP, v6 string) error {
	if err := run(ctx, "ip", "netns", "add", isp.ns); err != nil {
		return err
	}
	n.mu.Lock()
	n.extraNS = append(n.extraNS, isp.ns)
	n.mu.Unlock()
	if err := n.ip(ctx, "link", "add", "isp0", "type", "veth", "peer", "name", "eth0", "netns", isp.ns); err != nil {
		return err
	}
	if err := n.ip(ctx, "link", "set", "isp0", "master", n.bridge, "up"); err != nil {
		return err
	}
	steps := [][]string{
		{"link", "set", "lo", "up"},
		{"addr", "add", isp.addr.String(), "dev", "eth0"},
	}
	if v6 != "" {
		// nodad: the address is usable at once, before dnsmasq starts.
		steps = append(steps, []string{"addr", "add", v6, "dev", "eth0", "nodad"})
	}
	for _, s := range append(steps, []string{"link", "set", "eth0", "up"}) {
		if err := run(ctx, "ip", append([]string{"-n", isp.ns}, s...)...); err != nil {
			return err
		}
	}
	return nil
}

// dnsmasqArgs is the command line of a foreground, config-file-less
// dnsmasq: DHCP only (no DNS), every exchange logged to stderr.
func dnsmasqArgs(cfg ISPConfig, leases string) []string {
	args := []string{
		"--no-daemon",
		"--conf-file=/dev/null",
		"--interface=eth0",
		"--bind-interfaces",
		"--port=0",
		"--user=root",
		"--dhcp-authoritative",
		"--dhcp-range=" + cfg.RangeStart + "," + cfg.RangeEnd + ",12h",
		"--dhcp-option=3," + cfg.Router,
		"--dhcp-leasefile=" + leases,
		"--log-dhcp",
		"--log-facility=-",
	}
	if cfg.IPv6Addr != "" && !cfg.NoRA {
		args = append(args, "--enable-ra", "--dhcp-range=::,constructor:eth0,ra-only")
	}
	if cfg.TFTPRoot != "" {
		args = append(args, "--enable-tftp", "--tftp-root="+cfg.TFTPRoot)
	}
	return append(args, cfg.Extra...)
}

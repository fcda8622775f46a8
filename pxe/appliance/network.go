package appliance

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"
)

// The network phase: lo up, the lab NIC (found by gate.json's MAC, never
// by name: eth0 on the Pi, enp0s1 or eth0 under QEMU) gets the gate's
// static address and a default route via the profile's gateway.

func (a *Appliance) loopback(ctx context.Context) error {
	return a.sys.LinkUp("lo")
}

// findNIC waits for the NIC: its driver probes after its module loads.
func (a *Appliance) findNIC(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.WaitDevices)
	defer cancel()
	for {
		name, err := a.sys.LinkByMAC(a.mac)
		if err == nil {
			a.iface = name
			return nil
		}
		if !errors.Is(err, ErrNoLink) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w after %s", err, a.cfg.WaitDevices)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (a *Appliance) address(ctx context.Context) error {
	p, err := netip.ParsePrefix(a.payload.Gate.Address)
	if err != nil {
		return fmt.Errorf("gate address: %w", err)
	}
	if err := a.sys.LinkUp(a.iface); err != nil {
		return err
	}
	if err := a.sys.ReplaceAddr(a.iface, p); err != nil {
		return err
	}
	a.addr = p
	if err := a.sys.Sethostname(a.payload.Gate.Hostname); err != nil {
		a.log.Warn("host name", "err", err)
	}
	a.con.printf("network: %s (%s) %s", a.iface, a.mac, p)
	return nil
}

func (a *Appliance) route(ctx context.Context) error {
	gw := a.payload.Gate.Gateway
	if gw == "" {
		return nil // profiles require one; nothing to route without
	}
	ip, err := netip.ParseAddr(gw)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	return a.sys.ReplaceDefaultRoute(a.iface, ip)
}

// resolvConf writes /etc/resolv.conf for Go's resolver (NTP and WireGuard
// endpoints by name).
func (a *Appliance) resolvConf(ctx context.Context) error {
	var b strings.Builder
	b.WriteString("# written by kiln gate run from the profile's network.dns\n")
	for _, d := range a.payload.Gate.DNS {
		fmt.Fprintf(&b, "nameserver %s\n", d)
	}
	if err := os.MkdirAll(a.path("etc"), 0o755); err != nil {
		return err
	}
	return os.WriteFile(a.path("etc/resolv.conf"), []byte(b.String()), 0o644)
}

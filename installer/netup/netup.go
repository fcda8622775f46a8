// Package netup owns bringing up the installer's network: the NIC that
// netbooted (named by its MAC on the kernel command line, because multi-NIC
// machines enumerate in no stable order) gets an IPv4 address by DHCP with
// u-root's dhclient, which also sets the default route and resolv.conf.
package netup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/u-root/u-root/pkg/dhclient"
	"github.com/vishvananda/netlink"
)

// ErrNoNIC means no interface has the wanted MAC.
var ErrNoNIC = errors.New("no interface with that MAC")

// FindByMAC returns the name of the interface whose hardware address is
// mac among ifs.
func FindByMAC(ifs []net.Interface, mac string) (string, error) {
	want, err := net.ParseMAC(mac)
	if err != nil {
		return "", fmt.Errorf("kiln.mac %q: %w", mac, err)
	}
	for _, i := range ifs {
		if strings.EqualFold(i.HardwareAddr.String(), want.String()) {
			return i.Name, nil
		}
	}
	return "", fmt.Errorf("%s: %w", mac, ErrNoNIC)
}

// waitNIC retries FindByMAC until ctx ends: NIC drivers probe after their
// module loads.
func waitNIC(ctx context.Context, mac string) (string, error) {
	for {
		ifs, err := net.Interfaces()
		if err != nil {
			return "", err
		}
		name, err := FindByMAC(ifs, mac)
		if err == nil || !errors.Is(err, ErrNoNIC) {
			return name, err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w (waited: %w)", err, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// DHCP brings up the NIC with MAC mac and configures the first DHCPv4
// lease it gets. It returns the interface name and the leased address.
func DHCP(ctx context.Context, log *slog.Logger, mac string) (string, string, error) {
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	name, err := waitNIC(wctx, mac)
	if err != nil {
		return "", "", err
	}
	link, err := netlink.LinkByName(name)
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", name, err)
	}
	// Retries and timeouts are dhclient's: a lab's ISP box can be slow
	// after a power cut, so be patient (about a minute).
	cfg := dhclient.Config{Timeout: 6 * time.Second, Retries: 10}
	var errs []error
	for r := range dhclient.SendRequests(ctx, []netlink.Link{link}, true, false, cfg, 20*time.Second) {
		if r.Err != nil {
			errs = append(errs, r.Err)
			continue
		}
		if err := r.Lease.Configure(); err != nil {
			return "", "", fmt.Errorf("%s: configure lease: %w", name, err)
		}
		addr := ""
		if p, ok := r.Lease.(*dhclient.Packet4); ok && p.Lease() != nil {
			addr = p.Lease().String()
		}
		log.Info("dhcp lease", "interface", name, "address", addr)
		return name, addr, nil
	}
	return "", "", fmt.Errorf("%s: no DHCP lease: %w", name, errors.Join(errs...))
}

package wireguard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/kilnlab/kiln/image/secrets"
	"github.com/kilnlab/kiln/profiles"
)

// DefaultInterface is the gate's tunnel interface.
const DefaultInterface = "wg0"

// Config is the gate's tunnel.
type Config struct {
	Interface string             // DefaultInterface when empty
	Tunnel    profiles.WireGuard // the gate's validated wireguard block
	// Resolver resolves the peer's endpoint name; nil means
	// net.DefaultResolver (the gate's /etc/resolv.conf).
	Resolver *net.Resolver
}

// Up brings the tunnel up in the caller's network namespace: the
// interface (created as a kernel WireGuard link unless it exists), its key
// and peer, its address, link up, and a route per allowed network. Every
// step converges rather than adds, so Up can run again after any failure
// (the appliance retries it) and leaves the same state.
//
// An existing tun interface of that name is accepted as a userspace
// WireGuard (wireguard-go), which wgctrl configures the same way.
func Up(ctx context.Context, cfg Config, keys secrets.GateKeys, log *slog.Logger) error {
	name := cfg.Interface
	if name == "" {
		name = DefaultInterface
	}
	t, err := parse(cfg.Tunnel)
	if err != nil {
		return err
	}
	endpoint, err := resolve(ctx, cfg.Resolver, cfg.Tunnel.Peer.Endpoint)
	if err != nil {
		return err
	}
	link, err := ensureLink(name)
	if err != nil {
		return err
	}
	if err := configure(name, cfg.Tunnel, t, endpoint, keys); err != nil {
		return err
	}
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: ipNet(t.address)}); err != nil {
		return fmt.Errorf("wireguard: address %s on %s: %w", t.address, name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("wireguard: %s up: %w", name, err)
	}
	for _, dst := range t.routes {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(dst), Scope: netlink.SCOPE_LINK}
		if err := netlink.RouteReplace(r); err != nil {
			return fmt.Errorf("wireguard: route %s dev %s: %w", dst, name, err)
		}
	}
	log.Info("wireguard up", "interface", name, "address", t.address, "endpoint", endpoint, "allowed_ips", t.allowed)
	return nil
}

// tunnel is the block's addresses, parsed.
type tunnel struct {
	address netip.Prefix   // the gate's, e.g. 10.99.0.2/24
	allowed []netip.Prefix // what the peer may send from and the gate sends to it
	routes  []netip.Prefix // the profile's allowed_ips
}

// parse reads a (validated) block. The VPS's own tunnel address is always
// allowed from the peer, so it reaches the gate whatever allowed_ips says.
func parse(wg profiles.WireGuard) (tunnel, error) {
	var t tunnel
	var err error
	if t.address, err = netip.ParsePrefix(wg.Address); err != nil {
		return t, fmt.Errorf("wireguard: address: %w", err)
	}
	vps, err := netip.ParseAddr(wg.Peer.Address)
	if err != nil {
		return t, fmt.Errorf("wireguard: peer address: %w", err)
	}
	for _, s := range wg.Peer.AllowedIPs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return t, fmt.Errorf("wireguard: allowed_ips: %w", err)
		}
		t.routes = append(t.routes, p.Masked())
	}
	t.allowed = append(t.allowed, t.routes...)
	if !covered(t.routes, vps) {
		t.allowed = append(t.allowed, netip.PrefixFrom(vps, 32))
	}
	return t, nil
}

func covered(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// resolve turns "host:port" into an address, preferring IPv4 (the lab's
// uplink is IPv4).
func resolve(ctx context.Context, r *net.Resolver, endpoint string) (*net.UDPAddr, error) {
	host, portStr, err := net.SplitHostPort(endpoint)
	if err != nil {
		return nil, fmt.Errorf("wireguard: endpoint: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("wireguard: endpoint %s: bad port", endpoint)
	}
	if r == nil {
		r = net.DefaultResolver
	}
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("wireguard: resolve endpoint %s: %w", endpoint, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("wireguard: resolve endpoint %s: no address", endpoint)
	}
	best := addrs[0]
	for _, a := range addrs {
		if a.Unmap().Is4() {
			best = a.Unmap()
			break
		}
	}
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(best, uint16(port))), nil
}

// ensureLink returns the interface, creating a kernel WireGuard link when
// there is none.
func ensureLink(name string) (netlink.Link, error) {
	link, err := netlink.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		if err := netlink.LinkAdd(&netlink.Wireguard{LinkAttrs: attrs}); err != nil {
			return nil, fmt.Errorf("wireguard: create %s (is the wireguard kernel module loaded?): %w", name, err)
		}
		if link, err = netlink.LinkByName(name); err != nil {
			return nil, fmt.Errorf("wireguard: %w", err)
		}
		return link, nil
	case err != nil:
		return nil, fmt.Errorf("wireguard: %s: %w", name, err)
	case link.Type() != "wireguard" && link.Type() != "tuntap":
		return nil, fmt.Errorf("wireguard: %s exists and is a %s link, not WireGuard", name, link.Type())
	}
	return link, nil
}

// configure sets the device's key and its one peer, replacing whatever
// peers it had.
func configure(name string, wg profiles.WireGuard, t tunnel, endpoint *net.UDPAddr, keys secrets.GateKeys) error {
	c, err := wgctrl.New()
	if err != nil {
		return fmt.Errorf("wireguard: %w", err)
	}
	defer c.Close()
	keepalive := profiles.DefaultKeepalive
	if wg.Peer.Keepalive != nil {
		keepalive = *wg.Peer.Keepalive
	}
	interval := time.Duration(keepalive) * time.Second
	psk := keys.Preshared
	peer := wgtypes.PeerConfig{
		PublicKey:                   keys.PeerPublic,
		PresharedKey:                &psk,
		Endpoint:                    endpoint,
		PersistentKeepaliveInterval: &interval,
		ReplaceAllowedIPs:           true,
	}
	for _, p := range t.allowed {
		peer.AllowedIPs = append(peer.AllowedIPs, *ipNet(p))
	}
	priv := keys.GatePrivate
	conf := wgtypes.Config{PrivateKey: &priv, ReplacePeers: true, Peers: []wgtypes.PeerConfig{peer}}
	if wg.ListenPort != 0 {
		conf.ListenPort = &wg.ListenPort
	}
	if err := c.ConfigureDevice(name, conf); err != nil {
		return fmt.Errorf("wireguard: configure %s: %w", name, err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

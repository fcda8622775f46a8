package profiles

import (
	"net"
	"net/netip"
	"strconv"
)

// WireGuard rules: the gate's tunnel to a VPS. The tunnel is a network of
// its own beside the lab's; it must neither overlap the lab nor swallow its
// traffic, or the gate would route the lab into the tunnel.

func (v *validator) wireguard(f string, m *Machine) {
	wg := m.WireGuard
	if m.Role != RoleGate {
		v.ps.add(f, "only the gate has a wireguard tunnel (this machine's role is %s)", m.Role)
		return
	}
	tunnel, gate, ok := v.tunnelAddr(f+".address", wg.Address)
	if wg.ListenPort < 0 || wg.ListenPort > 65535 {
		v.ps.add(f+".listen_port", "%d is not a UDP port (0 to 65535; 0 lets the kernel choose)", wg.ListenPort)
	}
	p := wg.Peer
	f += ".peer"
	v.endpoint(f+".endpoint", p.Endpoint)
	if v.required(f+".address", p.Address) && ok {
		v.peerAddr(f+".address", p.Address, tunnel, gate)
	}
	for i, s := range p.AllowedIPs {
		v.allowedIP(field(f+".allowed_ips", i), s)
	}
	if k := p.Keepalive; k != nil && (*k < 0 || *k > 65535) {
		v.ps.add(f+".keepalive", "%d is out of range (0 to 65535 seconds; 0 turns it off)", *k)
	}
}

// tunnelAddr checks the gate's tunnel address, "10.99.0.2/24": a host of
// a tunnel network that has room for the peer and is clear of the lab.
func (v *validator) tunnelAddr(f, s string) (netip.Prefix, netip.Addr, bool) {
	if !v.required(f, s) {
		return netip.Prefix{}, netip.Addr{}, false
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() {
		v.ps.add(f, "%q is not an IPv4 address with its prefix length, such as 10.99.0.2/24", s)
		return netip.Prefix{}, netip.Addr{}, false
	}
	tunnel := p.Masked()
	switch {
	case p.Bits() > 30:
		v.ps.add(f, "%q leaves no room for the peer in the tunnel (at most /30)", s)
	case p.Addr() == tunnel.Addr():
		v.ps.add(f, "%s is the network address of the tunnel %s", p.Addr(), tunnel)
	case p.Addr() == broadcast(tunnel):
		v.ps.add(f, "%s is the broadcast address of the tunnel %s", p.Addr(), tunnel)
	case v.prefix.IsValid() && tunnel.Overlaps(v.prefix):
		v.ps.add(f, "the tunnel %s overlaps network.cidr %s; give it a network of its own", tunnel, v.prefix)
	default:
		return tunnel, p.Addr(), true
	}
	return netip.Prefix{}, netip.Addr{}, false
}

func (v *validator) peerAddr(f, s string, tunnel netip.Prefix, gate netip.Addr) {
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil || !a.Is4():
		v.ps.add(f, "%q is not an IPv4 address", s)
	case !tunnel.Contains(a):
		v.ps.add(f, "%s is outside the tunnel %s", a, tunnel)
	case a == gate:
		v.ps.add(f, "%s is the gate's own tunnel address", a)
	case a == tunnel.Addr() || a == broadcast(tunnel):
		v.ps.add(f, "%s is the network or broadcast address of the tunnel %s", a, tunnel)
	}
}

// endpoint checks "host:port"; the host is resolved on the gate, at
// tunnel set-up, so a name is as good as an address here.
func (v *validator) endpoint(f, s string) {
	if !v.required(f, s) {
		return
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		v.ps.add(f, "%q is not host:port, such as vps.example.net:51820", s)
		return
	}
	if _, err := netip.ParseAddr(host); err != nil && !isHostName(host) {
		v.ps.add(f, "%q: %q is neither an IP address nor a host name", s, host)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		v.ps.add(f, "%q: %q is not a UDP port (1 to 65535)", s, port)
	}
}

func (v *validator) allowedIP(f, s string) {
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil || !p.Addr().Is4():
		v.ps.add(f, "%q is not an IPv4 network such as 10.99.0.0/24", s)
	case p != p.Masked():
		v.ps.add(f, "%q has host bits set; the network is %s", s, p.Masked())
	case v.prefix.IsValid() && p.Overlaps(v.prefix):
		v.ps.add(f, "%s overlaps network.cidr %s: the gate would send the lab's own traffic into the tunnel", p, v.prefix)
	}
}

// wireguardDefaults fills what needs a validated address: a peer that
// names no allowed_ips gets the tunnel's own network.
func wireguardDefaults(m *Machine) {
	wg := m.WireGuard
	if wg == nil || len(wg.Peer.AllowedIPs) > 0 {
		return
	}
	if p, err := netip.ParsePrefix(wg.Address); err == nil {
		wg.Peer.AllowedIPs = []string{p.Masked().String()}
	}
}

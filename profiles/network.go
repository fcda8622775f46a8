package profiles

import (
	"net/netip"
	"strconv"
	"strings"
)

// Network rules: the lab's LAN, its cluster network, and the addresses in
// them.

func (v *validator) network() {
	n := v.p.Network
	if v.required("network.cidr", n.CIDR) {
		v.prefix, _ = v.cidr("network.cidr", n.CIDR, "192.168.1.0/24")
	}
	if c := n.Cluster; c != nil && v.required("network.cluster.cidr", c.CIDR) {
		v.clusterCIDR(c.CIDR)
	}
	if v.required("network.gateway", n.Gateway) {
		if gw, ok := v.hostAddr("network.gateway", n.Gateway); ok {
			v.gw = gw
		}
	}
	for i, d := range n.DNS {
		if _, err := netip.ParseAddr(d); err != nil {
			v.ps.add(field("network.dns", i), "%q is not an IP address", d)
		}
	}
	for i, t := range n.NTP {
		if _, err := netip.ParseAddr(t); err != nil && !isHostName(t) {
			v.ps.add(field("network.ntp", i), "%q is neither an IP address nor a host name", t)
		}
	}
	v.oneOf("network.dhcp.mode", n.DHCP.Mode, dhcpModes)
	if n.DHCP.Mode == DHCPFull && n.DHCP.Range == "" {
		v.ps.add("network.dhcp.range", "required in mode full (the pool the gate leases from, e.g. 192.168.1.100-192.168.1.199)")
	}
}

// cidr parses the IPv4 network at field f; example shows the form.
func (v *validator) cidr(f, s, example string) (netip.Prefix, bool) {
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil || !p.Addr().Is4():
		v.ps.add(f, "%q is not an IPv4 network such as %s", s, example)
	case p != p.Masked():
		v.ps.add(f, "%q has host bits set; the network is %s", s, p.Masked())
	case p.Bits() > 30:
		v.ps.add(f, "%q is too small for a lab (at most /30)", s)
	default:
		return p, true
	}
	return netip.Prefix{}, false
}

// clusterCIDR checks the cluster network: a network of its own, so that
// no address of it can be mistaken for (or routed as) one of the LAN.
func (v *validator) clusterCIDR(s string) {
	const f = "network.cluster.cidr"
	p, ok := v.cidr(f, s, "10.10.0.0/24")
	switch {
	case !ok:
	case v.prefix.IsValid() && p.Overlaps(v.prefix):
		v.ps.add(f, "%s overlaps network.cidr %s: the cluster network must be a network of its own", p, v.prefix)
	default:
		v.cluster = p
	}
}

// hostAddr parses an IPv4 host address of the lab's network: inside the
// CIDR and neither its network nor its broadcast address.
func (v *validator) hostAddr(f, s string) (netip.Addr, bool) {
	return v.addrIn(f, s, v.prefix, "network.cidr")
}

// addrIn parses an IPv4 host address of network p (named name in
// messages): inside it and neither its network nor its broadcast address.
// An invalid p has had its own problem reported; any IPv4 address passes.
func (v *validator) addrIn(f, s string, p netip.Prefix, name string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		v.ps.add(f, "%q is not an IPv4 address", s)
		return netip.Addr{}, false
	}
	if !p.IsValid() {
		return a, true // the CIDR's own problem is reported already
	}
	switch {
	case !p.Contains(a):
		v.ps.add(f, "%s is outside %s %s", a, name, p)
	case a == p.Addr():
		v.ps.add(f, "%s is the network address of %s", a, p)
	case a == broadcast(p):
		v.ps.add(f, "%s is the broadcast address of %s", a, p)
	default:
		return a, true
	}
	return netip.Addr{}, false
}

// machineAddr checks a machine's static address (which must also not be
// the gateway's) and claims it.
func (v *validator) machineAddr(f, s, owner string) {
	a, ok := v.hostAddr(f, s)
	if !ok {
		return
	}
	if a == v.gw {
		v.ps.add(f, "%s is network.gateway", a)
		return
	}
	v.claim(f, "address", a.String(), owner)
}

// dhcpRange checks the "first-last" pool: inside the network, ordered, and
// clear of the gateway and of every machine's static address.
func (v *validator) dhcpRange() {
	const f = "network.dhcp.range"
	r := v.p.Network.DHCP.Range
	if r == "" {
		return
	}
	lo, hi, ok := v.parseRange(f, r)
	if !ok {
		return
	}
	in := func(a netip.Addr) bool { return a.IsValid() && lo.Compare(a) <= 0 && a.Compare(hi) <= 0 }
	if in(v.gw) {
		v.ps.add(f, "%s contains network.gateway %s", r, v.gw)
	}
	for i, m := range v.p.Machines {
		if a, err := netip.ParseAddr(m.Address); err == nil && in(a) {
			v.ps.add(f, "%s contains the address %s of %s (line %d)", r, a, m.Name, v.ps.pos.near(field("machines", i)+".address").Line)
		}
	}
}

func (v *validator) parseRange(f, r string) (lo, hi netip.Addr, ok bool) {
	first, last, found := strings.Cut(r, "-")
	if !found {
		v.ps.add(f, "%q is not a range such as 192.168.1.100-192.168.1.199", r)
		return lo, hi, false
	}
	lo, ok1 := v.hostAddr(f, strings.TrimSpace(first))
	hi, ok2 := v.hostAddr(f, strings.TrimSpace(last))
	if !ok1 || !ok2 {
		return lo, hi, false
	}
	if hi.Less(lo) {
		v.ps.add(f, "%q ends before it starts", r)
		return lo, hi, false
	}
	return lo, hi, true
}

func broadcast(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(b)
}

// isHostName accepts dotted RFC 1123 host names (e.g. pool.ntp.org).
func isHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for l := range strings.SplitSeq(s, ".") {
		if !labelRE.MatchString(strings.ToLower(l)) {
			return false
		}
	}
	return true
}

// field is the path of list item i.
func field(list string, i int) string {
	return list + "[" + strconv.Itoa(i) + "]"
}

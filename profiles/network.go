package profiles

import (
	"net/netip"
	"strconv"
	"strings"
)

// Network rules: the lab's one IPv4 segment and the addresses in it.

func (v *validator) network() {
	n := v.p.Network
	if v.required("network.cidr", n.CIDR) {
		v.cidr(n.CIDR)
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

func (v *validator) cidr(s string) {
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil || !p.Addr().Is4():
		v.ps.add("network.cidr", "%q is not an IPv4 network such as 192.168.1.0/24", s)
	case p != p.Masked():
		v.ps.add("network.cidr", "%q has host bits set; the network is %s", s, p.Masked())
	case p.Bits() > 30:
		v.ps.add("network.cidr", "%q is too small for a lab (at most /30)", s)
	default:
		v.prefix = p
	}
}

// hostAddr parses an IPv4 host address of the lab's network: inside the
// CIDR and neither its network nor its broadcast address.
func (v *validator) hostAddr(f, s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		v.ps.add(f, "%q is not an IPv4 address", s)
		return netip.Addr{}, false
	}
	if !v.prefix.IsValid() {
		return a, true // the CIDR's own problem is reported already
	}
	switch {
	case !v.prefix.Contains(a):
		v.ps.add(f, "%s is outside network.cidr %s", a, v.prefix)
	case a == v.prefix.Addr():
		v.ps.add(f, "%s is the network address of %s", a, v.prefix)
	case a == broadcast(v.prefix):
		v.ps.add(f, "%s is the broadcast address of %s", a, v.prefix)
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

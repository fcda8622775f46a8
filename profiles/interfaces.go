package profiles

import (
	"cmp"
	"fmt"
	"regexp"
	"strings"
)

// Interface rules: a server's NICs, bonds and VLANs, their MTUs, and its
// place on the cluster network (the shape is documented on Interfaces).
// The links of one machine form a small graph, NICs under bonds under
// VLANs; the rules resolve it once, in that order, so that each reference
// is checked against links already known.

var (
	bondNameRE = regexp.MustCompile(`^bond[0-9]{1,4}$`)
	// kindNameRE: the names kiln gives bonds and VLANs, which a NIC's
	// label must not take (references would be ambiguous).
	kindNameRE = regexp.MustCompile(`^(bond|vlan)[0-9]+$`)
)

// Link kinds.
const (
	kindNIC  = "NIC"
	kindBond = "bond"
	kindVLAN = "VLAN"
)

// linkGraph is one machine's links, as far as they are valid.
type linkGraph struct {
	m     *Machine
	f     string            // "machines[i].interfaces"
	names []string          // valid link names, in file order
	kind  map[string]string // link name -> kindNIC, kindBond or kindVLAN
	at    map[string]string // link name -> the field that defines it
	mtu   map[string]int    // link name -> its MTU as the kernel will have it
	// bondOf maps a member NIC to its bond; memberAt to where it is
	// listed as a member.
	bondOf, memberAt map[string]string
	used             map[string]bool // links that carry something
	// netboot is the NIC whose MAC is the machine's; found says one is.
	netboot string
	found   bool
	lan     string // the link that carries the LAN
}

// clusterMTU is the first machine's MTU on the cluster network.
type clusterMTU struct {
	mtu     int
	machine string
	line    int
}

// interfaces checks machine i's links; a storage machine of a lab with a
// cluster network must be on it.
func (v *validator) interfaces(i int) {
	m := &v.p.Machines[i]
	f := field("machines", i) + ".interfaces"
	if m.Interfaces == nil {
		v.needsCluster(f, m)
		return
	}
	if m.Role == RoleGate {
		v.ps.add(f, "the gate has no interfaces: it configures its one NIC itself (interfaces are for the servers kiln installs)")
		return
	}
	before := len(v.ps.list)
	g := &linkGraph{
		m: m, f: f,
		kind: map[string]string{}, at: map[string]string{}, mtu: map[string]int{},
		bondOf: map[string]string{}, memberAt: map[string]string{}, used: map[string]bool{},
	}
	in := m.Interfaces
	for j := range in.NICs {
		v.nic(g, j)
	}
	for j := range in.Bonds {
		v.bond(g, j)
	}
	v.memberMTUs(g)
	for j := range in.VLANs {
		v.vlanName(g, j)
	}
	for j := range in.VLANs {
		v.vlanLink(g, j)
	}
	v.lanLink(g, field("machines", i)+".mac")
	if in.Cluster == nil {
		v.needsCluster(f, m)
	} else {
		v.clusterLink(g)
	}
	// A link that carries nothing is reported only when nothing else is
	// wrong with the machine's links: a broken reference would otherwise
	// make its target look unused, and say so twice.
	if len(v.ps.list) == before {
		v.unused(g)
	}
}

// needsCluster: when the lab has a cluster network, Ceph's OSDs replicate
// and heartbeat over it, so every storage machine must be on it.
func (v *validator) needsCluster(f string, m *Machine) {
	if v.p.Network.Cluster != nil && m.Role == RoleStorage {
		v.ps.add(f+".cluster", "required for a storage machine when the lab has network.cluster (Ceph's OSDs replicate over it)")
	}
}

// define records a valid link name; names are unique within a machine.
func (v *validator) define(g *linkGraph, f, name, kind string, mtu int) {
	if !v.claim(f, "name of a link of "+g.m.Name, name, "") {
		return
	}
	g.names = append(g.names, name)
	g.kind[name], g.at[name], g.mtu[name] = kind, f, mtu
}

// linkMTU is the MTU a link's own setting gives it: def when it names
// none, 0 (unknown) when it is out of range and reported so.
func linkMTU(mtu, def int) int {
	switch {
	case mtu == 0:
		return def
	case mtu < MinMTU || mtu > MaxMTU:
		return 0
	}
	return mtu
}

func (v *validator) nic(g *linkGraph, j int) {
	n := &g.m.Interfaces.NICs[j]
	f := field(g.f+".nics", j)
	v.mtuRange(f+".mtu", n.MTU)
	if v.label(f+".name", n.Name, "NIC name") {
		if kindNameRE.MatchString(n.Name) {
			v.ps.add(f+".name", "%q is a name kiln gives bonds and VLANs; call the NIC e.g. nic%d", n.Name, j)
		} else {
			v.define(g, f+".name", n.Name, kindNIC, linkMTU(n.MTU, DefaultMTU))
		}
	}
	if !v.macAddr(f+".mac", n.MAC) {
		return
	}
	// The NIC that netboots is the machine's mac, claimed already.
	if strings.EqualFold(n.MAC, g.m.MAC) && !g.found {
		g.netboot, g.found = n.Name, true
		return
	}
	v.claim(f+".mac", "MAC", n.MAC, g.m.Name+" NIC "+n.Name)
}

func (v *validator) bond(g *linkGraph, j int) {
	b := &g.m.Interfaces.Bonds[j]
	f := field(g.f+".bonds", j)
	v.mtuRange(f+".mtu", b.MTU)
	if v.required(f+".name", b.Name) {
		if bondNameRE.MatchString(b.Name) {
			v.define(g, f+".name", b.Name, kindBond, linkMTU(b.MTU, DefaultMTU))
		} else {
			v.ps.add(f+".name", "%q is not a bond name: bonds are bond0, bond1, ... (kiln names links by kind)", b.Name)
		}
	}
	v.oneOf(f+".mode", b.Mode, bondModes)
	if len(b.Members) == 0 {
		v.ps.add(f+".members", "required: the names of the NICs it bonds (from interfaces.nics)")
	}
	self := cmp.Or(b.Name, fmt.Sprintf("bonds[%d]", j))
	for k, name := range b.Members {
		mf := field(f+".members", k)
		switch {
		case g.kind[name] != kindNIC:
			v.ps.add(mf, "%q is not a NIC of %s (interfaces.nics: %s)", name, g.m.Name, g.list(kindNIC))
		case g.bondOf[name] != "":
			v.ps.add(mf, "%s is already a member of %s (line %d): a NIC is in one bond, once", name, g.bondOf[name], v.ps.pos.near(g.memberAt[name]).Line)
		default:
			g.bondOf[name], g.memberAt[name] = self, mf
		}
	}
}

// memberMTUs: the bonding driver gives its members the bond's MTU, so an
// MTU on a member would be overridden (or fight the bond's).
func (v *validator) memberMTUs(g *linkGraph) {
	for j, n := range g.m.Interfaces.NICs {
		if b := g.bondOf[n.Name]; b != "" && n.MTU != 0 {
			v.ps.add(field(g.f+".nics", j)+".mtu", "%s is a member of %s, which sets its MTU: give the mtu to %s", n.Name, b, b)
		}
	}
}

// vlanName checks a VLAN's id, which names it (vlan<id>).
func (v *validator) vlanName(g *linkGraph, j int) {
	vl := &g.m.Interfaces.VLANs[j]
	f := field(g.f+".vlans", j)
	v.mtuRange(f+".mtu", vl.MTU)
	switch {
	case !v.present(f + ".id"):
		v.ps.add(f+".id", "required (1 to 4094)")
	case vl.ID < 1 || vl.ID > 4094:
		v.ps.add(f+".id", "%d is not a VLAN id (1 to 4094)", vl.ID)
	case g.kind[vlanName(vl.ID)] == kindVLAN:
		v.ps.add(f+".id", "VLAN %d is listed twice (first on line %d): a machine joins a VLAN once", vl.ID, v.ps.pos.near(g.at[vlanName(vl.ID)]).Line)
	default:
		v.define(g, f+".id", vlanName(vl.ID), kindVLAN, linkMTU(vl.MTU, 0))
	}
}

// vlanLink checks what a VLAN is on, and its MTU against that link's.
func (v *validator) vlanLink(g *linkGraph, j int) {
	vl := &g.m.Interfaces.VLANs[j]
	f := field(g.f+".vlans", j)
	if !v.required(f+".link", vl.Link) {
		return
	}
	switch k := g.kind[vl.Link]; {
	case k == kindVLAN:
		v.ps.add(f+".link", "%s is a VLAN: kiln puts VLANs on a NIC or a bond", vl.Link)
		return
	case k == "":
		v.ps.add(f+".link", "%q is not a NIC or bond of %s (links: %s)", vl.Link, g.m.Name, g.list(kindNIC, kindBond))
		return
	case g.bondOf[vl.Link] != "":
		b := g.bondOf[vl.Link]
		v.ps.add(f+".link", "%s is a member of %s: put the VLAN on %s", vl.Link, b, b)
		return
	}
	g.used[vl.Link] = true
	name, parent := vlanName(vl.ID), g.mtu[vl.Link]
	if g.kind[name] != kindVLAN || g.at[name] != f+".id" {
		return // its id's problem is reported
	}
	switch mtu := g.mtu[name]; {
	case vl.MTU == 0:
		g.mtu[name] = parent // the kernel gives a new VLAN its link's MTU
	case mtu != 0 && parent != 0 && mtu > parent:
		v.ps.add(f+".mtu", "%d is larger than the MTU of %s (%d): the kernel refuses a VLAN larger than its link; give %s mtu: %d too",
			vl.MTU, vl.Link, parent, vl.Link, vl.MTU)
	}
}

// lanLink finds the link that carries the LAN: the NIC that netboots (the
// machine's mac), or the bond it is a member of.
func (v *validator) lanLink(g *linkGraph, macField string) {
	m := g.m
	switch {
	case g.found && g.kind[g.netboot] == kindNIC:
		g.lan = cmp.Or(g.bondOf[g.netboot], g.netboot)
		g.used[g.lan] = true
	case g.found || !macRE.MatchString(m.MAC):
		// the NIC's name or the machine's mac has its own problem
	case len(m.Interfaces.NICs) == 0:
		v.ps.add(g.f+".nics", "required: the machine's NICs, the one that netboots (%s) among them", m.MAC)
	default:
		v.ps.add(macField, "%s is not the MAC of any of interfaces.nics: list the NIC that netboots there too", m.MAC)
	}
}

// clusterLink checks the machine's place on the cluster network.
func (v *validator) clusterLink(g *linkGraph) {
	cl := g.m.Interfaces.Cluster
	f := g.f + ".cluster"
	if v.p.Network.Cluster == nil {
		v.ps.add(f, "the lab has no cluster network: set network.cluster.cidr, or remove this")
		return
	}
	if v.required(f+".address", cl.Address) {
		if a, ok := v.addrIn(f+".address", cl.Address, v.cluster, "network.cluster.cidr"); ok {
			v.claim(f+".address", "cluster address", a.String(), g.m.Name)
		}
	}
	if !v.required(f+".link", cl.Link) {
		return
	}
	switch {
	case g.kind[cl.Link] == "":
		v.ps.add(f+".link", "%q is not a link of %s (links: %s)", cl.Link, g.m.Name, g.list(kindNIC, kindBond, kindVLAN))
		return
	case g.bondOf[cl.Link] != "":
		b := g.bondOf[cl.Link]
		v.ps.add(f+".link", "%s is a member of %s: put the cluster network on %s or on a VLAN over it", cl.Link, b, b)
		return
	case cl.Link == g.lan:
		v.ps.add(f+".link", "%s carries the LAN untagged: the cluster network needs a link of its own (a VLAN or another NIC or bond)", cl.Link)
		return
	}
	g.used[cl.Link] = true
	// One MTU per network: a jumbo frame sent to a host at 1500 is
	// dropped without a word (no router on the way to say so), which
	// Ceph shows as OSDs flapping.
	mtu, line := g.mtu[cl.Link], v.ps.pos.near(f+".link").Line
	switch first := v.clusterMTU; {
	case mtu == 0:
	case first == nil:
		v.clusterMTU = &clusterMTU{mtu: mtu, machine: g.m.Name, line: line}
	case first.mtu != mtu:
		v.ps.add(f+".link", "%s has MTU %d, but the cluster network has %d on %s (line %d): one MTU per network, or large frames are dropped",
			cl.Link, mtu, first.mtu, first.machine, first.line)
	}
}

// unused reports links that carry nothing (networkd would bring them up
// for nothing, and wait for their carrier at boot).
func (v *validator) unused(g *linkGraph) {
	in := g.m.Interfaces
	for j, n := range in.NICs {
		if !g.used[n.Name] && g.bondOf[n.Name] == "" {
			v.ps.add(field(g.f+".nics", j), "%s carries nothing: it does not netboot, is in no bond, and has no VLAN or the cluster network on it", n.Name)
		}
	}
	for j, b := range in.Bonds {
		if !g.used[b.Name] {
			v.ps.add(field(g.f+".bonds", j), "%s carries nothing: the NIC that netboots is not a member (so the LAN is elsewhere), and no VLAN or the cluster network is on it", b.Name)
		}
	}
	for j, vl := range in.VLANs {
		if name := vlanName(vl.ID); !g.used[name] {
			v.ps.add(field(g.f+".vlans", j), "%s carries nothing: the cluster network is not on it (the LAN is untagged on the link that netboots)", name)
		}
	}
}

func (v *validator) mtuRange(f string, mtu int) {
	if mtu != 0 && (mtu < MinMTU || mtu > MaxMTU) {
		v.ps.add(f, "%d is out of range (%d to %d bytes)", mtu, MinMTU, MaxMTU)
	}
}

// list names the links of the given kinds, for messages.
func (g *linkGraph) list(kinds ...string) string {
	var out []string
	for _, n := range g.names {
		for _, k := range kinds {
			if g.kind[n] == k {
				out = append(out, n)
			}
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

func vlanName(id int) string { return fmt.Sprintf("vlan%d", id) }

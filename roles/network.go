package roles

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/kilnlab/kiln/profiles"
)

// A machine whose profile lists interfaces gets one systemd-networkd file
// per link instead of 10-kiln.network: 10-kiln-<link>.network for each NIC,
// bond and VLAN, and 10-kiln-<link>.netdev for each bond and VLAN, which
// networkd creates. Choices, each for a reason:
//
//   - NICs are matched by PermanentMACAddress=, not MACAddress=: a bond
//     gives its members its own MAC and a VLAN inherits its link's, so a
//     match on the current MAC would also catch the bond or the VLAN (and
//     lose the second member once it is enslaved). Bonds and VLANs, which
//     networkd creates under kiln's names, are matched by Name=.
//   - A bond is given the MAC of the NIC that netboots (else of its first
//     member): the LAN keeps seeing the machine as it did at netboot (the
//     ISP box's ARP and lease tables), and a reinstall, which makes a new
//     machine-id, does not change it as networkd's generated MAC would.
//   - 802.3ad: LACPTransmitRate=fast notices a dead member in 3 s rather
//     than 90 s; TransmitHashPolicy=layer3+4 spreads Ceph's many TCP
//     connections between the same two hosts over the members (layer2,
//     the default, would put them all on one). active-backup: the first
//     member is primary, and PrimaryReselectPolicy=failure keeps the bond
//     on the backup until the backup fails, so a flapping primary does
//     not flap the bond. Both watch carrier with MIIMonitorSec=100ms (the
//     kernel's default is no monitoring at all).
//   - Members have RequiredForOnline=no: one unplugged member must not hold
//     up systemd-networkd-wait-online (and first boot) until its timeout;
//     the bond, which is up while any member is, is what counts.
//   - A bond's MTU is in its .netdev too, so it is created at that size and
//     its members are enslaved at it. A VLAN's is not (creating a VLAN
//     larger than its link, not yet raised, fails); its .network sets it,
//     and it is written out even when inherited, because a VLAN created
//     before its link was raised would otherwise stay at 1500.
//   - The LAN stays at 1500 bytes on a jumbo link (the ISP box, the gate
//     and single-NIC machines are at 1500, and no router on the segment
//     would tell a sender its frames are too large): its prefix route and
//     default route carry MTUBytes=1500, the route MTU that TCP's MSS and
//     the kernel's fragmentation follow.
//   - The cluster network has an address and nothing else: no gateway, no
//     DNS, it is not routed.
//
// The role OS carries no kernel modules: whatever networkd creates here
// needs its module loaded by kiln-init before switch_root. bonding and
// 8021q are in image/initramfs's amd64 module list, bonding with
// max_bonds=0 (initramfs.ModuleParams): loading it otherwise creates a
// bond0 of its own, which networkd would adopt without applying its mode.
// First boot checks each bond from inside (installer/firstboot's bonds
// task: /proc/net/bonding and the bond's addresses, KILN-NET-BOND on the
// console), so a bond in the wrong mode, with no member up or without its
// address fails the network phase rather than going unnoticed.

// Link kinds.
const (
	LinkNIC  = "nic"
	LinkBond = "bond"
	LinkVLAN = "vlan"
)

// Link is one of a machine's network interfaces as networkd configures it.
type Link struct {
	// Name is the kernel's name of a bond or VLAN (bond0, vlan20); a NIC
	// keeps the kernel's name, and this is the profile's label for it.
	Name string `json:"name"`
	Kind string `json:"kind"` // LinkNIC, LinkBond or LinkVLAN
	// MAC is a NIC's permanent MAC, by which networkd finds it, or the
	// MAC kiln gives a bond.
	MAC     string `json:"mac,omitempty"`
	Bond    string `json:"bond,omitempty"`    // the bond a NIC is a member of
	Primary bool   `json:"primary,omitempty"` // the primary member of an active-backup bond
	Netboot bool   `json:"netboot,omitempty"` // the NIC that netboots (the machine's MAC)
	Mode    string `json:"mode,omitempty"`    // a bond's mode
	// Members are a bond's NICs, by label.
	Members []string `json:"members,omitempty"`
	VLAN    int      `json:"vlan,omitempty"` // a VLAN's id
	Link    string   `json:"link,omitempty"` // the link a VLAN is on
	VLANs   []string `json:"vlans,omitempty"`
	// MTU is what kiln sets; 0 leaves the kernel's (1500).
	MTU int `json:"mtu,omitempty"`
	// LAN: the link carries the lab's LAN, untagged.
	LAN bool `json:"lan,omitempty"`
	// Cluster is the link's address on the cluster network, with its
	// prefix length.
	Cluster string `json:"cluster,omitempty"`
}

// Links resolves machine m's interfaces, NICs then bonds then VLANs, in
// profile order; nil when the profile lists none (the NIC of m.MAC alone
// carries the LAN). p and m must be validated.
func Links(p *profiles.Profile, m *profiles.Machine) []Link {
	in := m.Interfaces
	if in == nil {
		return nil
	}
	var links []Link
	at := map[string]int{}
	add := func(l Link) {
		at[l.Name] = len(links)
		links = append(links, l)
	}
	for _, n := range in.NICs {
		add(Link{Name: n.Name, Kind: LinkNIC, MAC: strings.ToLower(n.MAC), MTU: n.MTU,
			Netboot: strings.EqualFold(n.MAC, m.MAC)})
	}
	lan := ""
	for _, b := range in.Bonds {
		l := Link{Name: b.Name, Kind: LinkBond, Mode: b.Mode, Members: slices.Clone(b.Members), MTU: b.MTU}
		for k, name := range b.Members {
			nic := &links[at[name]]
			nic.Bond = b.Name
			nic.Primary = k == 0 && b.Mode == profiles.BondActiveBackup
			if nic.Netboot {
				l.MAC, lan = nic.MAC, b.Name
			}
		}
		l.MAC = cmp.Or(l.MAC, links[at[b.Members[0]]].MAC)
		add(l)
	}
	for _, v := range in.VLANs {
		name := fmt.Sprintf("vlan%d", v.ID)
		parent := &links[at[v.Link]]
		parent.VLANs = append(parent.VLANs, name)
		add(Link{Name: name, Kind: LinkVLAN, VLAN: v.ID, Link: v.Link, MTU: cmp.Or(v.MTU, parent.MTU)})
	}
	for i := range links {
		if lan == "" && links[i].Netboot {
			lan = links[i].Name
		}
	}
	links[at[lan]].LAN = true
	if c := in.Cluster; c != nil && p.Network.Cluster != nil {
		if prefix, err := netip.ParsePrefix(p.Network.Cluster.CIDR); err == nil {
			links[at[c.Link]].Cluster = fmt.Sprintf("%s/%d", c.Address, prefix.Bits())
		}
	}
	return links
}

// netFile is one rendered networkd file.
type netFile struct{ path, contents string }

// networkdFiles renders links as networkd files: per link its .netdev (for
// bonds and VLANs), then its .network.
func networkdFiles(id Identity, links []Link) []netFile {
	var out []netFile
	for _, l := range links {
		base := NetworkDir + "10-kiln-" + l.Name
		if l.Kind != LinkNIC {
			out = append(out, netFile{base + ".netdev", netdev(id, l)})
		}
		out = append(out, netFile{base + ".network", network(id, l)})
	}
	return out
}

func netdev(id Identity, l Link) string {
	var b strings.Builder
	switch l.Kind {
	case LinkBond:
		fmt.Fprintf(&b, "# Written by kiln: %s of lab %s, %s: %s of %s.\n", id.Name, id.Lab, l.Name, l.Mode, strings.Join(l.Members, " and "))
		fmt.Fprintf(&b, "[NetDev]\nName=%s\nKind=bond\nMACAddress=%s\n", l.Name, l.MAC)
		if l.MTU != 0 {
			fmt.Fprintf(&b, "MTUBytes=%d\n", l.MTU)
		}
		fmt.Fprintf(&b, "\n[Bond]\nMode=%s\n", l.Mode)
		switch l.Mode {
		case profiles.Bond8023ad:
			b.WriteString("LACPTransmitRate=fast\nTransmitHashPolicy=layer3+4\n")
		case profiles.BondActiveBackup:
			b.WriteString("PrimaryReselectPolicy=failure\n")
		}
		b.WriteString("MIIMonitorSec=100ms\n")
	case LinkVLAN:
		fmt.Fprintf(&b, "# Written by kiln: %s of lab %s, %s: VLAN %d on %s.\n", id.Name, id.Lab, l.Name, l.VLAN, l.Link)
		fmt.Fprintf(&b, "[NetDev]\nName=%s\nKind=vlan\n\n[VLAN]\nId=%d\n", l.Name, l.VLAN)
	}
	return b.String()
}

func network(id Identity, l Link) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by kiln: %s of lab %s, %s.\n", id.Name, id.Lab, describe(l))
	if l.Kind == LinkNIC {
		fmt.Fprintf(&b, "[Match]\nPermanentMACAddress=%s\n", l.MAC)
	} else {
		fmt.Fprintf(&b, "[Match]\nName=%s\n", l.Name)
	}
	switch {
	case l.Bond != "":
		b.WriteString("\n[Link]\nRequiredForOnline=no\n")
	case l.MTU != 0:
		fmt.Fprintf(&b, "\n[Link]\nMTUBytes=%d\n", l.MTU)
	}
	b.WriteString("\n[Network]\n")
	if l.Bond != "" {
		fmt.Fprintf(&b, "Bond=%s\n", l.Bond)
		if l.Primary {
			b.WriteString("PrimarySlave=yes\n")
		}
	}
	capped := l.LAN && l.MTU > profiles.DefaultMTU
	if l.LAN {
		if !capped {
			fmt.Fprintf(&b, "Address=%s\nGateway=%s\n", id.Address, id.Gateway)
		}
		writeDNSNTP(&b, id)
	}
	if l.Cluster != "" {
		fmt.Fprintf(&b, "Address=%s\n", l.Cluster)
	}
	for _, v := range l.VLANs {
		fmt.Fprintf(&b, "VLAN=%s\n", v)
	}
	if capped {
		lanRoutes(&b, id)
	}
	return b.String()
}

// lanRoutes puts the LAN address on a jumbo link with routes at the LAN's
// MTU. The default route is on-link so that it does not depend on the
// prefix route being in place first.
func lanRoutes(b *strings.Builder, id Identity) {
	p := netip.MustParsePrefix(id.Address)
	fmt.Fprintf(b, "\n# The link is jumbo for what is above it; the LAN stays at %d bytes.\n", profiles.DefaultMTU)
	fmt.Fprintf(b, "[Address]\nAddress=%s\nAddPrefixRoute=no\n", id.Address)
	fmt.Fprintf(b, "\n[Route]\nDestination=%s\nScope=link\nMTUBytes=%d\n", p.Masked(), profiles.DefaultMTU)
	fmt.Fprintf(b, "\n[Route]\nGateway=%s\nGatewayOnLink=yes\nMTUBytes=%d\n", id.Gateway, profiles.DefaultMTU)
}

// describe says in the file's first line what the link is and carries.
func describe(l Link) string {
	var what []string
	switch l.Kind {
	case LinkNIC:
		what = append(what, "NIC "+l.Name)
	case LinkBond:
		what = append(what, fmt.Sprintf("%s (%s)", l.Name, l.Mode))
	case LinkVLAN:
		what = append(what, fmt.Sprintf("%s (VLAN %d on %s)", l.Name, l.VLAN, l.Link))
	}
	if l.Netboot {
		what = append(what, "the NIC it netboots from")
	}
	if l.Bond != "" {
		what = append(what, "a member of "+l.Bond)
	}
	if l.LAN {
		what = append(what, "the LAN")
	}
	if l.Cluster != "" {
		what = append(what, "the cluster network (not routed)")
	}
	return strings.Join(what, ", ")
}

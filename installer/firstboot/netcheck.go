package firstboot

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/kilnlab/kiln/roles"
)

// The network phase's "bonds" task, on a machine whose profile lists
// bonds: waiting for the LAN address (wait-address) does not show that a
// bond is what carries it, nor in which mode, nor over which members. So
// the task looks at each planned bond from inside, in the kernel's own
// words (/proc/net/bonding/<bond>) and on the bond's addresses, and prints
// one line per bond on the console:
//
//	KILN-NET-BOND bond0 mode=active-backup slaves=enp0s2,enp0s3 up=2 address=192.168.1.34/24 mac=52:54:00:00:0d:01 active=enp0s2
//
// (slaves by their kernel names; active= for active-backup; missing=
// names the planned members the bond does not hold, if any). It fails,
// printing KILN-NET-BOND-FAILED, when within NetCheck.Timeout a bond does
// not exist, is in another mode than planned (the sign of a bond networkd
// found already made rather than made itself), has no member up, or does
// not carry its planned addresses; the phase is then retried like any
// other. A missing member alone does not fail it: an unplugged NIC must
// not hold up the machine, as it does not hold up networkd.

// NetCheck is what the bonds task reads. A nil *NetCheck, like its zero
// fields, means the running system and the defaults.
type NetCheck struct {
	// Root is where proc/net/bonding is read ("" is /).
	Root string
	// Link reports a network interface by its kernel name; nil asks the
	// running kernel (package net).
	Link func(name string) (LinkState, error)
	// Poll is how often a bond is looked at again; 0 means 1 s.
	Poll time.Duration
	// Timeout bounds the wait for each bond; 0 means 1 min (networkd has
	// already put the LAN address up when the task starts).
	Timeout time.Duration
}

// LinkState is what the bonds task needs of an interface.
type LinkState struct {
	MAC   string // lower case, colon-separated
	Addrs []netip.Prefix
}

// bondTasks is the network phase's bonds task, when the machine has bonds.
func (e *Env) bondTasks() []Task {
	if !slices.ContainsFunc(e.Machine.Links, isBond) {
		return nil
	}
	return []Task{{Name: "bonds", Run: e.checkBonds}}
}

func isBond(l roles.Link) bool { return l.Kind == roles.LinkBond }

// checkBonds checks every planned bond, each printing its line.
func (e *Env) checkBonds(ctx context.Context) error {
	var errs []error
	for _, l := range e.Machine.Links {
		if !isBond(l) {
			continue
		}
		line, err := e.waitBond(ctx, l)
		if err != nil {
			fmt.Fprintf(e.Console, "KILN-NET-BOND-FAILED %s: %v\n", l.Name, err)
			errs = append(errs, fmt.Errorf("bond %s: %w", l.Name, err))
			continue
		}
		fmt.Fprintln(e.Console, line)
	}
	return errors.Join(errs...)
}

// waitBond looks at bond l until it is as planned, and returns its
// console line; after the timeout, the last reason it was not.
func (e *Env) waitBond(outer context.Context, l roles.Link) (string, error) {
	nc := e.Net
	if nc == nil {
		nc = &NetCheck{}
	}
	want, err := e.bondAddrs(l)
	if err != nil {
		return "", err
	}
	limit := or(nc.Timeout, time.Minute)
	ctx, cancel := context.WithTimeout(outer, limit)
	defer cancel()
	for {
		line, err := nc.lookAtBond(l, want, e.memberMACs(l))
		if err == nil {
			return line, nil
		}
		select {
		case <-ctx.Done():
			if outer.Err() != nil {
				return "", outer.Err()
			}
			return "", fmt.Errorf("%w (still, after %s)", err, limit)
		case <-time.After(or(nc.Poll, time.Second)):
		}
	}
}

// bondAddrs are the addresses bond l must carry: the LAN's, the cluster
// network's, both or neither (a bond under VLANs only).
func (e *Env) bondAddrs(l roles.Link) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range []struct {
		carries bool
		addr    string
	}{{l.LAN, e.Machine.Address}, {l.Cluster != "", l.Cluster}} {
		if !s.carries {
			continue
		}
		p, err := netip.ParsePrefix(s.addr)
		if err != nil {
			return nil, fmt.Errorf("planned address of %s: %w", l.Name, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// memberMACs maps the permanent MACs of bond l's planned members to their
// labels in the profile.
func (e *Env) memberMACs(l roles.Link) map[string]string {
	out := map[string]string{}
	for _, n := range e.Machine.Links {
		if n.Kind == roles.LinkNIC && n.Bond == l.Name {
			out[strings.ToLower(n.MAC)] = n.Name
		}
	}
	return out
}

// lookAtBond looks once at bond l and returns its console line, or why it
// is not as planned.
func (nc *NetCheck) lookAtBond(l roles.Link, want []netip.Prefix, members map[string]string) (string, error) {
	b, err := nc.readBonding(l.Name)
	if err != nil {
		return "", err
	}
	if b.Mode != l.Mode {
		return "", fmt.Errorf("mode %s, planned %s (a bond networkd did not make?)", b.Mode, l.Mode)
	}
	up := b.up()
	if up == 0 {
		return "", fmt.Errorf("no member up of %d (%s)", len(b.Slaves), strings.Join(b.names(), ","))
	}
	st, err := nc.link(l.Name)
	if err != nil {
		return "", err
	}
	for _, w := range want {
		if !slices.Contains(st.Addrs, w) {
			return "", fmt.Errorf("does not carry %s (has %v)", w, st.Addrs)
		}
	}
	return bondLine(l.Name, b, up, want, st.MAC, missing(b, members)), nil
}

// bondLine is a bond's KILN-NET-BOND line.
func bondLine(name string, b bonding, up int, addrs []netip.Prefix, mac string, missing []string) string {
	var s strings.Builder
	fmt.Fprintf(&s, "KILN-NET-BOND %s mode=%s slaves=%s up=%d address=%s mac=%s",
		name, b.Mode, strings.Join(b.names(), ","), up, joinOr(addrs, "none"), mac)
	if b.Mode == "active-backup" {
		fmt.Fprintf(&s, " active=%s", cmp.Or(b.Active, "none"))
	}
	if len(missing) > 0 {
		fmt.Fprintf(&s, " missing=%s", strings.Join(missing, ","))
	}
	return s.String()
}

// missing are the labels of the planned members that are not slaves of b,
// by permanent MAC (a slave's current MAC is the bond's).
func missing(b bonding, members map[string]string) []string {
	var out []string
	for mac, label := range members {
		if !slices.ContainsFunc(b.Slaves, func(s bondSlave) bool { return s.PermMAC == mac }) {
			out = append(out, label)
		}
	}
	slices.Sort(out)
	return out
}

func joinOr(ps []netip.Prefix, none string) string {
	if len(ps) == 0 {
		return none
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// readBonding reads and parses /proc/net/bonding/<name>.
func (nc *NetCheck) readBonding(name string) (bonding, error) {
	f, err := os.Open(filepath.Join(nc.Root, "/proc/net/bonding", name))
	if errors.Is(err, os.ErrNotExist) {
		return bonding{}, fmt.Errorf("no /proc/net/bonding/%s: the bond does not exist (bonding not loaded, or networkd has not made it yet)", name)
	}
	if err != nil {
		return bonding{}, err
	}
	defer f.Close()
	return parseBonding(f)
}

// link reports interface name through Link, or the running kernel.
func (nc *NetCheck) link(name string) (LinkState, error) {
	if nc.Link != nil {
		return nc.Link(name)
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return LinkState{}, err
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return LinkState{}, fmt.Errorf("addresses of %s: %w", name, err)
	}
	st := LinkState{MAC: ifi.HardwareAddr.String()}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, _ := netip.AddrFromSlice(n.IP)
		bits, _ := n.Mask.Size()
		st.Addrs = append(st.Addrs, netip.PrefixFrom(ip.Unmap(), bits))
	}
	return st, nil
}

// bonding is what kiln reads of /proc/net/bonding/<bond>, the bonding
// driver's own report (drivers/net/bonding/bond_procfs.c).
type bonding struct {
	// Mode is the mode by its networkd and iproute2 name (active-backup,
	// 802.3ad, ...), not the file's description of it.
	Mode   string
	Up     bool   // the bond's MII status (its carrier)
	Active string // the currently active slave, when the mode has one
	Slaves []bondSlave
}

// bondSlave is one slave of a bond.
type bondSlave struct {
	Name    string // the kernel's name
	Up      bool   // its MII status is "up" (not "down", "going down" or "going back")
	PermMAC string // its permanent MAC, lower case
}

func (b bonding) up() int {
	n := 0
	for _, s := range b.Slaves {
		if s.Up {
			n++
		}
	}
	return n
}

func (b bonding) names() []string {
	out := make([]string, len(b.Slaves))
	for i, s := range b.Slaves {
		out[i] = s.Name
	}
	return out
}

// bondModes are the bonding driver's descriptions of its modes
// (bond_mode_name), by their networkd names. A description may be
// followed by more, e.g. "(fail_over_mac active)".
var bondModes = []struct{ desc, mode string }{
	{"load balancing (round-robin)", "balance-rr"},
	{"fault-tolerance (active-backup)", "active-backup"},
	{"load balancing (xor)", "balance-xor"},
	{"fault-tolerance (broadcast)", "broadcast"},
	{"IEEE 802.3ad Dynamic link aggregation", "802.3ad"},
	{"transmit load balancing", "balance-tlb"},
	{"adaptive load balancing", "balance-alb"},
}

// parseBonding reads /proc/net/bonding/<bond>: "Key: value" lines, the
// bond's first, then each slave's from its "Slave Interface:" line on.
// Indented lines (802.3ad's aggregator and LACP details) and keys kiln
// does not use are skipped, so that lines a newer kernel adds do not
// break it.
func parseBonding(r io.Reader) (bonding, error) {
	var b bonding
	cur := -1 // the slave whose lines these are; -1: the bond's
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		var err error
		switch {
		case key == "Slave Interface":
			if !validIfName(val) {
				return bonding{}, fmt.Errorf("bonding line %d: slave name %q", n, val)
			}
			b.Slaves = append(b.Slaves, bondSlave{Name: val})
			cur = len(b.Slaves) - 1
		case cur < 0:
			err = b.master(key, val)
		default:
			b.Slaves[cur].set(key, val)
		}
		if err != nil {
			return bonding{}, fmt.Errorf("bonding line %d: %w", n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return bonding{}, fmt.Errorf("read bonding: %w", err)
	}
	if b.Mode == "" {
		return bonding{}, errors.New("bonding: no \"Bonding Mode:\" line")
	}
	return b, nil
}

// master takes one line of the bond's own part.
func (b *bonding) master(key, val string) error {
	switch key {
	case "Bonding Mode":
		for _, m := range bondModes {
			if strings.HasPrefix(val, m.desc) {
				b.Mode = m.mode
				return nil
			}
		}
		return fmt.Errorf("unknown bonding mode %q", val)
	case "Currently Active Slave":
		if val != "None" {
			if !validIfName(val) {
				return fmt.Errorf("active slave %q", val)
			}
			b.Active = val
		}
	case "MII Status":
		b.Up = val == "up"
	}
	return nil
}

// set takes one line of a slave's part.
func (s *bondSlave) set(key, val string) {
	switch key {
	case "MII Status":
		s.Up = val == "up"
	case "Permanent HW addr":
		s.PermMAC = strings.ToLower(val)
	}
}

// validIfName is the kernel's rule for an interface name (dev_valid_name):
// 1 to 15 bytes, not . or .., no slash, colon or white space. The console
// line carries names as they are, so nothing else may get through.
func validIfName(s string) bool {
	if s == "" || len(s) > 15 || s == "." || s == ".." {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool { return r == '/' || r == ':' || unicode.IsSpace(r) })
}

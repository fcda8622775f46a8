package plan

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/roles"
)

// ErrNoGate is returned for a profile without a gate machine.
var ErrNoGate = errors.New("the profile has no gate")

// Compute plans the lab described by p, which must come from
// profiles.Load/Parse (validated). It is deterministic: the same profile
// gives the same plan, byte for byte once encoded.
func Compute(p *profiles.Profile) (*Plan, error) {
	prefix, err := netip.ParsePrefix(p.Network.CIDR)
	if err != nil {
		return nil, fmt.Errorf("plan %s: network.cidr: %w", p.Name, err)
	}
	gate, ok := findGate(p)
	if !ok {
		return nil, fmt.Errorf("plan %s: %w", p.Name, ErrNoGate)
	}
	pl := &Plan{
		Lab:  p.Name,
		Gate: Gate{Name: gate.Name, Address: gate.Address},
		Network: Network{
			CIDR: p.Network.CIDR, Gateway: p.Network.Gateway, DNS: p.Network.DNS, NTP: p.Network.NTP,
			DHCPMode: p.Network.DHCP.Mode, Range: p.Network.DHCP.Range,
		},
	}
	if c := p.Network.Cluster; c != nil {
		pl.Network.Cluster = c.CIDR
	}
	gateURL := fmt.Sprintf("http://%s:%d", gate.Address, roles.GatePort)
	for _, m := range p.Machines {
		pm, err := machine(p, m, prefix, gateURL)
		if err != nil {
			return nil, fmt.Errorf("plan %s: %w", p.Name, err)
		}
		pm.Services = machineServices(p, m)
		pl.Machines = append(pl.Machines, pm)
	}
	pl.Services = services(p)
	return pl, nil
}

func findGate(p *profiles.Profile) (profiles.Machine, bool) {
	for _, m := range p.Machines {
		if m.Role == profiles.RoleGate {
			return m, true
		}
	}
	return profiles.Machine{}, false
}

func machine(p *profiles.Profile, m profiles.Machine, prefix netip.Prefix, gateURL string) (Machine, error) {
	role, err := roles.Lookup(m.Role)
	if err != nil {
		return Machine{}, fmt.Errorf("%s: %w", m.Name, err)
	}
	phases, err := roles.FirstBootPhases(p, &m)
	if err != nil {
		return Machine{}, fmt.Errorf("%s: %w", m.Name, err)
	}
	pm := Machine{
		Name: m.Name, Role: m.Role, Board: m.Board, Arch: m.Arch, Firmware: m.Firmware,
		MAC: strings.ToLower(m.MAC), Address: fmt.Sprintf("%s/%d", m.Address, prefix.Bits()),
		Gateway: p.Network.Gateway, DNS: p.Network.DNS, Hostname: m.Name,
		FirstBoot: phases,
		Links:     roles.Links(p, &m),
	}
	for _, l := range pm.Links {
		pm.ClusterAddress = cmp.Or(pm.ClusterAddress, l.Cluster)
	}
	if m.Role == profiles.RoleGate {
		pm.DiskBoot = gateBoot
		pm.Disks = gateDisks(m.Disks)
		return pm, nil
	}
	if role.HasRootfs() {
		pm.RoleImage = "roles/" + role.Name + ".squashfs"
	}
	pm.Netboot, pm.DiskBoot = netboot(m.Firmware, gateURL), diskBoot(m.Firmware)
	for _, d := range m.Disks {
		pd, err := disk(p.Name, m.Name, d, role.DataPartition)
		if err != nil {
			return Machine{}, err
		}
		pm.Disks = append(pm.Disks, pd)
		if pd.Layout != nil {
			pm.Cmdline = cmdline(pd.Layout)
		}
	}
	if pm.Cmdline == "" {
		return Machine{}, fmt.Errorf("%s: no system disk", m.Name)
	}
	return pm, nil
}

func disk(lab, machine string, d profiles.Disk, data string) (Disk, error) {
	pd := Disk{
		Name: d.Name, Serial: d.Serial, WWN: d.WWN, Size: uint64(d.Size), Use: d.Use, Wipe: d.Wipe,
		Action: ActionClear, Reinstall: ActionKeep,
	}
	if d.Use != profiles.UseSystem {
		return pd, nil
	}
	l, err := SystemLayout(lab, machine, d, data)
	if err != nil {
		return Disk{}, err
	}
	pd.Action, pd.Reinstall, pd.Layout = ActionPartition, ActionPartition, l
	return pd, nil
}

// gateDisks lists the gate's card(s): written from the gate image by the
// user, so no layout here (the gate image builder owns it).
func gateDisks(ds []profiles.Disk) []Disk {
	var out []Disk
	for _, d := range ds {
		out = append(out, Disk{Name: d.Name, Serial: d.Serial, WWN: d.WWN, Size: uint64(d.Size),
			Use: d.Use, Wipe: d.Wipe, Action: ActionFlash})
	}
	return out
}

func cmdline(l *Layout) string {
	root, _ := l.Partition(ContentRoot)
	state, _ := l.Partition(ContentState)
	return BootCmdline(root.GUID, state.GUID)
}

// Machine returns the plan of the machine called name.
func (p *Plan) Machine(name string) (*Machine, bool) {
	for i := range p.Machines {
		if p.Machines[i].Name == name {
			return &p.Machines[i], true
		}
	}
	return nil, false
}

// MachineByMAC returns the plan of the machine whose netboot NIC has mac
// (any case, colon separated), as the gate looks machines up.
func (p *Plan) MachineByMAC(mac string) (*Machine, bool) {
	for i := range p.Machines {
		if strings.EqualFold(p.Machines[i].MAC, mac) {
			return &p.Machines[i], true
		}
	}
	return nil, false
}

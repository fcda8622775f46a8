package profiles

import (
	"net"
	"strings"
)

// Machine and disk rules.

func (v *validator) machine(i int) {
	m := &v.p.Machines[i]
	f := field("machines", i)
	if v.label(f+".name", m.Name, "machine name (an RFC 1123 host name)") {
		v.claim(f+".name", "name of a machine", m.Name, "")
	}
	v.oneOf(f+".role", m.Role, roles)
	v.hardware(f, m)
	v.mac(f+".mac", m.MAC, m.Name)
	if v.required(f+".address", m.Address) {
		v.machineAddr(f+".address", m.Address, m.Name)
	}
	if v.present(f+".memory") && m.Memory < MinMemory {
		v.ps.add(f+".memory", "%s is less than the %s a machine needs to run its role (a size without its unit? write e.g. 16GiB)", m.Memory, Size(MinMemory))
	}
	v.interfaces(i)
	systems := 0
	for j := range m.Disks {
		v.disk(m, i, j)
		if m.Disks[j].Use == UseSystem {
			systems++
		}
	}
	if (m.Role == RoleStorage || m.Role == RoleCompute) && systems != 1 {
		v.ps.add(f+".disks", "want exactly one disk with use: system, found %d", systems)
	}
	if m.WireGuard != nil {
		v.wireguard(f+".wireguard", m)
	}
}

// hardware checks board, arch and firmware against each other and the role.
func (v *validator) hardware(f string, m *Machine) {
	board := v.oneOf(f+".board", m.Board, boards)
	arch := v.oneOf(f+".arch", m.Arch, arches)
	switch {
	case !board:
	case m.Board == BoardPC:
		if arch && m.Arch != "amd64" {
			v.ps.add(f+".arch", "board pc is amd64, not %s", m.Arch)
		}
		v.oneOf(f+".firmware", m.Firmware, firmwares)
	case m.Board == BoardRPi4:
		if arch && m.Arch != "arm64" {
			v.ps.add(f+".arch", "board rpi4 is arm64, not %s", m.Arch)
		}
		if m.Firmware != "" {
			v.ps.add(f+".firmware", "only board pc has a firmware choice")
		}
		if m.Role != RoleGate && m.Role != "" {
			v.ps.add(f+".board", "board rpi4 can only be the gate (role gate)")
		}
	}
	if m.Role == RoleGate && board && m.Board != BoardRPi4 {
		v.ps.add(f+".board", "the gate must be board rpi4, not %s", m.Board)
	}
}

func (v *validator) mac(f, mac, owner string) {
	if v.macAddr(f, mac) {
		v.claim(f, "MAC", mac, owner)
	}
}

// macAddr checks the spelling of a network card's MAC.
func (v *validator) macAddr(f, mac string) bool {
	if !v.required(f, mac) {
		return false
	}
	hw, err := net.ParseMAC(mac)
	switch {
	case err != nil || !macRE.MatchString(mac):
		v.ps.add(f, "%q is not a MAC address such as 52:54:00:12:34:56", mac)
	case hw[0]&1 == 1:
		v.ps.add(f, "%s is a multicast address, not a network card's", mac)
	default:
		return true
	}
	return false
}

// gates checks that exactly one machine is the gate.
func (v *validator) gates() {
	first := -1
	for i, m := range v.p.Machines {
		switch {
		case m.Role != RoleGate:
		case first < 0:
			first = i
		default:
			v.ps.add(field("machines", i)+".role", "a second gate (the first is %s, line %d); a lab has exactly one",
				v.p.Machines[first].Name, v.ps.pos.near(field("machines", first)+".role").Line)
		}
	}
	if first < 0 {
		v.ps.add("machines", "no machine has role gate; a lab needs exactly one (a Raspberry Pi 4)")
	}
}

func (v *validator) disk(m *Machine, i, j int) {
	d := &m.Disks[j]
	f := field("machines", i) + field(".disks", j)
	owner := m.Name + " disk " + d.Name
	if v.label(f+".name", d.Name, "disk name") {
		v.claim(f+".name", "name of a disk of "+m.Name, d.Name, "")
	}
	if d.Size == 0 {
		v.ps.add(f+".size", "required (the disk's capacity, e.g. 1TB)")
	}
	v.oneOf(f+".use", d.Use, uses)
	v.diskID(f, d, owner, m.Role != RoleGate)
	if d.SystemSize != 0 && d.Use != UseSystem {
		v.ps.add(f+".system_size", "only a disk with use: system has a system_size")
	}
	if m.Role != RoleGate && d.Use == UseSystem && d.Size != 0 {
		if _, err := SystemSlices(d.Size, d.SystemSize); err != nil {
			v.ps.add(fitField(f, d), "%v", err)
		}
	}
}

// diskID checks the disk's stable identifiers; the installer finds disks by
// them alone, so a machine kiln installs needs one on every disk.
func (v *validator) diskID(f string, d *Disk, owner string, needed bool) {
	if d.Serial == "" && d.WWN == "" && needed {
		v.ps.add(f, "a disk without serial or wwn: the installer could not find it (/dev names change between boots)")
	}
	if d.Serial != "" {
		if !serialRE.MatchString(d.Serial) {
			v.ps.add(f+".serial", "%q has spaces or non-ASCII characters; write it as udev's ID_SERIAL_SHORT does (spaces as _)", d.Serial)
		} else {
			v.claim(f+".serial", "serial", d.Serial, owner)
		}
	}
	if d.WWN != "" {
		if !wwnRE.MatchString(d.WWN) {
			v.ps.add(f+".wwn", "%q is not a WWN as udev's ID_WWN spells it (0x, naa. or eui. and 16 or 32 hex digits)", d.WWN)
		} else {
			v.claim(f+".wwn", "WWN", d.WWN, owner)
		}
	}
}

// fitField names the field a layout that does not fit is blamed on.
func fitField(f string, d *Disk) string {
	if d.SystemSize != 0 {
		return f + ".system_size"
	}
	return f + ".size"
}

// normalize lowercases what compares case-insensitively, so every consumer
// of a validated profile sees one spelling, and fills the defaults that
// need validated values.
func normalize(p *Profile) {
	for i := range p.Machines {
		m := &p.Machines[i]
		wireguardDefaults(m)
		m.MAC = strings.ToLower(m.MAC)
		if in := m.Interfaces; in != nil {
			for j := range in.NICs {
				in.NICs[j].MAC = strings.ToLower(in.NICs[j].MAC)
			}
		}
		for j := range m.Disks {
			m.Disks[j].WWN = strings.ToLower(m.Disks[j].WWN)
		}
	}
}

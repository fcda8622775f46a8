package plan

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/roles"
)

// WriteJSON writes the plan as indented JSON, the form machines read
// (plan.json in the netboot bundle, `kiln plan --json`).
func WriteJSON(w io.Writer, p *Plan) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // boot chains read "->", not "-\u003e"
	return enc.Encode(p)
}

// WriteTable writes the plan for people: a summary row per machine, then
// each machine's boot chain and disks, and each system disk's partitions.
func WriteTable(w io.Writer, p *Plan) error {
	ew := &errWriter{w: w}
	cluster := ""
	if p.Network.Cluster != "" {
		cluster = ", cluster network " + p.Network.Cluster + " (not routed)"
	}
	fmt.Fprintf(ew, "lab %s: network %s, gateway %s%s, DHCP %s, gate %s at %s\n\n",
		p.Lab, p.Network.CIDR, p.Network.Gateway, cluster, p.Network.DHCPMode, p.Gate.Name, p.Gate.Address)
	tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MACHINE\tROLE\tBOARD\tFIRMWARE\tMAC\tADDRESS\tROLE IMAGE")
	for _, m := range p.Machines {
		fmt.Fprintf(tw, "%s\t%s\t%s/%s\t%s\t%s\t%s\t%s\n",
			m.Name, m.Role, m.Board, m.Arch, dash(m.Firmware), m.MAC, m.Address, dash(m.RoleImage))
	}
	tw.Flush()
	for _, m := range p.Machines {
		writeMachine(ew, m)
	}
	return ew.err
}

func writeMachine(w io.Writer, m Machine) {
	fmt.Fprintf(w, "\n%s (%s)\n", m.Name, m.Role)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, kv := range [][2]string{
		{"netboot", m.Netboot}, {"disk boot", m.DiskBoot}, {"cmdline", m.Cmdline},
		{"first boot", strings.Join(m.FirstBoot, ", ")},
	} {
		if kv[1] != "" {
			fmt.Fprintf(tw, "  %s\t%s\n", kv[0], kv[1])
		}
	}
	tw.Flush()
	if len(m.Links) > 0 {
		writeLinks(w, m)
	}
	if len(m.Disks) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  DISK\tFOUND BY\tSIZE\tUSE\tACTION\tWIPE\tON REINSTALL")
	for _, d := range m.Disks {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Name, foundBy(d), profiles.Size(d.Size).Human(), d.Use, d.Action, yesNo(d.Wipe), onReinstall(d))
	}
	tw.Flush()
	for _, d := range m.Disks {
		if d.Layout != nil {
			writeLayout(w, d)
		}
	}
}

// writeLinks lists the machine's interfaces: how each is found or what it
// is on, its MTU, and what it carries.
func writeLinks(w io.Writer, m Machine) {
	fmt.Fprintln(w)
	mtu := map[string]int{}
	for _, l := range m.Links {
		mtu[l.Name] = cmp.Or(l.MTU, profiles.DefaultMTU)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  LINK\tKIND\tFOUND BY / ON\tMTU\tCARRIES")
	for _, l := range m.Links {
		kind, on, carries := l.Kind, "", []string{}
		switch l.Kind {
		case roles.LinkNIC:
			on = "mac " + l.MAC
		case roles.LinkBond:
			kind, on = "bond "+l.Mode, strings.Join(l.Members, ", ")
		case roles.LinkVLAN:
			kind, on = fmt.Sprintf("vlan %d", l.VLAN), l.Link
		}
		if l.Netboot {
			carries = append(carries, "netboots")
		}
		if l.Bond != "" {
			member := "member of " + l.Bond
			if l.Primary {
				member += " (primary)"
			}
			carries = append(carries, member)
			mtu[l.Name] = mtu[l.Bond]
		}
		if l.LAN {
			lan := "LAN " + m.Address
			if mtu[l.Name] > profiles.DefaultMTU {
				lan += fmt.Sprintf(" (routes at %d)", profiles.DefaultMTU)
			}
			carries = append(carries, lan)
		}
		if l.Cluster != "" {
			carries = append(carries, "cluster "+l.Cluster)
		}
		carries = append(carries, l.VLANs...)
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\n", l.Name, kind, on, mtu[l.Name], strings.Join(carries, ", "))
	}
	tw.Flush()
}

// onReinstall says what `kiln gate reinstall` does to a disk: a data disk
// is kept whole; a system disk gets its table and system partitions again
// and keeps its empty ones (an OSD's data partition).
func onReinstall(d Disk) string {
	switch d.Reinstall {
	case ActionKeep:
		return "kept"
	case ActionPartition:
		var kept []string
		if d.Layout != nil {
			for _, p := range d.Layout.Partitions {
				if p.Content == ContentEmpty {
					kept = append(kept, p.Name)
				}
			}
		}
		if len(kept) == 0 {
			return "rewritten"
		}
		return "rewritten, keeps " + strings.Join(kept, ", ")
	}
	return "-"
}

func writeLayout(w io.Writer, d Disk) {
	fmt.Fprintf(w, "\n  disk %s: GPT, disk GUID %s\n", d.Name, d.Layout.DiskGUID)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  #\tPARTITION\tSTART\tSIZE\t\tCONTENT\tPARTUUID\tON REINSTALL")
	for _, p := range d.Layout.Partitions {
		content := p.Content
		if p.LegacyBIOSBootable {
			content += ", BIOS bootable"
		}
		again := "rewritten"
		if p.Content == ContentEmpty {
			again = "kept"
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Number, p.Name, profiles.Size(p.Start),
			profiles.Size(p.Size), profiles.Size(p.Size).Human(), content, p.GUID, again)
	}
	tw.Flush()
}

func foundBy(d Disk) string {
	var ids []string
	if d.Serial != "" {
		ids = append(ids, "serial "+d.Serial)
	}
	if d.WWN != "" {
		ids = append(ids, "wwn "+d.WWN)
	}
	return dash(strings.Join(ids, ", "))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// errWriter keeps the first write error, so the table code stays linear.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(b []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(b)
	e.err = err
	return n, err
}

package pxe

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/pxe/httpd"
	"github.com/kilnlab/kiln/pxe/state"
)

// Sentinel errors for `kiln gate reinstall`.
var (
	ErrUnknownMachine = errors.New("no such machine in the plan")
	ErrNotNetbooted   = errors.New("machine is never netbooted")
)

// MachineStatus is one row of `kiln gate machines`.
type MachineStatus struct {
	Machine string    `json:"machine"`
	MAC     string    `json:"mac"`
	State   string    `json:"state"` // a state.* value, or "-" if never netbooted
	Updated time.Time `json:"updated,omitzero"`
	// Detail is the last progress report, the error, or the first boot.
	Detail string `json:"detail,omitempty"`
	// Phases and Health are the machine's first boot and its services'
	// last health as the status page shows them (httpd.FirstBoot,
	// httpd.ServicesHealth): someone at the gate's terminal sees what the
	// page does.
	Phases []httpd.PhaseStatus `json:"phases,omitempty"`
	Health *httpd.HealthStatus `json:"health,omitempty"`
	// PowerOn is the machine's last power-on as far as the gate can tell
	// (state.Record.PowerOn), where its services' time to healthy starts.
	PowerOn time.Time `json:"power_on,omitzero"`
}

func openStates(stateDir string) (*state.Store, error) {
	return state.Open(filepath.Join(stateDir, "machines"), nil)
}

// Machines lists every machine of the plan with its netboot state, in
// plan order. It reads the state directory the running gate writes.
func Machines(p *plan.Plan, stateDir string) ([]MachineStatus, error) {
	states, err := openStates(stateDir)
	if err != nil {
		return nil, err
	}
	out := make([]MachineStatus, 0, len(p.Machines))
	for i := range p.Machines {
		m := &p.Machines[i]
		mac, err := state.NormalizeMAC(m.MAC)
		if err != nil {
			return nil, fmt.Errorf("plan machine %s: %w", m.Name, err)
		}
		row := MachineStatus{Machine: m.Name, MAC: mac}
		if ok, why := httpd.Netboot(p, m); !ok {
			row.State, row.Detail = "-", "never netbooted: "+why
			out = append(out, row)
			continue
		}
		rec, err := states.Get(mac, m.Name)
		if err != nil {
			return nil, err
		}
		row.State, row.Updated, row.Detail, row.PowerOn = rec.State, rec.Updated, detail(rec), rec.PowerOn()
		if _, note := httpd.ReinstallNote(m, rec); note != "" {
			row.Detail = "re-armed: " + note
		}
		row.Phases, row.Health = httpd.FirstBoot(m.FirstBoot, rec.Phases), httpd.ServicesHealth(rec.Health)
		out = append(out, row)
	}
	return out, nil
}

func detail(r state.Record) string {
	switch {
	case r.State == state.Failed:
		return "error: " + r.Error
	case r.Booted != nil && r.State == state.Installed:
		return fmt.Sprintf("booted host=%s addr=%s", r.Booted.Hostname, r.Booted.Address)
	case r.Progress != nil:
		d := r.Progress.Phase
		if r.Progress.Message != "" {
			d += " " + r.Progress.Message
		}
		if r.Progress.Total > 0 {
			d += fmt.Sprintf(" %d/%d", r.Progress.Done, r.Progress.Total)
		}
		return d
	case r.State == state.Install && r.Updated.IsZero():
		return "waiting for its first netboot"
	}
	return ""
}

// WriteMachines prints rows as `kiln gate machines` shows them: a table
// with each machine's first boot and services in brief, then the lab's
// services table as the status page has it, then the full error of every
// failing phase and the detail of every service not ok.
func WriteMachines(w io.Writer, rows []MachineStatus) error {
	return writeMachines(w, rows, time.Now(), time.Local)
}

// writeMachines is WriteMachines at now, with times in loc (tests pin
// both).
func writeMachines(w io.Writer, rows []MachineStatus, now time.Time, loc *time.Location) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MACHINE\tMAC\tSTATE\tUPDATED\tFIRST BOOT\tSERVICES\tLAST")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cell(r.Machine), r.MAC, r.State, stamp(r.Updated, loc),
			cell(firstBootBrief(r.Phases)), cell(servicesBrief(r.Health, now)), cell(r.Detail))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := writeServices(w, rows, loc); err != nil {
		return err
	}
	return writeProblems(w, rows, loc)
}

// writeServices prints the lab's services table (httpd.ServiceRows), after
// a blank line; nothing before any machine reported its health.
func writeServices(w io.Writer, rows []MachineStatus, loc *time.Location) error {
	var services []httpd.ServiceRow
	for _, r := range rows {
		services = append(services, httpd.ServiceRows(r.Machine, r.PowerOn, r.Health)...)
	}
	if len(services) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MACHINE\tSERVICE\tVERDICT\tTIME TO HEALTHY\tSINCE\tDETAIL")
	for _, s := range services {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", cell(s.Machine), cell(s.Service), s.Verdict, s.TimeToHealthy(),
			stamp(s.Since, loc), cmp.Or(cell(s.Detail), "-"))
	}
	return tw.Flush()
}

// stamp is t in loc as the tables show a time, "-" when zero.
func stamp(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return "-"
	}
	return t.In(loc).Format(timeLayout)
}

// Reinstall re-arms a machine (by name or MAC): its next netboot installs
// it again, with a fresh token. It works while the gate is serving. Detail
// says what the reinstall of a UEFI machine, which boots its disk first,
// waits for (httpd.ReinstallNote).
func Reinstall(p *plan.Plan, stateDir, nameOrMAC string) (MachineStatus, error) {
	m, mac, err := findMachine(p, nameOrMAC)
	if err != nil {
		return MachineStatus{}, err
	}
	if ok, why := httpd.Netboot(p, m); !ok {
		return MachineStatus{}, fmt.Errorf("%s: %w (%s)", m.Name, ErrNotNetbooted, why)
	}
	states, err := openStates(stateDir)
	if err != nil {
		return MachineStatus{}, err
	}
	rec, err := states.Rearm(mac, m.Name)
	if err != nil {
		return MachineStatus{}, err
	}
	_, note := httpd.ReinstallNote(m, rec)
	return MachineStatus{Machine: m.Name, MAC: mac, State: rec.State, Updated: rec.Updated, Detail: note}, nil
}

func findMachine(p *plan.Plan, nameOrMAC string) (*plan.Machine, string, error) {
	want, macErr := state.NormalizeMAC(nameOrMAC)
	for i := range p.Machines {
		m := &p.Machines[i]
		mac, err := state.NormalizeMAC(m.MAC)
		if err != nil {
			continue
		}
		if m.Name == nameOrMAC || (macErr == nil && mac == want) {
			return m, mac, nil
		}
	}
	return nil, "", fmt.Errorf("%q: %w", nameOrMAC, ErrUnknownMachine)
}

package httpd

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"time"

	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/pxe/api"
	"github.com/kilnlab/kiln/pxe/state"
)

// Status is GET /status.json: the lab's machines in plan order, the lab's
// services table and the gate's own footprint. It carries no install
// token (DESIGN §10): it is built field by field from the state records,
// never by copying them.
type Status struct {
	Lab      string          `json:"lab"`
	GateURL  string          `json:"gate_url"`
	Now      time.Time       `json:"now"`
	Gate     GateStatus      `json:"gate"`
	Machines []MachineStatus `json:"machines"`
	// Services is the lab's services table: each machine's services from
	// its health, in plan order then the machine's, with the gate's
	// verdict and time to healthy (ServiceRows).
	Services []ServiceRow `json:"services"`
	// Refused lists the latest refused requests (installer API, reports
	// of installed machines), newest first.
	Refused []Refusal `json:"refused"`
}

// GateStatus is the gate's own line of the status.
type GateStatus struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	GateStats
}

// MachineStatus is one machine's line of the status.
type MachineStatus struct {
	Name     string `json:"name"`
	MAC      string `json:"mac"`
	Role     string `json:"role"`
	Board    string `json:"board"`
	Firmware string `json:"firmware,omitempty"`
	Address  string `json:"address"`
	// Netboot is false for machines kiln never netboots (the gate,
	// Raspberry Pis); NotNetbooted says why, and State means nothing.
	Netboot      bool   `json:"netboot"`
	NotNetbooted string `json:"not_netbooted,omitempty"`
	State        string `json:"state"`
	// Since is when the machine entered State (zero: never netbooted).
	Since    time.Time       `json:"since,omitzero"`
	Progress *ProgressStatus `json:"progress,omitempty"`
	Error    string          `json:"error,omitempty"`
	// Attempts counts the installs begun since the last result; from
	// state.MaxAttempts in a row the gate gives up (state Failed).
	Attempts int `json:"attempts,omitempty"`
	// Rearmed says why and when the gate itself re-armed the machine.
	Rearmed string `json:"rearmed,omitempty"`
	// NetbootNext: re-armed, the machine's OS has said since that its
	// next boot is a netboot (api.Health); Reinstall says what the
	// reinstall of an installed UEFI machine, which boots its disk first,
	// waits for.
	NetbootNext bool          `json:"netboot_next,omitempty"`
	Reinstall   string        `json:"reinstall,omitempty"`
	Booted      *BootedStatus `json:"booted,omitempty"`
	// PowerOn is the machine's last power-on as far as the gate can tell
	// (state.Record.PowerOn): its last netboot, or when DiskBoot, the
	// start of a boot from disk that its OS reported.
	PowerOn  time.Time `json:"power_on,omitzero"`
	DiskBoot bool      `json:"disk_boot,omitempty"`
	// Secrets are the latest hand-outs of the machine's secrets, oldest
	// first: when, and to which host (one the operator did not expect,
	// or two for one install, is a host that raced the machine).
	Secrets []SecretsStatus `json:"secrets,omitempty"`
	// Phases are the role OS's first-boot phases once the machine has
	// reported one: the plan's phases in plan order (pending until
	// reported), then any others it reported.
	Phases []PhaseStatus `json:"phases,omitempty"`
	// Health is the machine's services' health as it last reported it.
	Health *HealthStatus `json:"health,omitempty"`
}

// PhasePending is the status of a planned first-boot phase the machine
// has not reported (yet: an earlier phase failed, or is running).
const PhasePending = "pending"

// PhaseStatus is one first-boot phase as the machine last reported it.
type PhaseStatus struct {
	Name string `json:"name"`
	// Status is api.PhaseRunning, PhaseDone, PhaseFailed or PhasePending.
	Status  string `json:"status"`
	Task    string `json:"task,omitempty"`
	Message string `json:"message,omitempty"`
	// Error is the last failure's error: the phase failed, or failed
	// before the attempt now running.
	Error    string    `json:"error,omitempty"`
	Attempts int       `json:"attempts,omitempty"`
	Started  time.Time `json:"started,omitzero"`
	At       time.Time `json:"at,omitzero"`
}

// HealthStatus is a machine's last health report; At is when the gate
// received it.
type HealthStatus struct {
	At       time.Time       `json:"at"`
	Services []ServiceStatus `json:"services"`
}

// ServiceStatus is one service's health: Verdict says what the gate makes
// of it.
type ServiceStatus struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Since is when Status began in the machine's current boot;
	// HealthyAt the first ok report in it (zero: none yet).
	Since     time.Time `json:"since,omitzero"`
	HealthyAt time.Time `json:"healthy_at,omitzero"`
}

// SecretsStatus is one hand-out of a machine's secrets (never the token).
type SecretsStatus struct {
	At time.Time `json:"at"`
	To string    `json:"to"`
}

// ProgressStatus is the installer's last progress report.
type ProgressStatus struct {
	Phase   string `json:"phase"`
	Message string `json:"message,omitempty"`
	Done    int64  `json:"done,omitempty"`
	Total   int64  `json:"total,omitempty"`
	// Percent is Done/Total, or -1 when the phase has no size.
	Percent int       `json:"percent"`
	At      time.Time `json:"at,omitzero"`
}

// BootedStatus is the role OS's first-boot report.
type BootedStatus struct {
	Hostname string    `json:"hostname"`
	Address  string    `json:"address"`
	At       time.Time `json:"at"`
}

// Status gathers the status of every machine of the plan, in plan order.
func (s *Server) Status() (Status, error) {
	p := s.cfg.Plan
	st := Status{
		Lab: p.Lab, GateURL: s.cfg.GateURL, Now: s.cfg.Now().UTC(),
		Gate:     GateStatus{Name: p.Gate.Name, Address: p.Gate.Address},
		Machines: make([]MachineStatus, 0, len(p.Machines)),
		Services: []ServiceRow{},
		Refused:  s.refused.newestFirst(),
	}
	gs, err := readGateStats(s.cfg.ProcRoot)
	if err != nil {
		// Not fatal: the machines matter more than the gate's numbers.
		s.cfg.Log.Debug("status: gate stats", "err", err)
	}
	if gs.StateFSUsedBytes, gs.StateFSTotalBytes, err = s.cfg.StateFS(s.cfg.States.Dir()); err != nil {
		s.cfg.Log.Debug("status: state fs", "err", err)
	}
	st.Gate.GateStats = gs
	for i := range p.Machines {
		m := &p.Machines[i]
		ms, err := s.machineStatus(m)
		if err != nil {
			return Status{}, err
		}
		st.Machines = append(st.Machines, ms)
		st.Services = append(st.Services, ServiceRows(ms.Name, ms.PowerOn, ms.Health)...)
	}
	return st, nil
}

func (s *Server) machineStatus(m *plan.Machine) (MachineStatus, error) {
	ms := MachineStatus{
		Name: m.Name, MAC: m.MAC, Role: m.Role, Board: m.Board, Firmware: m.Firmware, Address: m.Address,
	}
	ms.Netboot, ms.NotNetbooted = Netboot(s.cfg.Plan, m)
	if !ms.Netboot {
		return ms, nil
	}
	mac, err := state.NormalizeMAC(m.MAC)
	if err != nil {
		return ms, err
	}
	r, err := s.cfg.States.Get(mac, m.Name)
	if err != nil {
		return ms, fmt.Errorf("machine %s: %w", m.Name, err)
	}
	ms.State, ms.Since, ms.Error, ms.PowerOn = r.State, r.Since, r.Error, r.PowerOn()
	ms.DiskBoot = !ms.PowerOn.IsZero() && ms.PowerOn.Equal(r.DiskBoot)
	ms.Attempts, ms.Rearmed = r.Attempts, r.Rearmed
	if p := r.Progress; p != nil {
		ms.Progress = &ProgressStatus{
			Phase: p.Phase, Message: p.Message, Done: p.Done, Total: p.Total,
			Percent: percent(p.Done, p.Total), At: r.ProgressAt,
		}
	}
	if b := r.Booted; b != nil {
		ms.Booted = &BootedStatus{Hostname: b.Hostname, Address: b.Address, At: b.At}
	}
	for _, h := range r.Handouts {
		ms.Secrets = append(ms.Secrets, SecretsStatus{At: h.At, To: peerHost(h.Remote)})
	}
	ms.Phases = FirstBoot(m.FirstBoot, r.Phases)
	ms.Health = ServicesHealth(r.Health)
	ms.NetbootNext, ms.Reinstall = ReinstallNote(m, r)
	return ms, nil
}

// ReinstallNote says whether a re-armed machine's OS has made its next
// boot a netboot, and, for a UEFI machine installed before (its disk comes
// first in its boot order, installer/efiboot), what its reinstall waits
// for. `kiln gate machines` and `kiln gate reinstall` say the same.
func ReinstallNote(m *plan.Machine, r state.Record) (bool, string) {
	if r.State != state.Install || r.Installs == 0 {
		return false, ""
	}
	h := r.Health
	next := h != nil && h.NetbootNext && !h.At.Before(r.Since)
	switch {
	case m.Firmware != profiles.FirmwareUEFI:
		return next, ""
	case next:
		return true, "its OS has set its next boot to the network (" + exact(h.At) + "): its next power-on installs it"
	}
	return false, "it boots its disk first: its OS sets its next boot to the network at its next health report (every few minutes while it runs), then its next power-on installs it; if its OS does not come up, choose network boot in its firmware's boot menu"
}

// ServicesHealth is a record's last health report as the status shows it
// (nil without one); `kiln gate machines` shows the same.
func ServicesHealth(h *state.Health) *HealthStatus {
	if h == nil {
		return nil
	}
	hs := &HealthStatus{At: h.At, Services: make([]ServiceStatus, 0, len(h.Services))}
	for _, sv := range h.Services {
		hs.Services = append(hs.Services, ServiceStatus{Name: sv.Name, Status: sv.Status, Detail: sv.Detail, Since: sv.Since, HealthyAt: sv.HealthyAt})
	}
	return hs
}

// FirstBoot merges the plan's first-boot phases with the machine's
// reports: planned ones in plan order, pending until reported (so a phase
// that never ran shows, rather than being missing), then reported ones
// the plan does not name. Nothing before the first report: a machine not
// booted yet has no first boot to show. `kiln gate machines` shows the
// same.
func FirstBoot(planned []string, reported []state.Phase) []PhaseStatus {
	if len(reported) == 0 {
		return nil
	}
	conv := func(p state.Phase) PhaseStatus {
		return PhaseStatus{Name: p.Name, Status: p.Status, Task: p.Task, Message: p.Message, Error: p.Error,
			Attempts: p.Attempts, Started: p.Started, At: p.At}
	}
	var out []PhaseStatus
	used := map[string]bool{}
	for _, name := range planned {
		ps := PhaseStatus{Name: name, Status: PhasePending}
		for _, p := range reported {
			if p.Name == name {
				ps, used[name] = conv(p), true
				break
			}
		}
		out = append(out, ps)
	}
	for _, p := range reported {
		if !used[p.Name] {
			out = append(out, conv(p))
		}
	}
	return out
}

func percent(done, total int64) int {
	if total <= 0 || done < 0 {
		return -1
	}
	if done >= total {
		return 100
	}
	return int(done * 100 / total)
}

// statusJSON serves GET /status.json.
func (s *Server) statusJSON(w http.ResponseWriter, r *http.Request) {
	st, err := s.Status()
	if err != nil {
		s.reqLog(r).Error("status", "err", err)
		http.Error(w, "state unreadable", http.StatusInternalServerError)
		return
	}
	writeJSON(w, st)
}

//go:embed status.html
var statusHTML string

var statusTmpl = template.Must(template.New("status").Parse(statusHTML))

// statusPage serves GET /: the same data as status.json for people.
func (s *Server) statusPage(w http.ResponseWriter, r *http.Request) {
	st, err := s.Status()
	if err != nil {
		s.reqLog(r).Error("status", "err", err)
		http.Error(w, "state unreadable", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := statusTmpl.Execute(&buf, newPage(st)); err != nil {
		s.reqLog(r).Error("status page", "err", err)
		http.Error(w, "status page failed", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// No script, no external anything: the page is text from the network.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.Write(buf.Bytes())
}

// page is the status as the template shows it: every value preformatted
// so the template only places (and html/template escapes) strings.
type page struct {
	Status
	Uptime, RSS, MemUsed, MemTotal string
	StateUsed, StateTotal          string
	Counts                         string
	Rows                           []row
	ServiceRows                    []serviceRow
	RefusedRows                    []refusedRow
}

// Bounds of a machine's lists on the page: its line stays a glance, and
// the rest is in status.json (hand-outs) or the refused table.
const (
	maxHandoutsShown = 3
	maxRefusedShown  = 3
)

// refusedRow is one refused request on the page.
type refusedRow struct {
	Refusal
	// When is the time and how long ago; Ago only the latter (a machine's
	// line is narrow) and Exact the time for its tooltip.
	When, Ago, Exact string
}

type row struct {
	MachineStatus
	StateText, StateClass  string
	ProgressText, Progress string
	ProgressAt             string
	BootedText             string
	// PowerOnText is the machine's last netboot; empty when unknown.
	PowerOnText string
	SinceText   string
	// SecretsItems are the latest hand-outs of the machine's secrets,
	// newest first; SecretsEarlier counts those left out.
	SecretsItems   []secretsItem
	SecretsEarlier int
	// RefusedItems are the latest refused requests naming the machine,
	// newest first; RefusedMore counts those only the refused table
	// shows.
	RefusedItems []refusedRow
	RefusedMore  int
	PhaseItems   []phaseItem
	ServiceItems []serviceItem
	// HealthAt says when the health was reported; empty without a report.
	HealthAt string
}

// secretsItem is one hand-out of a machine's secrets on the page.
type secretsItem struct {
	To, When string
}

// phaseItem is one first-boot phase on the page.
type phaseItem struct {
	Name, Class, StatusText string
	// Detail is the task and message; ErrorLabel says whose error Error
	// is when the phase is running again.
	Detail, ErrorLabel, Error string
	// When is how long ago the last report came, At its exact time.
	When, At string
}

// serviceItem is one service's health on the page.
type serviceItem struct {
	Name, Class, Status, Detail string
}

// statusClass maps a phase or service status to its CSS class: a fixed
// set, so the class attribute never carries what a machine sent.
func statusClass(status string) string {
	switch status {
	case api.PhaseDone, api.HealthOK:
		return "s-ok"
	case api.PhaseRunning, api.HealthStarting:
		return "s-busy"
	case api.PhaseFailed: // == api.HealthFailed
		return "s-bad"
	case api.HealthWarn:
		return "s-warn"
	}
	return "s-idle"
}

func newPage(st Status) page {
	g := st.Gate
	pg := page{
		Status: st, Uptime: duration(time.Duration(g.UptimeS * float64(time.Second))),
		RSS: mib(g.KilnRSSBytes), MemUsed: mib(g.MemUsedBytes), MemTotal: mib(g.MemTotalBytes),
		StateUsed: mib(g.StateFSUsedBytes), StateTotal: mib(g.StateFSTotalBytes),
	}
	for _, r := range st.Refused {
		pg.RefusedRows = append(pg.RefusedRows, newRefusedRow(st.Now, r))
	}
	for _, r := range st.Services {
		pg.ServiceRows = append(pg.ServiceRows, newServiceRow(st.Now, r))
	}
	counts := map[string]int{}
	for _, m := range st.Machines {
		r := newRow(st.Now, m)
		r.RefusedItems, r.RefusedMore = refusedOf(pg.RefusedRows, m.Name)
		pg.Rows = append(pg.Rows, r)
		if m.Netboot {
			counts[m.State]++
		}
	}
	pg.Counts = fmt.Sprintf("%d installed, %d installing, %d failed, %d to install",
		counts[state.Installed], counts[state.Installing], counts[state.Failed], counts[state.Install])
	return pg
}

func newRefusedRow(now time.Time, r Refusal) refusedRow {
	return refusedRow{Refusal: r, When: when(now, r.At), Ago: duration(now.Sub(r.At)) + " ago", Exact: exact(r.At)}
}

// refusedOf picks the refusals naming machine out of all (newest first):
// the first maxRefusedShown, and how many more there are.
func refusedOf(all []refusedRow, machine string) ([]refusedRow, int) {
	var mine []refusedRow
	for _, r := range all {
		if r.Machine == machine {
			mine = append(mine, r)
		}
	}
	if len(mine) > maxRefusedShown {
		return mine[:maxRefusedShown], len(mine) - maxRefusedShown
	}
	return mine, 0
}

func newRow(now time.Time, m MachineStatus) row {
	r := row{MachineStatus: m, StateText: m.State, StateClass: m.State}
	if !m.Netboot {
		r.StateText, r.StateClass = "not netbooted: "+m.NotNetbooted, "none"
	}
	if !m.Since.IsZero() {
		r.SinceText = "since " + when(now, m.Since)
	}
	if m.State == state.Installing && m.Attempts > 1 {
		r.StateText = fmt.Sprintf("%s (attempt %d of %d)", m.State, m.Attempts, state.MaxAttempts)
	}
	if p := m.Progress; p != nil {
		r.ProgressText = p.Phase
		if p.Message != "" {
			r.ProgressText += " " + p.Message
		}
		if p.Percent >= 0 {
			r.Progress = fmt.Sprintf("%d%%", p.Percent)
		}
		if !p.At.IsZero() {
			r.ProgressAt = when(now, p.At)
		}
	}
	if b := m.Booted; b != nil {
		r.BootedText = b.Address + " " + when(now, b.At)
		if b.Hostname != "" && b.Hostname != m.Name {
			r.BootedText = b.Hostname + " " + r.BootedText
		}
	}
	if !m.PowerOn.IsZero() {
		r.PowerOnText = "netbooted " + when(now, m.PowerOn)
		if m.DiskBoot {
			r.PowerOnText = "booted its disk " + when(now, m.PowerOn)
		}
	}
	r.SecretsItems, r.SecretsEarlier = secretsItems(now, m.Secrets)
	for _, p := range m.Phases {
		r.PhaseItems = append(r.PhaseItems, newPhaseItem(now, p))
	}
	if h := m.Health; h != nil {
		r.HealthAt = "reported " + when(now, h.At)
		for _, sv := range h.Services {
			r.ServiceItems = append(r.ServiceItems, serviceItem{Name: sv.Name, Class: statusClass(sv.Status), Status: sv.Status, Detail: sv.Detail})
		}
	}
	return r
}

// secretsItems turns a machine's hand-outs (oldest first) into the
// page's, newest first: the first maxHandoutsShown, and how many earlier
// ones are left out.
func secretsItems(now time.Time, hs []SecretsStatus) ([]secretsItem, int) {
	var out []secretsItem
	for i := len(hs) - 1; i >= 0 && len(out) < maxHandoutsShown; i-- {
		out = append(out, secretsItem{To: hs[i].To, When: when(now, hs[i].At)})
	}
	return out, len(hs) - len(out)
}

func newPhaseItem(now time.Time, p PhaseStatus) phaseItem {
	it := phaseItem{Name: p.Name, Class: statusClass(p.Status), StatusText: phaseStatusText(p), Error: p.Error}
	it.Detail = p.Task
	if p.Task != "" && p.Message != "" {
		it.Detail += ": "
	}
	it.Detail += p.Message
	if p.Error != "" && p.Status != api.PhaseFailed {
		it.ErrorLabel = "previous attempt failed: "
	}
	if !p.At.IsZero() {
		it.When = duration(now.Sub(p.At)) + " ago"
		it.At = exact(p.At)
	}
	return it
}

// phaseStatusText is a phase's status with its attempt: always for a
// failed phase (how often it was tried, and that it runs again), for
// others once it runs again.
func phaseStatusText(p PhaseStatus) string {
	if p.Attempts > 1 || (p.Status == api.PhaseFailed && p.Attempts > 0) {
		return fmt.Sprintf("%s (attempt %d)", p.Status, p.Attempts)
	}
	return p.Status
}

// exact formats t in UTC to the second.
func exact(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// when formats t in UTC and how long ago it was.
func when(now, t time.Time) string {
	return exact(t) + " (" + duration(now.Sub(t)) + " ago)"
}

// duration is d rounded for people: 45s, 12m05s, 3h12m, 2d04h.
func duration(d time.Duration) string {
	switch d = d.Round(time.Second); {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

func mib(b uint64) string {
	if b == 0 {
		return "?"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

package rehearse

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/pxe/httpd"
)

// The whole lab in one table: one row per service the plan says a machine
// runs, with the gate's verdict on its last health report (httpd.Verdict:
// VERIFIED when the real program says it is healthy, STAND-IN for a
// labelled stand-in, never VERIFIED, FAILED otherwise) and the time from
// the machine's power-on to the first report that had them all healthy.

// ServicesHealthy takes machine m's report when every service the plan
// says m runs is healthy: Ceph by CephHealthy's rule (the whole lab's
// monitors and OSDs, every self-test object read back), the others ok.
func ServicesHealthy(p *plan.Plan, m plan.Machine) func(*httpd.HealthStatus) string {
	mons, osds := CephSize(p)
	ceph := CephHealthy(mons, osds)
	return func(h *httpd.HealthStatus) string {
		var why []string
		for _, name := range m.Services {
			if name == plan.ServiceCeph {
				if w := ceph(h); w != "" {
					why = append(why, w)
				}
				continue
			}
			if s := Service(h, name); s.Status != "ok" {
				why = append(why, fmt.Sprintf("%s %s (%s)", name, s.Status, s.Detail))
			}
		}
		return strings.Join(why, "; ")
	}
}

// Row is one service of one machine in the whole-lab table.
type Row struct {
	Machine, Service string
	Verdict          string // httpd.Verdict, or FAILED with no report
	Detail           string
	// Healthy is from the machine's power-on to the report that had every
	// service healthy; 0 when none did.
	Healthy time.Duration
}

// Rows are machine m's rows from its last report h (nil: none came).
func Rows(m plan.Machine, h *httpd.HealthStatus, healthy time.Duration) []Row {
	var rows []Row
	for _, name := range m.Services {
		r := Row{Machine: m.Name, Service: name, Verdict: httpd.VerdictFailed, Detail: "no health report reached the gate", Healthy: healthy}
		if h != nil {
			s := Service(h, name)
			if name == plan.ServiceCeph {
				s = cephRow(h)
			}
			r.Verdict, r.Detail = httpd.Verdict(s), s.Detail
		}
		if r.Verdict != httpd.VerdictVerified && r.Verdict != httpd.VerdictStandIn {
			r.Healthy = 0
		}
		rows = append(rows, r)
	}
	return rows
}

// cephRow is Ceph's health with its data check: the cluster's word and
// every self-test object read back.
func cephRow(h *httpd.HealthStatus) httpd.ServiceStatus {
	ceph, data := Service(h, "ceph"), Service(h, "ceph-data")
	if ceph.Status == "ok" && data.Status != "ok" {
		return httpd.ServiceStatus{Name: "ceph", Status: data.Status, Detail: "data: " + data.Detail}
	}
	if data.Status == "ok" {
		ceph.Detail += "; data " + data.Detail
	}
	return ceph
}

// Table writes the whole-lab table for people.
func Table(w io.Writer, rows []Row) {
	// Whole lines to w, in one write: tabwriter writes cell by cell.
	var b bytes.Buffer
	defer func() { w.Write(b.Bytes()) }()
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MACHINE\tSERVICE\tVERDICT\tPOWER-ON TO HEALTHY\tDETAIL")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Machine, r.Service, r.Verdict, secs(r.Healthy), clipLine(r.Detail, 140))
	}
	tw.Flush()
}

// clipLine is s's first line, at most n bytes.
func clipLine(s string, n int) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}

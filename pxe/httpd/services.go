package httpd

import (
	"strings"
	"time"

	"github.com/kilnlab/kiln/pxe/api"
)

// The lab's services in one table: one row per service per machine, from
// the machine's last health report, with the gate's verdict on it and how
// long after the machine's power-on it was first healthy. status.json has
// it as "services", the page as its Services table, `kiln gate machines`
// after its own: all three from ServiceRows.

// Verdicts on a service (Verdict).
const (
	// VerdictVerified: the real program is healthy by its own status
	// command, as the machine ran it.
	VerdictVerified = "VERIFIED"
	// VerdictStandIn: a labelled stand-in (the rehearsal's k3s) answers
	// ok; it proves nothing of the real program.
	VerdictStandIn = "STAND-IN"
	// VerdictStarting: the machine says the service is still starting.
	VerdictStarting = "STARTING"
	// VerdictFailed: anything else.
	VerdictFailed = "FAILED"
)

// standIn starts the detail of a labelled stand-in's health.
const standIn = "STAND-IN"

// Verdict is the gate's word on service s, from its Status and Detail
// only: VERIFIED when it is ok, STAND-IN when it is ok but its detail
// says it is a stand-in (never VERIFIED, whatever else it says), STARTING
// while it starts, FAILED for the rest. A warn is FAILED: it is not
// healthy (Ceph's HEALTH_WARN is a monitor out of quorum, an OSD down, a
// clock skewed), and a table that passed it would hide what it is there
// to show. An unknown status is FAILED too.
func Verdict(s ServiceStatus) string {
	switch {
	case s.Status == api.HealthOK && strings.HasPrefix(strings.TrimSpace(s.Detail), standIn):
		return VerdictStandIn
	case s.Status == api.HealthOK:
		return VerdictVerified
	case s.Status == api.HealthStarting:
		return VerdictStarting
	}
	return VerdictFailed
}

// maxDetailLine bounds a row's detail (runes): the whole detail is in the
// machine's health.
const maxDetailLine = 120

// ServiceRow is one service of one machine in the lab's services table.
type ServiceRow struct {
	Machine string `json:"machine"`
	Service string `json:"service"`
	Status  string `json:"status"`
	Verdict string `json:"verdict"`
	// HealthyAt is the service's first ok report in the machine's
	// current boot; ToHealthyS the whole seconds from the machine's
	// power-on (its last netboot) to then. Both are left out while the
	// service has not been ok in this boot, ToHealthyS also when the gate
	// saw no power-on.
	HealthyAt  time.Time `json:"healthy_at,omitzero"`
	ToHealthyS int64     `json:"to_healthy_s,omitzero"`
	// Since is when the service's current status began (in this boot).
	Since time.Time `json:"since,omitzero"`
	// Detail is the first line of the machine's detail, clipped.
	Detail string `json:"detail,omitempty"`
}

// ServiceRows are the rows of machine's services from its last health
// report h (none when nil), in the machine's order; powerOn is the
// machine's last netboot (zero: unknown).
func ServiceRows(machine string, powerOn time.Time, h *HealthStatus) []ServiceRow {
	if h == nil {
		return nil
	}
	rows := make([]ServiceRow, 0, len(h.Services))
	for _, sv := range h.Services {
		r := ServiceRow{Machine: machine, Service: sv.Name, Status: sv.Status, Verdict: Verdict(sv),
			HealthyAt: sv.HealthyAt, Since: sv.Since, Detail: FirstLine(sv.Detail, maxDetailLine)}
		if d := sv.HealthyAt.Sub(powerOn); !sv.HealthyAt.IsZero() && !powerOn.IsZero() && d > 0 {
			r.ToHealthyS = int64(d.Round(time.Second) / time.Second)
		}
		rows = append(rows, r)
	}
	return rows
}

// TimeToHealthy is the row's time from power-on to healthy as people read
// it: "6m12s"; "-" while the service has not been healthy in this boot,
// "?" when the gate saw no power-on (a record older than the gate that
// keeps it).
func (r ServiceRow) TimeToHealthy() string {
	switch {
	case r.HealthyAt.IsZero():
		return "-"
	case r.ToHealthyS == 0:
		return "?"
	}
	return duration(time.Duration(r.ToHealthyS) * time.Second)
}

// FirstLine is the first non-blank line of s, cut to n runes (n > 0).
func FirstLine(s string, n int) string {
	for line := range strings.SplitSeq(s, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			if r := []rune(line); len(r) > n {
				return string(r[:n-1]) + "…"
			}
			return line
		}
	}
	return ""
}

// serviceRow is one row of the page's Services table.
type serviceRow struct {
	ServiceRow
	// Class is the verdict's CSS class; SinceAgo is how long ago the
	// status began, SinceExact when.
	Class, ToHealthy, SinceAgo, SinceExact string
}

func newServiceRow(now time.Time, r ServiceRow) serviceRow {
	row := serviceRow{ServiceRow: r, Class: verdictClass(r.Verdict), ToHealthy: r.TimeToHealthy(), SinceAgo: "-"}
	if !r.Since.IsZero() {
		row.SinceAgo, row.SinceExact = duration(now.Sub(r.Since))+" ago", exact(r.Since)
	}
	return row
}

// verdictClass maps a verdict to its CSS class: a stand-in has a colour of
// its own, never a healthy one's.
func verdictClass(v string) string {
	switch v {
	case VerdictVerified:
		return "s-ok"
	case VerdictStandIn:
		return "s-standin"
	case VerdictStarting:
		return "s-busy"
	}
	return "s-bad"
}

package pxe

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"

	"github.com/kilnlab/kiln/pxe/api"
	"github.com/kilnlab/kiln/pxe/httpd"
)

// What `kiln gate machines` shows of a machine's first boot and its
// services' health: a brief in the table, the whole of what went wrong
// below it. The texts come from the machines (checked by the gate, but
// written to a terminal): cell and indent keep them to printable text.

// timeLayout is how `kiln gate machines` shows a time.
const timeLayout = "2006-01-02 15:04:05"

// maxBrief bounds the error quoted in the table: the full one follows the
// table.
const maxBrief = 60

// firstBootBrief is a machine's first boot in a few words: the first
// failed phase with its attempt and error (it is retried, and nothing
// after it runs), else how many phases are done and the one running, with
// its attempt when it runs again.
func firstBootBrief(ps []httpd.PhaseStatus) string {
	if len(ps) == 0 {
		return "-"
	}
	done := 0
	for _, p := range ps {
		if p.Status == api.PhaseFailed {
			return phaseName(p) + ": " + httpd.FirstLine(p.Error, maxBrief)
		}
		if p.Status == api.PhaseDone {
			done++
		}
	}
	brief := fmt.Sprintf("phases %d/%d done", done, len(ps))
	for _, p := range ps {
		// A phase running again shows its attempt; the error of the
		// one before is below the table.
		if p.Status == api.PhaseRunning {
			return brief + ", " + phaseName(p)
		}
	}
	return brief
}

// phaseName is a phase, its status and, for a failed phase or one run
// again, its attempt: "network failed (attempt 3)".
func phaseName(p httpd.PhaseStatus) string {
	s := p.Name + " " + p.Status
	if p.Attempts > 1 || (p.Status == api.PhaseFailed && p.Attempts > 0) {
		s += fmt.Sprintf(" (attempt %d)", p.Attempts)
	}
	return s
}

// servicesBrief is a machine's last health report: each service as
// name=status, in the machine's order, and how old the report is (a
// machine that stopped reporting keeps its last word).
func servicesBrief(h *httpd.HealthStatus, now time.Time) string {
	if h == nil {
		return "-"
	}
	var b strings.Builder
	for _, sv := range h.Services {
		fmt.Fprintf(&b, "%s=%s ", sv.Name, sv.Status)
	}
	if len(h.Services) == 0 {
		b.WriteString("no services ")
	}
	fmt.Fprintf(&b, "(%s ago)", now.Sub(h.At).Round(time.Second))
	return b.String()
}

// writeProblems prints, after the table, the whole error of each phase
// that failed (or failed before the attempt now running) and the detail of
// each service not ok; nothing when all is well.
func writeProblems(w io.Writer, rows []MachineStatus, loc *time.Location) error {
	var b strings.Builder
	for _, r := range rows {
		for _, p := range r.Phases {
			if p.Error != "" {
				writeItem(&b, phaseProblem(r.Machine, p, loc), p.Error)
			}
		}
		if r.Health == nil {
			continue
		}
		for _, sv := range r.Health.Services {
			if sv.Status != api.HealthOK {
				writeItem(&b, fmt.Sprintf("%s: service %s %s, reported %s", r.Machine, sv.Name, sv.Status, r.Health.At.In(loc).Format(timeLayout)), sv.Detail)
			}
		}
	}
	if b.Len() == 0 {
		return nil
	}
	_, err := io.WriteString(w, "\n"+b.String())
	return err
}

// phaseProblem heads the error of phase p of machine: which phase, which
// attempt, whether it is the running attempt's or the one before, which
// task failed and when.
func phaseProblem(machine string, p httpd.PhaseStatus, loc *time.Location) string {
	head := machine + ": first-boot phase " + phaseName(p)
	switch {
	case p.Status != api.PhaseFailed:
		head += ", its previous attempt failed"
	case p.Task != "":
		head += ", task " + p.Task
	}
	if !p.At.IsZero() {
		head += ", at " + p.At.In(loc).Format(timeLayout)
	}
	return head
}

// writeItem writes head, then text (when any) indented below it.
func writeItem(b *strings.Builder, head, text string) {
	b.WriteString(cell(head))
	if strings.TrimSpace(text) == "" {
		b.WriteString("\n")
		return
	}
	b.WriteString(":\n")
	for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		// A command's output keeps its indentation.
		b.WriteString("    " + cell(strings.ReplaceAll(line, "\t", "    ")) + "\n")
	}
}

// cell makes s one line of printable text: control characters (a line
// break, a tab that would split a table cell, a terminal escape) become
// spaces.
func cell(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

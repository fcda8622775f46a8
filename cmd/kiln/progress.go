package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// A board shows people a rehearsal's progress: one line per machine, in
// the order the machines are rehearsed, with its state, its first-boot
// phase and the time since its power-on. On a terminal its lines are
// redrawn in place (tick, about once a second, as the elapsed column
// counts seconds); elsewhere — a file, CI, or a stream the structured log
// shares — it writes one plain line per change of state or phase, which
// reads in order and never redraws. Notes (the accelerator, the gate
// serving) go above the lines. Storage nodes run in goroutines of their
// own, so every method locks.
type board struct {
	mu    sync.Mutex
	out   screen
	now   func() time.Time
	rows  []*boardRow
	drawn int // lines of the last redraw on a terminal; the cursor is below them
	// widths of the columns so far: they grow, never shrink, so that the
	// columns do not move back and forth between redraws.
	widths [4]int
}

// screen is where a board draws.
type screen struct {
	w   io.Writer
	tty bool // a terminal: redraw in place
	// width is the terminal's columns (0: unknown). A line that wraps
	// takes two, and the next redraw would move up one too few, so lines
	// are cut below it.
	width int
}

// boardRow is one machine's line.
type boardRow struct {
	name, state, phase string
	on, off            time.Time // power-on, and the end of its rehearsal (zero: not yet)
}

// Escape sequences of a redraw: up n lines, and clear the rest of a line.
// Each line is written over the old one, then cleared after its end (not
// cleared first): a terminal never shows a blank line, hence no flicker.
const (
	cursorUp = "\x1b[%dA"
	clearEOL = "\x1b[K"
)

// stateWaiting is a machine's state until its power-on.
const stateWaiting = "waiting"

// screenOf is w as a board's screen: a terminal when w is one.
func screenOf(w io.Writer) screen {
	s := screen{w: w, tty: isTerminal(w)}
	if f, ok := w.(*os.File); ok && s.tty {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil {
			s.width = int(ws.Col)
		}
	}
	return s
}

// newBoard shows machines, all waiting; now is the clock (time.Now).
func newBoard(out screen, now func() time.Time, machines []string) *board {
	b := &board{out: out, now: now}
	for _, m := range machines {
		b.rows = append(b.rows, &boardRow{name: m, state: stateWaiting})
	}
	return b
}

// powerOn sets machine's state and starts its clock.
func (b *board) powerOn(machine, state string) {
	b.change(machine, func(r *boardRow) { r.state, r.on, r.off = state, b.now(), time.Time{} })
}

// set changes machine's state.
func (b *board) set(machine, state string) {
	b.change(machine, func(r *boardRow) { r.state = state })
}

// phase changes machine's first-boot phase, and its state to to while it
// is from: a phase can be the first sign of a step, and a poll that saw
// it must not undo a later one. One change makes one plain line.
func (b *board) phase(machine, phase, from, to string) {
	b.change(machine, func(r *boardRow) {
		r.phase = phase
		if r.state == from {
			r.state = to
		}
	})
}

// finish sets machine's last state and stops its clock, if it runs: a
// failure shown as it happens is shown again when its group ends.
func (b *board) finish(machine, state string) {
	b.change(machine, func(r *boardRow) {
		r.state = state
		if !r.on.IsZero() && r.off.IsZero() {
			r.off = b.now()
		}
	})
}

// change applies f to machine's line (machines not on the board, such
// as the gate's other machines a status poll names, are ignored) and
// writes the line when plain and its state or phase changed.
func (b *board) change(machine string, f func(*boardRow)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range b.rows {
		if r.name != machine {
			continue
		}
		was := *r
		f(r)
		if !b.out.tty && (r.state != was.state || r.phase != was.phase) {
			fmt.Fprintln(b.out.w, b.plain(r))
		}
		return
	}
}

// note writes a line for people above the machines' lines.
func (b *board) note(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	text := fmt.Sprintf(format, args...)
	if !b.out.tty {
		fmt.Fprintln(b.out.w, text)
		return
	}
	b.redraw(strings.Split(text, "\n"))
}

// tick redraws the lines on a terminal, their elapsed times counting.
func (b *board) tick() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.out.tty {
		b.redraw(nil)
	}
}

// refresh ticks every d until ctx ends, then once more: the last state
// stays on screen. It returns at once when plain.
func (b *board) refresh(ctx context.Context, d time.Duration) {
	if !b.out.tty {
		return
	}
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		b.tick()
		select {
		case <-ctx.Done():
			b.tick()
			return
		case <-t.C:
		}
	}
}

// redraw writes notes where the lines were, then the lines below them,
// in one write.
func (b *board) redraw(notes []string) {
	var s strings.Builder
	if b.drawn > 0 {
		fmt.Fprintf(&s, cursorUp, b.drawn)
	}
	for _, n := range notes {
		s.WriteString(n + clearEOL + "\n")
	}
	lines := b.table()
	for _, l := range lines {
		s.WriteString(cut(l, b.out.width) + clearEOL + "\n")
	}
	b.drawn = len(lines)
	io.WriteString(b.out.w, s.String())
}

// table is the header and one line per machine, in columns as wide as
// their longest cell yet (fmt pads to runes, as a terminal shows them).
func (b *board) table() []string {
	cells := [][4]string{{"MACHINE", "STATE", "PHASE", "ELAPSED"}}
	for _, r := range b.rows {
		cells = append(cells, [4]string{r.name, r.state, dash(r.phase), b.elapsed(r)})
	}
	w := &b.widths
	for _, row := range cells {
		for i, c := range row {
			w[i] = max(w[i], utf8.RuneCountInString(c))
		}
	}
	lines := make([]string, len(cells))
	for j, c := range cells {
		lines[j] = fmt.Sprintf("%-*s  %-*s  %-*s  %*s", w[0], c[0], w[1], c[1], w[2], c[2], w[3], c[3])
	}
	return lines
}

// plain is a machine's line for a log: "12:03:04 ceph-1: first boot
// (phase ceph) after 4:05".
func (b *board) plain(r *boardRow) string {
	s := b.now().Format(time.TimeOnly) + " " + r.name + ": " + r.state
	if r.phase != "" {
		s += " (phase " + r.phase + ")"
	}
	if el := b.since(r); el >= time.Second {
		s += " after " + clock(el)
	}
	return s
}

// elapsed is the time since machine's power-on, to the end of its
// rehearsal once over ("-" before its power-on).
func (b *board) elapsed(r *boardRow) string {
	if r.on.IsZero() {
		return "-"
	}
	return clock(b.since(r))
}

func (b *board) since(r *boardRow) time.Duration {
	switch {
	case r.on.IsZero():
		return 0
	case !r.off.IsZero():
		return r.off.Sub(r.on)
	}
	return b.now().Sub(r.on)
}

// clock formats d as m:ss or h:mm:ss.
func clock(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// cut shortens s to fewer runes than width (0: no limit): a terminal
// wraps a line that fills its last column on some terminals.
func cut(s string, width int) string {
	rs := []rune(s)
	if width <= 0 || len(rs) < width {
		return s
	}
	return string(rs[:width-1])
}

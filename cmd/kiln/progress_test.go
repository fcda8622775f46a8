package main

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/internal/golden"
	"github.com/kilnlab/kiln/qemu-tests/rehearse"
)

// fakeClock is a board's clock that moves only when a test says. Steps
// hand over to the board's goroutines through channels, which order its
// reads after each move: it needs no lock.
type fakeClock struct{ t time.Time }

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 5, 1, 12, 3, 4, 0, time.UTC)}
}

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }

// step is one update of a scripted rehearsal: after the clock moves by
// wait, worker who (0 or 1; -1: the test's own goroutine) runs do.
type step struct {
	wait time.Duration
	who  int
	do   func(*board)
}

// play runs steps in order, each on its worker's goroutine, as storage
// nodes update the board from goroutines of their own; the order is the
// script's, so the output can be compared.
func play(t *testing.T, b *board, clock *fakeClock, steps []step) {
	t.Helper()
	var workers [2]chan func(*board)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i := range workers {
		workers[i] = make(chan func(*board))
		wg.Go(func() {
			for do := range workers[i] {
				do(b)
				done <- struct{}{}
			}
		})
	}
	for _, s := range steps {
		clock.add(s.wait)
		if s.who < 0 {
			s.do(b)
			continue
		}
		workers[s.who] <- s.do
		<-done
	}
	for _, w := range workers {
		close(w)
	}
	wg.Wait()
}

// twoStorageNodes is a rehearsal of two storage nodes in parallel, one
// healthy and one not, and a third machine still waiting.
func twoStorageNodes() []step {
	set := func(m, state string) func(*board) { return func(b *board) { b.set(m, state) } }
	phase := func(m, p string) func(*board) {
		return func(b *board) { b.phase(m, p, stateInstall, stateFirstBoot) }
	}
	return []step{
		{0, -1, func(b *board) { b.note("accelerator: kvm") }},
		{0, 0, func(b *board) { b.powerOn("ceph-1", stateInstall) }},
		{2 * time.Second, 1, func(b *board) { b.powerOn("ceph-2", stateInstall) }},
		{3*time.Minute + 10*time.Second, 0, phase("ceph-1", "storage")},
		{3 * time.Second, 1, phase("ceph-2", "storage")},
		{time.Minute, 0, phase("ceph-1", "ceph")},
		{3 * time.Second, 0, phase("ceph-1", "ceph")}, // the same poll again: no line
		{30 * time.Second, 1, phase("ceph-2", "storage done")},
		{time.Minute, 0, set("ceph-1", statePeers)},
		{5 * time.Second, 1, phase("ceph-2", "ceph")},
		{20 * time.Second, 1, set("ceph-2", statePeers)},
		{0, -1, func(b *board) { b.set("ceph-1", stateServices); b.set("ceph-2", stateServices) }},
		{4 * time.Minute, 0, set("ceph-1", stateHealthy)},
		{20 * time.Minute, 1, set("ceph-2", stateUnhealthy)},
		{0, 0, set("ceph-1", statePowerCycle)},
		{time.Minute, 0, func(b *board) { b.finish("ceph-1", "installed, booted") }},
		{0, 1, set("ceph-2", statePowerCycle)},
		{50 * time.Second, 1, func(b *board) { b.finish("ceph-2", "installed, booted; "+stateUnhealthy) }},
	}
}

var boardMachines = []string{"ceph-1", "ceph-2", "k3s-1"}

// TestBoardPlain: off a terminal, one line per change of state or
// phase, in the order of the changes, whichever goroutine made them.
func TestBoardPlain(t *testing.T) {
	clock, out := newFakeClock(), &bytes.Buffer{}
	b := newBoard(screen{w: out}, clock.now, boardMachines)
	play(t, b, clock, twoStorageNodes())
	b.tick() // nothing off a terminal
	golden.Check(t, "testdata/progress/plain.golden", []byte(out.String()))
}

// race updates the board from two goroutines at once, n phases each,
// while a third ticks.
func race(b *board, n int) {
	var wg sync.WaitGroup
	for _, m := range boardMachines[:2] {
		wg.Go(func() {
			b.powerOn(m, stateInstall)
			for i := range n {
				b.phase(m, strconv.Itoa(i), stateInstall, stateFirstBoot)
			}
		})
	}
	wg.Go(func() {
		for range n {
			b.tick()
		}
	})
	wg.Wait()
}

// TestBoardPlainConcurrent: updates racing from two goroutines come out
// as whole lines, each machine's in its order (run with -race: the
// board's writer is not safe for concurrent use, the board must be).
func TestBoardPlainConcurrent(t *testing.T) {
	const n = 200
	clock, out := newFakeClock(), &bytes.Buffer{}
	b := newBoard(screen{w: out}, clock.now, boardMachines[:2])
	race(b, n)
	line := regexp.MustCompile(`^12:03:04 (ceph-[12]): (netboot \+ install|first boot \(phase (\d+)\))$`)
	next := map[string]int{}
	for _, l := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("line %q", l)
		}
		if m[3] == "" {
			continue
		}
		if i, _ := strconv.Atoi(m[3]); i != next[m[1]] {
			t.Fatalf("%s: phase %d, want %d", m[1], i, next[m[1]])
		}
		next[m[1]]++
	}
	if diff := cmp.Diff(map[string]int{"ceph-1": n, "ceph-2": n}, next); diff != "" {
		t.Errorf("phases seen (-want +got)\n%s", diff)
	}
}

// TestBoardTerminalConcurrent: redraws racing with updates leave the
// last state on screen.
func TestBoardTerminalConcurrent(t *testing.T) {
	clock, out := newFakeClock(), &bytes.Buffer{}
	b := newBoard(screen{w: out, tty: true}, clock.now, boardMachines[:2])
	race(b, 100)
	b.tick()
	// Columns as wide as the states a tick caught: words only.
	want := []string{
		"MACHINE STATE PHASE ELAPSED",
		"ceph-1 first boot 99 0:00",
		"ceph-2 first boot 99 0:00",
	}
	var got []string
	for _, l := range terminal(t, out.String()) {
		got = append(got, strings.Join(strings.Fields(l), " "))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("screen (-want +got)\n%s", diff)
	}
}

// TestBoardRefresh: refresh draws at once and once more as it ends, so
// the last state stays on screen; off a terminal it returns at once.
func TestBoardRefresh(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	clock, out := newFakeClock(), &bytes.Buffer{}
	newBoard(screen{w: out}, clock.now, boardMachines[:1]).refresh(ctx, time.Hour)
	if out.Len() != 0 {
		t.Errorf("plain refresh wrote %q", out.String())
	}
	newBoard(screen{w: out, tty: true}, clock.now, boardMachines[:1]).refresh(ctx, time.Hour)
	if got := strings.Count(out.String(), "MACHINE"); got != 2 {
		t.Errorf("%d redraws, want 2:\n%q", got, out.String())
	}
}

// TestBoardTerminal: on a terminal the lines are redrawn in place at each
// tick or note, in one write each (a change alone writes nothing); notes
// go above them, and nothing of an earlier, longer line is left on
// screen. The golden file holds the exact bytes, escape sequences
// included.
func TestBoardTerminal(t *testing.T) {
	for _, tc := range []struct {
		name     string
		machines []string
		steps    []step
		golden   string // "": no golden file
		want     []string
	}{{
		name:     "redraws",
		machines: []string{"ceph-1", "k3s-1"},
		steps: []step{
			{0, 0, func(b *board) { b.powerOn("ceph-1", stateInstall) }},
			{0, -1, func(b *board) { b.note("accelerator: kvm") }},
			{time.Second, -1, (*board).tick},
			{3 * time.Minute, 0, func(b *board) { b.phase("ceph-1", "storage", stateInstall, stateFirstBoot) }},
			{time.Second, -1, (*board).tick},
			{0, -1, func(b *board) { b.note("gate-1 serving after 58.2s\nstatus page http://10.0.0.2:8080/") }},
			{7 * time.Minute, 0, func(b *board) { b.finish("ceph-1", "installed, booted") }},
			{0, 1, func(b *board) { b.powerOn("k3s-1", stateInstall) }},
			{time.Hour, -1, (*board).tick},
		},
		golden: "testdata/progress/tty.golden",
		want: []string{
			"accelerator: kvm",
			"gate-1 serving after 58.2s",
			"status page http://10.0.0.2:8080/",
			"MACHINE  STATE              PHASE    ELAPSED",
			"ceph-1   installed, booted  storage    10:02",
			"k3s-1    netboot + install  -        1:00:00",
		},
	}, {
		name:     "notes above",
		machines: boardMachines,
		steps: []step{
			{0, -1, (*board).tick},
			{0, 0, func(b *board) { b.powerOn("ceph-1", "a rather long state to be replaced") }},
			{0, -1, (*board).tick},
			{0, -1, func(b *board) { b.note("note 1") }},
			{time.Second, 1, func(b *board) { b.set("ceph-1", stateHealthy) }},
			{0, -1, (*board).tick},
			{0, -1, func(b *board) { b.note("note 2") }},
			{0, -1, (*board).tick},
		},
		want: []string{
			"note 1",
			"note 2",
			// The columns keep the width of the longer state.
			"MACHINE  STATE                               PHASE  ELAPSED",
			"ceph-1   healthy                             -         0:01",
			"ceph-2   waiting                             -            -",
			"k3s-1    waiting                             -            -",
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			clock, out := newFakeClock(), &bytes.Buffer{}
			play(t, newBoard(screen{w: out, tty: true}, clock.now, tc.machines), clock, tc.steps)
			if tc.golden != "" {
				golden.Check(t, tc.golden, out.Bytes())
			}
			checkScreen(t, out.String(), tc.want)
		})
	}
}

// TestBoardWidth: lines are cut below the terminal's width, as a wrapped
// one would throw the next redraw off by a line.
func TestBoardWidth(t *testing.T) {
	clock, out := newFakeClock(), &bytes.Buffer{}
	b := newBoard(screen{w: out, tty: true, width: 24}, clock.now, boardMachines)
	b.finish("ceph-2", "FAILED: refused or failed")
	b.tick()
	b.tick()
	screen := terminal(t, out.String())
	if len(screen) != 4 {
		t.Fatalf("screen has %d lines, want 4:\n%s", len(screen), strings.Join(screen, "\n"))
	}
	for _, l := range screen {
		if utf8.RuneCountInString(l) >= 24 {
			t.Errorf("line %q fills 24 columns", l)
		}
	}
}

// checkScreen compares the screen after out with want.
func checkScreen(t *testing.T, out string, want []string) {
	t.Helper()
	if diff := cmp.Diff(want, terminal(t, out)); diff != "" {
		t.Errorf("screen (-want +got)\n%s", diff)
	}
}

// terminal plays out what a board wrote on a terminal of unbounded width
// (text, newlines, cursor up, clear to the end of the line) and returns
// the screen's lines.
func terminal(t *testing.T, out string) []string {
	t.Helper()
	var lines [][]rune
	row, col := 0, 0
	csi := regexp.MustCompile(`^\x1b\[(\d*)([A-Za-z])`)
	for len(out) > 0 {
		for row >= len(lines) {
			lines = append(lines, nil)
		}
		if m := csi.FindStringSubmatch(out); m != nil {
			n, _ := strconv.Atoi(m[1])
			switch m[2] {
			case "A":
				row = max(0, row-max(n, 1))
			case "K":
				lines[row] = lines[row][:min(col, len(lines[row]))]
			default:
				t.Fatalf("escape sequence %q", m[0])
			}
			out = out[len(m[0]):]
			continue
		}
		r, size := utf8.DecodeRuneInString(out)
		out = out[size:]
		switch r {
		case '\n':
			row, col = row+1, 0
		case '\r':
			col = 0
		default:
			for len(lines[row]) < col {
				lines[row] = append(lines[row], ' ')
			}
			if col < len(lines[row]) {
				lines[row][col] = r
			} else {
				lines[row] = append(lines[row], r)
			}
			col++
		}
	}
	var screen []string
	for _, l := range lines {
		screen = append(screen, string(l))
	}
	// The cursor rests on an empty line below the last.
	if n := len(screen); n > 0 && screen[n-1] == "" {
		screen = screen[:n-1]
	}
	return screen
}

func TestEndState(t *testing.T) {
	ok := rehearse.Result{Machine: "ceph-1", State: "installed, booted"}
	healthy := []rehearse.Row{{Machine: "ceph-1", Service: "ceph", Healthy: time.Minute}, {Machine: "ceph-2", Service: "ceph"}}
	for _, tc := range []struct {
		res  rehearse.Result
		rows []rehearse.Row
		want string
	}{
		{ok, nil, "installed, booted"},
		{ok, healthy, "installed, booted"},
		{ok, []rehearse.Row{{Machine: "ceph-1", Service: "ceph"}}, "installed, booted; services not healthy"},
		{rehearse.Result{Machine: "k3s-1", State: "failed: first boot", Err: fmt.Errorf("x")}, nil, "FAILED: first boot"},
		{rehearse.Result{Machine: "k3s-1", State: "refused or failed", Err: fmt.Errorf("x")}, nil, "FAILED: refused or failed"},
	} {
		if got := endState(tc.res, tc.rows); got != tc.want {
			t.Errorf("endState(%+v) = %q, want %q", tc.res, got, tc.want)
		}
	}
}

// TestBoardFinishOnce: a machine's clock stops at its first finish; the
// same state again (its group ending) neither moves it nor writes a line.
func TestBoardFinishOnce(t *testing.T) {
	clock, out := newFakeClock(), &bytes.Buffer{}
	b := newBoard(screen{w: out}, clock.now, boardMachines[:1])
	b.powerOn("ceph-1", stateInstall)
	clock.add(time.Minute)
	b.finish("ceph-1", "FAILED: install")
	clock.add(time.Hour)
	b.finish("ceph-1", "FAILED: install")
	want := "12:03:04 ceph-1: netboot + install\n12:04:04 ceph-1: FAILED: install after 1:00\n"
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	if got := b.elapsed(b.rows[0]); got != "1:00" {
		t.Errorf("elapsed %s, want 1:00", got)
	}
}

package appliance

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// quietHandler bounds how often the gate logs the same line. A flood of
// requests from machines that are not in the plan (a busy LAN, a PXE ROM
// stuck in a loop, a scanner) would otherwise write one line per packet
// to /perm and the console. Per level and message, and per machine for
// records about a machine of the plan (so strangers never crowd out the
// lab's own lines), it passes quietBurst records a quietWindow and counts
// the rest; once the window is over, one line says how many were dropped.
type quietHandler struct {
	next    slog.Handler
	machine string // the "machine" attribute scoped in by With, if any
	st      *quietState
}

const (
	quietWindow = time.Minute
	quietBurst  = 20
)

type quietState struct {
	root      slog.Handler // unscoped: the summary lines belong to no request
	mu        sync.Mutex
	keys      map[quietKey]*quietCount
	nextSweep time.Time
}

type quietKey struct {
	level   slog.Level
	msg     string
	machine string
}

type quietCount struct {
	start      time.Time
	n, dropped int
}

func newQuietHandler(next slog.Handler) *quietHandler {
	return &quietHandler{next: next, st: &quietState{root: next, keys: map[quietKey]*quietCount{}}}
}

func (h *quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *quietHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(as)
	if m := machineAttr(as); m != "" {
		c.machine = m
	}
	return &c
}

func (h *quietHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	return &c
}

func (h *quietHandler) Handle(ctx context.Context, r slog.Record) error {
	k := quietKey{level: r.Level, msg: r.Message, machine: h.machine}
	if k.machine == "" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "machine" {
				k.machine = a.Value.String()
				return false
			}
			return true
		})
	}
	now := r.Time
	if now.IsZero() {
		now = time.Now()
	}
	pass, summaries := h.st.count(k, now)
	for _, s := range summaries {
		_ = h.st.root.Handle(ctx, s) // a lost summary must not lose the record
	}
	if !pass {
		return nil
	}
	return h.next.Handle(ctx, r)
}

// count records one record of k at now: whether it passes, and the
// summary lines of windows that ended with records dropped.
func (s *quietState) count(k quietKey, now time.Time) (bool, []slog.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []slog.Record
	if !now.Before(s.nextSweep) {
		// Windows that ended without a later record of their own: say
		// what they dropped now, and forget them (the map stays as
		// small as the set of lines logged in the last window).
		for key, c := range s.keys {
			if now.Sub(c.start) >= quietWindow {
				out = appendSummary(out, now, key, c)
				delete(s.keys, key)
			}
		}
		s.nextSweep = now.Add(quietWindow)
	}
	c := s.keys[k]
	if c == nil || now.Sub(c.start) >= quietWindow {
		if c != nil {
			out = appendSummary(out, now, k, c)
		}
		s.keys[k] = &quietCount{start: now, n: 1}
		return true, out
	}
	c.n++
	if c.n <= quietBurst {
		return true, out
	}
	c.dropped++
	return false, out
}

func appendSummary(out []slog.Record, now time.Time, k quietKey, c *quietCount) []slog.Record {
	if c.dropped == 0 {
		return out
	}
	r := slog.NewRecord(now, k.level, "log: repeated lines dropped", 0)
	r.AddAttrs(slog.String("line", k.msg), slog.Int("dropped", c.dropped),
		slog.Int("kept", quietBurst), slog.Duration("window", quietWindow))
	if k.machine != "" {
		r.AddAttrs(slog.String("machine", k.machine))
	}
	return append(out, r)
}

func machineAttr(as []slog.Attr) string {
	for _, a := range as {
		if a.Key == "machine" {
			return a.Value.String()
		}
	}
	return ""
}

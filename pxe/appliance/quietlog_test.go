package appliance

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestQuietHandler floods one line from strangers, then checks that the
// lab's own lines still pass, that the flood is cut at quietBurst a
// window, and that the dropped count is told once the window is over.
func TestQuietHandler(t *testing.T) {
	var buf bytes.Buffer
	text := slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}})
	h := newQuietHandler(text)
	dhcp := h.WithAttrs([]slog.Attr{slog.String("svc", "dhcp")})
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	log := func(h slog.Handler, at time.Duration, msg string, attrs ...slog.Attr) {
		r := slog.NewRecord(t0.Add(at), slog.LevelWarn, msg, 0)
		r.AddAttrs(attrs...)
		if err := h.Handle(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	stranger := "dhcp: netboot from a MAC not in the plan: not booted"
	for i := range 50 {
		log(dhcp.WithAttrs([]slog.Attr{slog.Int("n", i)}), time.Duration(i)*time.Second/2, stranger)
	}
	// The lab's machine, scoped by With or named in the record, is
	// counted apart from the strangers.
	log(dhcp.WithAttrs([]slog.Attr{slog.String("machine", "node-a")}), 26*time.Second, stranger)
	log(dhcp, 27*time.Second, stranger, slog.String("machine", "node-b"))
	// Next window: the first record tells what the last one dropped.
	log(dhcp, 61*time.Second, stranger, slog.Int("n", 50))
	// A window that no record of its own ends is told by the next sweep
	// (any line, once a window after the last sweep).
	log(dhcp, 62*time.Second, "tftp read refused")
	for i := range 25 {
		log(dhcp, 63*time.Second, "tftp read refused", slog.Int("n", i))
	}
	log(dhcp, 125*time.Second, "netboot service up")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var got []string
	count := map[string]int{}
	for _, l := range lines {
		switch {
		case strings.Contains(l, "repeated lines dropped"), strings.Contains(l, "machine="), strings.Contains(l, "service up"):
			got = append(got, l)
		default:
			msg, _, _ := strings.Cut(strings.TrimPrefix(l, `level=WARN msg="`), `"`)
			count[msg]++
		}
	}
	want := []string{
		`level=WARN msg="dhcp: netboot from a MAC not in the plan: not booted" svc=dhcp machine=node-a`,
		`level=WARN msg="dhcp: netboot from a MAC not in the plan: not booted" svc=dhcp machine=node-b`,
		`level=WARN msg="log: repeated lines dropped" line="dhcp: netboot from a MAC not in the plan: not booted" dropped=30 kept=20 window=1m0s`,
		`level=WARN msg="log: repeated lines dropped" line="tftp read refused" dropped=6 kept=20 window=1m0s`,
		`level=WARN msg="netboot service up" svc=dhcp`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("summary lines (-want +got):\n%s\nall:\n%s", diff, buf.String())
	}
	if diff := cmp.Diff(map[string]int{
		stranger:            21, // 20 of the first window, 1 of the next
		"tftp read refused": 20,
	}, count); diff != "" {
		t.Errorf("lines kept (-want +got):\n%s\nall:\n%s", diff, buf.String())
	}
}

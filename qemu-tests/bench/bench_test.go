package bench

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestMarkers(t *testing.T) {
	for _, tc := range []struct {
		line string
		re   func(string) []string
		want []string
	}{
		{"[    1.893980] KILN-GATE-SERVING addr=192.168.1.10 http=http://192.168.1.10:8080/ boot=1.7",
			servingRe.FindStringSubmatch, []string{"192.168.1.10", "http://192.168.1.10:8080/", "1.7"}},
		{"KILN-DEBIAN-MULTIUSER uptime=21.93", multiUserRe.FindStringSubmatch, []string{"21.93"}},
		{"KILN-DEBIAN-MEM total_kb=1000972 available_kb=909316 uptime=42.10", memRe.FindStringSubmatch, []string{"1000972", "909316"}},
	} {
		m := tc.re(tc.line)
		if m == nil || strings.Join(m[1:], " ") != strings.Join(tc.want, " ") {
			t.Errorf("%q: %q, want %q", tc.line, m, tc.want)
		}
	}
	// The script prints exactly what the regexps read.
	if !strings.Contains(reportScript, MarkMultiUser+" uptime=") || !strings.Contains(reportScript, MarkMem+" total_kb=$t available_kb=$a") {
		t.Error("reportScript and the markers disagree")
	}
}

func TestPrint(t *testing.T) {
	r := &Report{
		Kernel: "6.1.0-50-arm64", SameKernel: true, MemoryMiB: 1024, CPUs: 1, Settle: 20 * time.Second,
		Gate:   Result{Name: "gate", Ready: 2, Wall: 5 * time.Second, RSS: 7 << 20, Used: 64 << 20, Total: 977 << 20},
		Debian: Result{Name: "debian", Ready: 22, Wall: 23 * time.Second, Used: 96 << 20, Total: 977 << 20},
	}
	var b bytes.Buffer
	Print(&b, r)
	for _, want := range []string{"11.0x", "4.6x", "1.5x", "7.0", "gate image's own vmlinuz"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
	r.Debian = Result{Name: "debian", Err: errors.New("boom")}
	b.Reset()
	Print(&b, r)
	if !strings.Contains(b.String(), "debian FAILED: boom") || strings.Contains(b.String(), "x\n") {
		t.Errorf("failed side shown with ratios:\n%s", b.String())
	}
}

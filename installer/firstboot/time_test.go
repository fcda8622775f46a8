package firstboot

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// timedatectl is the time phase's question to the clock, at every boot.
const timedatectl = "timedatectl show -p NTPSynchronized --value"

func TestWaitTimeSync(t *testing.T) {
	for _, tc := range []struct {
		name    string
		flag    bool // timesyncd's synchronized file exists
		synced  bool // timedatectl says yes
		ran     int  // timedatectl runs; -1: at least two
		console string
	}{
		{"timesyncd's flag", true, false, 0, ""},
		{"timedatectl says yes", false, true, 1, ""},
		{"never synchronised", false, false, -1,
			"kiln: time: the clock is not synchronised with the gate (192.168.1.10) after 200ms; going on (Ceph monitors warn of a clock skew above 0.05s)\n" +
				"kiln: time: × systemd-timesyncd.service - Network Time Synchronization\n" +
				"kiln: time: Active: failed (Result: exit-code)\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, env, console := newFakeNode(t)
			f.timeSynced = tc.synced
			if tc.flag {
				f.write(TimesyncFlagPath, "")
			}
			s := &node{env: env, Storage: env.Storage}
			// Long enough for a second look on a loaded machine.
			s.TimeSyncTimeout = 200 * time.Millisecond
			if err := s.waitTimeSync(context.Background()); err != nil {
				t.Fatal(err)
			}
			status := "systemctl status --no-pager --full --lines=10 systemd-timesyncd"
			if tc.ran < 0 {
				// Once it gives up, it asks timesyncd why.
				if n := len(f.ran); n == 0 || f.ran[n-1] != status {
					t.Errorf("ran %q, want %q last", f.ran, status)
				} else {
					f.ran = f.ran[:n-1]
				}
			}
			for _, c := range f.ran {
				if c != "timedatectl show -p NTPSynchronized --value" {
					t.Errorf("ran %q", c)
				}
			}
			if tc.ran >= 0 && len(f.ran) != tc.ran || tc.ran < 0 && len(f.ran) < 2 {
				t.Errorf("timedatectl ran %d times, want %d", len(f.ran), tc.ran)
			}
			if d := cmp.Diff(tc.console, console.String()); d != "" {
				t.Errorf("console (-want +got):\n%s", d)
			}
		})
	}
}

// A time phase cut short (the boot's context ends) fails rather than
// warning as if the clock had had its chance.
func TestWaitTimeSyncCanceled(t *testing.T) {
	f, env, console := newFakeNode(t)
	f.timeSynced = false
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := &node{env: env, Storage: env.Storage}
	if err := s.waitTimeSync(ctx); err == nil || strings.Contains(console.String(), "kiln: time") {
		t.Errorf("waitTimeSync = %v, console %q", err, console)
	}
}

// TestStepClock: a clock within StepThreshold of the gate's is left alone;
// one further off is stepped by the measured offset and measured again; a
// gate whose NTP service does not answer is a warning, not a failure; a
// clock that will not agree fails the task (it is retried).
func TestStepClock(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ahead   time.Duration // the gate's clock ahead of the node's
		rtt     time.Duration // each measurement's round trip
		stuck   bool          // stepping does not move the clock
		ntpErr  error
		steps   []time.Duration
		console string
		err     string
	}{
		{"agrees", 4 * time.Millisecond, 0, false, nil, nil, "", ""},
		// 30 ms is above StepThreshold, but a 100 ms round trip cannot
		// measure it better than ±50 ms: no step on noise.
		{"within a slow measurement's precision", 30 * time.Millisecond, 100 * time.Millisecond, false, nil, nil, "", ""},
		{"behind by an RTC's fraction of a second", 312 * time.Millisecond, 0, false, nil, []time.Duration{312 * time.Millisecond},
			"kiln: time: the clock is +0.3120s off the gate's; stepping it\nkiln: time: the clock now agrees with the gate's (offset +0.0000s)\n", ""},
		{"ahead", -2 * time.Second, 0, false, nil, []time.Duration{-2 * time.Second},
			"kiln: time: the clock is -2.0000s off the gate's; stepping it\nkiln: time: the clock now agrees with the gate's (offset +0.0000s)\n", ""},
		{"no answer", 0, 0, false, errors.New("ntp 192.168.1.10: i/o timeout"), nil,
			"kiln: time: cannot measure the clock against the gate (192.168.1.10): ntp 192.168.1.10: i/o timeout; going on\n", ""},
		{"will not move", time.Second, 2 * time.Millisecond, true, nil, []time.Duration{time.Second, time.Second, time.Second},
			strings.Repeat("kiln: time: the clock is +1.0000s off the gate's; stepping it\n", 3),
			"the clock is still +1.0000s off the gate's (192.168.1.10, round trip 2ms) after stepping it 3 times"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, env, console := newFakeNode(t)
			f.gateAhead, f.ntpRTT, f.ntpErr = tc.ahead, tc.rtt, tc.ntpErr
			if tc.stuck {
				env.Storage.StepClock = func(d time.Duration) error { f.steps = append(f.steps, d); return nil }
			}
			s := &node{env: env, Storage: env.Storage}
			err := s.stepClock(context.Background())
			if got := fmt.Sprint(err); (tc.err == "" && err != nil) || (tc.err != "" && got != tc.err) {
				t.Errorf("stepClock = %v, want %q", err, tc.err)
			}
			if d := cmp.Diff(tc.steps, f.steps); d != "" {
				t.Errorf("steps (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.console, console.String()); d != "" {
				t.Errorf("console (-want +got):\n%s", d)
			}
		})
	}
}

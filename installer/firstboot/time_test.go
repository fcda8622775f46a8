package firstboot

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

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
			"kiln: time: the clock is not synchronised with the gate (192.168.1.10) after 20ms; going on (Ceph monitors warn of a clock skew above 0.05s)\n" +
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

package firstboot

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The time phase: a Ceph monitor whose clock disagrees with its peers' by
// more than mon_clock_drift_allowed (0.05 s) raises MON_CLOCK_SKEW, and
// cephx refuses tickets from a clock far enough off, so the monitor should
// not start before systemd-timesyncd has synchronised the clock with the
// gate (the first NTP= of the node's networkd file, roles.writeDNSNTP).
// The wait is bounded: a gate that serves no time must not stop the lab
// from coming up, so the phase then warns and goes on.

// TimesyncFlagPath is the file systemd-timesyncd (systemd 249 and later;
// bookworm has 252) creates once it has synchronised the clock.
const TimesyncFlagPath = "/run/systemd/timesync/synchronized"

// waitTimeSync waits until the clock is synchronised: the flag file exists,
// or timedatectl reports NTPSynchronized=yes (the kernel's view, which also
// covers a clock another NTP client set). After TimeSyncTimeout it prints
// a warning on the console and succeeds.
func (s *node) waitTimeSync(ctx context.Context) error {
	limit := or(s.TimeSyncTimeout, 3*time.Minute)
	err := s.wait(ctx, limit, func(ctx context.Context) (bool, error) {
		if s.exists(TimesyncFlagPath) {
			return true, nil
		}
		out, err := s.run(ctx, "timedatectl", "show", "-p", "NTPSynchronized", "--value")
		if err != nil {
			return false, err
		}
		return strings.TrimSpace(string(out)) == "yes", nil
	})
	if !errors.Is(err, errTimedOut) {
		return err
	}
	s.env.Log.Warn("clock not synchronised; going on", "after", limit, "gate", s.env.Machine.Gate, "err", err)
	_, werr := fmt.Fprintf(s.env.Console, "kiln: time: the clock is not synchronised with the gate (%s) after %s; going on (Ceph monitors warn of a clock skew above 0.05s)\n",
		s.env.Machine.Gate, limit)
	// Say why where the operator looks: timesyncd's own account (a unit
	// that failed to start, a gate that does not answer).
	out, _ := s.run(ctx, "systemctl", "status", "--no-pager", "--full", "--lines=10", "systemd-timesyncd")
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			fmt.Fprintf(s.env.Console, "kiln: time: %s\n", l)
		}
	}
	return werr
}

package firstboot

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kilnlab/kiln/pxe/ntp"
)

// The time phase: a Ceph monitor whose clock disagrees with its peers' by
// more than mon_clock_drift_allowed (0.05 s) raises MON_CLOCK_SKEW, and
// cephx refuses tickets from a clock far enough off, so the monitor should
// not start before systemd-timesyncd has synchronised the clock with the
// gate (the first NTP= of the node's networkd file, roles.writeDNSNTP).
// The wait is bounded: a gate that serves no time must not stop the lab
// from coming up, so the phase then warns and goes on.
//
// Synchronised is not yet agreeing: timesyncd steps the clock only for an
// offset above 0.4 s and slews a smaller one at 500 ppm, i.e. up to 13
// minutes of MON_CLOCK_SKEW for the fraction of a second a machine's RTC
// (one-second resolution) leaves at every boot; the rehearsal's monitors
// showed exactly that. So the step task then measures the offset to the
// gate itself (SNTP, pxe/ntp) and steps the clock when it is above
// StepThreshold (clock_settime, which also drops whatever slew timesyncd
// left pending in the kernel), measuring again until it agrees; a gate
// that does not answer is a warning, as above.

// StepThreshold is the offset to the gate above which the step task steps
// the clock: well inside Ceph's mon_clock_drift_allowed (0.05 s).
const StepThreshold = 10 * time.Millisecond

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

// stepClock is the time phase's step task (see above). One measurement
// cannot tell the clocks apart closer than half its round trip (where in
// the exchange the gate read its clock is unknown): under load, three
// emulated machines on two cores, a round trip of 100 ms or more is
// common, and stepping by a noisy offset only moves the error around. So
// the offset counts as agreeing within max(StepThreshold, rtt/2), and the
// measurement is the best (shortest round trip) of NTPSamples exchanges.
func (s *node) stepClock(ctx context.Context) error {
	gate := s.env.Machine.Gate
	var off, rtt time.Duration
	for try := 1; try <= 3; try++ {
		var err error
		if off, rtt, err = s.gateOffset(ctx, gate); err != nil {
			s.env.Log.Warn("cannot measure the clock against the gate; going on", "gate", gate, "err", err)
			_, werr := fmt.Fprintf(s.env.Console, "kiln: time: cannot measure the clock against the gate (%s): %v; going on\n", gate, err)
			return werr
		}
		if off.Abs() <= max(StepThreshold, rtt/2) {
			s.env.Log.Info("the clock agrees with the gate's", "offset", off, "rtt", rtt, "steps", try-1)
			if try > 1 {
				_, err := fmt.Fprintf(s.env.Console, "kiln: time: the clock now agrees with the gate's (offset %+.4fs)\n", off.Seconds())
				return err
			}
			return nil
		}
		fmt.Fprintf(s.env.Console, "kiln: time: the clock is %+.4fs off the gate's; stepping it\n", off.Seconds())
		if err := s.step(off); err != nil {
			return err
		}
	}
	return fmt.Errorf("the clock is still %+.4fs off the gate's (%s, round trip %s) after stepping it 3 times", off.Seconds(), gate, rtt)
}

// NTPSamples is how many exchanges with the gate one measurement takes.
const NTPSamples = 4

// gateOffset is how far the gate's clock is ahead of this one, from the
// exchange with the shortest round trip (the least uncertain; NTP's own
// clock filter does the same).
func (s *node) gateOffset(ctx context.Context, gate string) (off, rtt time.Duration, err error) {
	if s.NTPOffset != nil {
		return s.NTPOffset(ctx, gate)
	}
	var best *ntp.Response
	for range NTPSamples {
		r, qerr := ntp.Query(ctx, gate)
		if qerr != nil {
			err = qerr
			continue
		}
		if best == nil || r.RTT < best.RTT {
			best = &r
		}
	}
	if best == nil {
		return 0, 0, err
	}
	return best.Offset, best.RTT, nil
}

// step moves the clock by d.
func (s *node) step(d time.Duration) error {
	if s.StepClock != nil {
		return s.StepClock(d)
	}
	ts := unix.NsecToTimespec(time.Now().Add(d).UnixNano())
	if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
		return fmt.Errorf("clock_settime: %w", err)
	}
	return nil
}

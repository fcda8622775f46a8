package appliance

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kilnlab/kiln/pxe/state"
)

// The Pi has no RTC: it boots at 1970. The clock floor is the latest time
// the gate knows has passed: the image's build time, and the time a
// running gate last wrote to /perm/clock. The clock is raised to it at
// boot and never stepped below it (a wrong NTP answer included).

// clockFile is /perm/clock, relative to /perm.
const clockFile = "clock"

// clock keeps the floor and steps the system clock.
type clock struct {
	sys   System
	floor time.Time
}

// raise lifts the floor to t and the system clock to the floor; it
// reports whether the clock was stepped.
func (c *clock) raise(t time.Time) (bool, error) {
	if t.After(c.floor) {
		c.floor = t
	}
	if !c.sys.Now().Before(c.floor) {
		return false, nil
	}
	return true, c.sys.SetClock(c.floor)
}

// ErrBelowFloor refuses a time (from NTP) earlier than the floor.
var ErrBelowFloor = errors.New("earlier than the clock floor")

// step sets the clock to t unless t is below the floor.
func (c *clock) step(t time.Time) error {
	if t.Before(c.floor) {
		return fmt.Errorf("%s: %w %s", t.UTC().Format(time.RFC3339), ErrBelowFloor, c.floor.UTC().Format(time.RFC3339))
	}
	return c.sys.SetClock(t)
}

// readClockFile reads the time a running gate last saved; a missing file
// (first boot) is the zero time.
func readClockFile(perm string) (time.Time, error) {
	b, err := os.ReadFile(filepath.Join(perm, clockFile))
	if errors.Is(err, os.ErrNotExist) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(string(b)))
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", clockFile, err)
	}
	return t, nil
}

// writeClockFile saves now atomically (a power cut leaves the old or the
// new time, never a torn file).
func writeClockFile(perm string, now time.Time) error {
	return state.WriteFileAtomic(filepath.Join(perm, clockFile), []byte(now.UTC().Format(time.RFC3339)+"\n"), 0o644)
}

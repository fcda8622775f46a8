// Package roottest holds what tests that need root share: the rule that a
// missing root skips such a test except under CI=true (CI runs as root, so
// there a skip would hide a broken check), and running code inside a
// network namespace the test created.
package roottest

import (
	"fmt"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// Need skips t unless it runs as root, or fails it under CI=true; what
// says what needs root.
func Need(t testing.TB, what string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s needs root (CI runs as root)", what)
	}
	t.Skipf("%s needs root", what)
}

// InNetns runs fn on an OS thread switched into the named namespace
// (/var/run/netns/NAME). Sockets fn opens stay in that namespace whatever
// thread later uses them. The thread is never unlocked: Go retires it when
// the goroutine ends, so no other goroutine ever runs in ns.
func InNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

package ntp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kilnlab/kiln/image/hosttool/hosttooltest"
)

// Independent peers from Debian: chrony (package chrony) as a client of
// Serve and as a server for Query; ntpsec's ntpdig (package ntpsec-ntpdig,
// which `ntpdate` of ntpsec-ntpdate wraps) as a second client. Every run
// is on loopback; chronyd runs with -x, so it never touches the host's
// clock.

// peerShift is how far ahead of the host the served clock runs, so that
// a peer that agrees has measured a real offset, with its sign.
const peerShift = 100 * time.Second

// chronyArgs are the options that keep a test chronyd to itself: no
// clock control (-x), no root check (-U), its pid file and no command
// socket in dir.
func chronyArgs(dir string) []string {
	return []string{"-x", "-U", "pidfile " + filepath.Join(dir, "chronyd.pid"), "cmdport 0"}
}

// aheadClock is the gate's Clock, never synced (a local stratum 10
// clock), running peerShift ahead of the host.
func aheadClock() *Clock {
	return NewClock(func() time.Time { return time.Now().Add(peerShift) })
}

var chronyWrong = regexp.MustCompile(`System clock wrong by (-?[0-9.]+) seconds`)

func TestChronyQueriesServe(t *testing.T) {
	hosttooltest.Need(t, "chronyd")
	addr := serve(t, aheadClock())
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// -Q: measure the offset once and print it, never set the clock.
	// It only prints one for a server its source checks accept (a
	// server saying leap 3, for one, gets "Timeout reached").
	args := append([]string{"-Q", "-t", "20"}, chronyArgs(t.TempDir())...)
	args = append(args, fmt.Sprintf("server %s port %s iburst maxsamples 1", host, port))
	out, err := exec.CommandContext(ctx, "chronyd", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("chronyd -Q: %v\n%s", err, out)
	}
	m := chronyWrong.FindSubmatch(out)
	if m == nil {
		t.Fatalf("chronyd -Q printed no offset:\n%s", out)
	}
	wrong, _ := strconv.ParseFloat(string(m[1]), 64)
	// chrony prints the correction the local clock needs: a server
	// ahead by peerShift is "wrong by +peerShift".
	if d := time.Duration(wrong*float64(time.Second)) - peerShift; d < -time.Second || d > time.Second {
		t.Errorf("chrony measured the server %.6f s ahead, want %s ± 1 s:\n%s", wrong, peerShift, out)
	}
}

func TestQueryChronyd(t *testing.T) {
	hosttooltest.Need(t, "chronyd")
	dir := t.TempDir()
	port := freeUDPPort(t)
	ctx, cancel := context.WithCancel(context.Background())
	// A local-only server, like the gate's: `local stratum 10`.
	args := append([]string{"-d"}, chronyArgs(dir)...)
	args = append(args, "local stratum 10", "allow 127.0.0.1", "port "+strconv.Itoa(port), "bindaddress 127.0.0.1")
	cmd := exec.CommandContext(ctx, "chronyd", args...)
	log, err := os.Create(filepath.Join(dir, "chronyd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("chronyd log:\n%s", b)
		}
	})
	server := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	r, err := untilUp(t, server)
	if err != nil {
		t.Fatal(err)
	}
	if r.Offset < -time.Second || r.Offset > time.Second {
		t.Errorf("offset to a chronyd on this host: %s, want within 1 s", r.Offset)
	}
	if r.Stratum != 10 || r.Leap != LeapNone || RefIDString(r.RefID) != "127.127.1.1" {
		t.Errorf("chronyd answered stratum %d, leap %d, refid %s; want 10, 0, 127.127.1.1 (its local reference)",
			r.Stratum, r.Leap, RefIDString(r.RefID))
	}
}

// untilUp queries server until it answers (chronyd takes a moment to bind),
// for at most 30 s.
func untilUp(t *testing.T, server string) (Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		qctx, qcancel := context.WithTimeout(ctx, time.Second)
		r, err := Query(qctx, server)
		qcancel()
		if err == nil || ctx.Err() != nil {
			return r, err
		}
		select {
		case <-ctx.Done():
			return r, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// ntpdig has no port option: it always asks port 123. The test serves
// on 127.0.0.1:123 inside a network namespace of its own (one locked OS
// thread unshares it; it goes away with that thread), so it neither
// needs nor disturbs the host's port 123.
func TestNtpdigQueriesServe(t *testing.T) {
	hosttooltest.Need(t, "ntpdig")
	type result struct {
		out []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		// Never unlocked: the thread exits with this goroutine and
		// takes the namespace with it.
		runtime.LockOSThread()
		out, err := inNetns(func() ([]byte, error) {
			pc, err := net.ListenPacket("udp4", "127.0.0.1:123")
			if err != nil {
				return nil, err
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go Serve(ctx, pc, aheadClock(), quiet())
			// Started from this locked thread, ntpdig inherits its
			// network namespace.
			cmd := exec.CommandContext(ctx, "ntpdig", "-j", "-t", "10", "127.0.0.1")
			out, err := cmd.Output()
			if err != nil {
				return out, fmt.Errorf("ntpdig: %w", err)
			}
			return out, nil
		})
		done <- result{out, err}
	}()
	res := <-done
	if errors.Is(res.err, errNoNetns) {
		if os.Getenv("CI") == "true" {
			t.Fatal(res.err)
		}
		t.Skip(res.err)
	}
	if res.err != nil {
		t.Fatalf("%v\n%s", res.err, res.out)
	}
	var got struct {
		Offset  float64 `json:"offset"`
		Stratum int     `json:"stratum"`
		Leap    string  `json:"leap"`
	}
	if err := json.Unmarshal(res.out, &got); err != nil {
		t.Fatalf("ntpdig -j: %v\n%s", err, res.out)
	}
	if d := time.Duration(got.Offset*float64(time.Second)) - peerShift; d < -time.Second || d > time.Second {
		t.Errorf("ntpdig measured offset %.6f s, want %s ± 1 s", got.Offset, peerShift)
	}
	if got.Stratum != LocalStratum || got.Leap != "no-leap" {
		t.Errorf("ntpdig saw stratum %d, leap %q; want %d, no-leap:\n%s", got.Stratum, got.Leap, LocalStratum, res.out)
	}
}

var errNoNetns = errors.New("cannot create a network namespace (needs root)")

// inNetns runs f in a new network namespace with lo up. The caller's
// goroutine must be locked to its OS thread and must not unlock it.
func inNetns(f func() ([]byte, error)) ([]byte, error) {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("%w: %w", errNoNetns, err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return nil, err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return nil, fmt.Errorf("lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return nil, fmt.Errorf("lo up: %w", err)
	}
	return f()
}

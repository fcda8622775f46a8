package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long a process gets between SIGTERM and SIGKILL.
const stopGrace = 3 * time.Second

// Process is a command the lab started and will stop on Close. Its own
// process group is signalled, so helpers it forks die with it.
type Process struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid once done is closed
}

// startProcess starts cmd in its own process group, with SIGKILL as its
// parent-death signal so a crashed test binary leaves no QEMU behind.
func startProcess(name string, cmd *exec.Cmd) (*Process, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id of the started command.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits for the process to exit or ctx to end, whichever is first.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop signals the process group with sig, then SIGKILL after a grace
// period, and waits for the exit. Stopping an exited process is a no-op.
func (p *Process) Stop(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, sig)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
}

// lineWatcher is an io.Writer that remembers output and tells waiters when
// a substring shows up: how the lab knows tcpdump and dnsmasq are ready.
type lineWatcher struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	waiters []watch
}

type watch struct {
	s  string
	ch chan struct{}
}

func (w *lineWatcher) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	// Once nobody waits, keep only a bounded head (for error messages):
	// dnsmasq logs every DHCP exchange of a long rehearsal here.
	if len(w.waiters) == 0 && w.buf.Len() > 64<<10 {
		return len(b), nil
	}
	w.buf.Write(b)
	kept := w.waiters[:0]
	for _, wt := range w.waiters {
		if strings.Contains(w.buf.String(), wt.s) {
			close(wt.ch)
			continue
		}
		kept = append(kept, wt)
	}
	w.waiters = kept
	return len(b), nil
}

// seen returns a channel closed once s has been written.
func (w *lineWatcher) seen(s string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch := make(chan struct{})
	if strings.Contains(w.buf.String(), s) {
		close(ch)
		return ch
	}
	w.waiters = append(w.waiters, watch{s: s, ch: ch})
	return ch
}

func (w *lineWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// errNotReady is returned when a helper exits or times out before it says
// it is ready.
var errNotReady = errors.New("not ready")

// waitReady waits until out has shown marker, the process has exited, or
// the timeout passes.
func waitReady(ctx context.Context, p *Process, out *lineWatcher, marker string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	select {
	case <-out.seen(marker):
		return nil
	case <-p.Done():
		return fmt.Errorf("%s exited: %v: %w\n%s", p.Name, p.err, errNotReady, out.String())
	case <-ctx.Done():
		return fmt.Errorf("%s: no %q within %v: %w\n%s", p.Name, marker, timeout, errNotReady, out.String())
	}
}

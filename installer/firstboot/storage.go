package firstboot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/kilnlab/kiln/profiles"
)

// A storage node's first boot adds two phases before the announcement
// (roles' storage FirstBoot): "time" (time.go) and "ceph" (ceph.go). Their
// tasks read and write files under Storage.Root and run every program
// through Storage.Command, so tests run them against a directory tree and
// a fake of ceph, ceph-volume, systemctl and friends.

// Storage is what the time and ceph phases act on beyond Env. A nil
// *Storage, like its zero fields, means the running system and the
// defaults.
type Storage struct {
	// Root is the file system the phases read and write ("" is /).
	// Commands are given the machine's own paths, without Root.
	Root string
	// Command runs a program and returns its standard output; nil runs
	// it with os/exec (its standard error goes into the error). Env.Exec
	// cannot stand in: it returns no output, and ceph, ceph-volume and
	// timedatectl answer on standard output.
	Command func(ctx context.Context, name string, args ...string) ([]byte, error)
	// Poll is how often a bounded wait looks again; 0 means 2 s.
	Poll time.Duration
	// TimeSyncTimeout bounds the wait for the clock; 0 means 3 min.
	TimeSyncTimeout time.Duration
	// NTPOffset measures how far the gate's clock is ahead of this one,
	// and the round trip of that measurement; nil asks the gate's NTP
	// service (pxe/ntp.Query, the best of NTPSamples exchanges).
	NTPOffset func(ctx context.Context, gate string) (offset, rtt time.Duration, err error)
	// StepClock moves the clock by d; nil sets CLOCK_REALTIME.
	StepClock func(d time.Duration) error
	// QuorumTimeout bounds the wait for a monitor quorum, which needs a
	// majority of the storage nodes up; 0 means 15 min.
	QuorumTimeout time.Duration
	// SettleTimeout bounds the wait, before the report, for a manager
	// and this node's OSDs to come up; 0 means 2 min.
	SettleTimeout time.Duration
	// SelftestTimeout bounds each ceph and rados command of the
	// self-test (selftest.go): rados has no timeout of its own; 0 means
	// 5 min.
	SelftestTimeout time.Duration
	// K3sTimeout bounds the wait for k3s to be ready; 0 means
	// K3sReadyTimeout.
	K3sTimeout time.Duration
	// VaultTimeout bounds the wait for Vault to be unsealed; 0 means
	// VaultUnsealTimeout.
	VaultTimeout time.Duration
	// VaultSelftestPause is how long the node waits before asking the
	// gate again after a failed self-test; 0 means vaultSelftestPause.
	VaultSelftestPause time.Duration
}

// storagePhases are the phases a storage node adds after "network"; none
// for other roles.
func (e *Env) storagePhases() []Phase {
	if e.Machine.Role != profiles.RoleStorage {
		return nil
	}
	s := e.storageNode()
	phases := []Phase{
		// At every boot: an RTC restarts the clock up to a second off.
		{Name: "time", Tasks: []Task{{Name: "sync", Run: s.waitTimeSync, EveryBoot: true}, {Name: "step", Run: s.stepClock, EveryBoot: true}}},
		{Name: "ceph", Tasks: s.cephTasks()},
	}
	// Consul and Vault when the lab runs them (consul.go, vault.go).
	if t := s.consulTasks(); len(t) > 0 {
		phases = append(phases, Phase{Name: "consul", Tasks: t})
	}
	if t := s.vaultTasks(); len(t) > 0 {
		phases = append(phases, Phase{Name: "vault", Tasks: t})
	}
	return phases
}

// node is a storage node's time and ceph tasks.
type node struct {
	env *Env
	*Storage
}

// run runs a program through Command.
func (s *node) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	if s.Command != nil {
		return s.Command(ctx, name, args...)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// path is the machine's path p under Root.
func (s *node) path(p string) string { return filepath.Join(s.Root, p) }

func (s *node) exists(p string) bool {
	_, err := os.Lstat(s.path(p))
	return err == nil
}

func (s *node) readFile(p string) ([]byte, error) { return os.ReadFile(s.path(p)) }

// writeFile puts data at the machine's path p with mode, atomically and
// durably (temporary file, fsync, rename, fsync of the directory), so a
// power cut leaves the old file or the new one, never half of one. A file
// that already holds data with mode is left alone. Parents are made 0755.
func (s *node) writeFile(p string, data []byte, mode fs.FileMode) error {
	full := s.path(p)
	if old, err := os.ReadFile(full); err == nil && bytes.Equal(old, data) {
		if fi, err := os.Stat(full); err == nil && fi.Mode().Perm() == mode {
			return nil
		}
	}
	dir := filepath.Dir(full)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".kiln-tmp-")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	merr := tmp.Chmod(mode)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, merr, serr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := os.Rename(tmp.Name(), full); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", p, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// wait calls try every Poll until it reports done, its error is final,
// ctx ends, or limit passes; it returns errTimedOut (with try's last
// error) in the last case.
func (s *node) wait(outer context.Context, limit time.Duration, try func(ctx context.Context) (done bool, err error)) error {
	ctx, cancel := context.WithTimeout(outer, limit)
	defer cancel()
	for {
		done, err := try(ctx)
		if done {
			return err
		}
		select {
		case <-ctx.Done():
			if outer.Err() != nil {
				return outer.Err()
			}
			if err != nil { // one line, for the console's markers
				return fmt.Errorf("%w (last: %v)", errTimedOut, err)
			}
			return errTimedOut
		case <-time.After(or(s.Poll, 2*time.Second)):
		}
	}
}

var errTimedOut = errors.New("timed out")

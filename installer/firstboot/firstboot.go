// Package firstboot owns the role OS's first-boot program: declared phases
// of small idempotent tasks (after Talos's sequencer), run in order, each
// recording its completion under a state directory so that a re-run after a
// power cut skips what is done and redoes what is not. The tasks: grow the
// state filesystem to its partition, wait for the static address, print
// KILN-BOOTED on the console, tell the gate.
package firstboot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/kilnlab/kiln/roles"
)

// Machine is /etc/kiln/machine.json, the identity package roles renders
// into the state image.
type Machine = roles.Identity

// LoadMachine reads machine.json.
func LoadMachine(path string) (Machine, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Machine{}, err
	}
	var m Machine
	if err := json.Unmarshal(b, &m); err != nil {
		return Machine{}, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// Task is one idempotent step.
type Task struct {
	Name string
	Run  func(ctx context.Context) error
	// Optional tasks log their failure and let the rest run; they are
	// not recorded, so the next boot tries again.
	Optional bool
}

// Phase is a named group of tasks run in order.
type Phase struct {
	Name  string
	Tasks []Task
}

// Runner runs phases and records what is done under Dir.
type Runner struct {
	Dir string // /var/lib/kiln/firstboot
	Log *slog.Logger
}

// Run runs every task not yet recorded. It stops at the first failing
// task that is not optional.
func (r Runner) Run(ctx context.Context, phases []Phase) error {
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		return err
	}
	var optional []error
	for _, ph := range phases {
		for _, t := range ph.Tasks {
			id := ph.Name + "." + t.Name
			if r.done(id) {
				r.Log.Info("task already done", "task", id)
				continue
			}
			r.Log.Info("task", "task", id)
			if err := t.Run(ctx); err != nil {
				if t.Optional {
					r.Log.Warn("optional task failed", "task", id, "err", err)
					optional = append(optional, fmt.Errorf("%s: %w", id, err))
					continue
				}
				return fmt.Errorf("%s: %w", id, err)
			}
			if err := r.record(id); err != nil {
				return err
			}
		}
	}
	if len(optional) > 0 {
		r.Log.Warn("first boot finished with optional failures", "err", errors.Join(optional...))
	}
	return nil
}

func (r Runner) done(id string) bool {
	_, err := os.Stat(filepath.Join(r.Dir, id))
	return err == nil
}

// record writes the marker durably: temp file, fsync, rename, fsync dir,
// so that a power cut leaves either no marker or a whole one.
func (r Runner) record(id string) error {
	tmp, err := os.CreateTemp(r.Dir, ".tmp-")
	if err != nil {
		return err
	}
	_, werr := io.WriteString(tmp, "done\n")
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(r.Dir, id)); err != nil {
		return err
	}
	d, err := os.Open(r.Dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

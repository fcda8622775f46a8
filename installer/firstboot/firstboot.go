// Package firstboot owns the role OS's first-boot program: declared phases
// of small idempotent tasks (after Talos's sequencer), run in order, each
// recording its completion under a state directory so that a re-run after a
// power cut skips what is done and redoes what is not, and each reporting
// its start, its tasks' progress and its result to the gate. The tasks:
// grow the state filesystem to its partition, wait for the static address
// and check each planned bond from inside (netcheck.go), a storage node's
// time and Ceph (storage.go), print KILN-BOOTED on the console, tell the
// gate. The same program, run as `kiln-firstboot health` by a timer,
// reports the services' health to the gate (health.go).
package firstboot

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kilnlab/kiln/pxe/api"
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
	// EveryBoot tasks are never recorded: they run at every boot, for
	// what does not stay done (the clock's agreement with the gate's).
	EveryBoot bool
}

// Phase is a named group of tasks run in order.
type Phase struct {
	Name  string
	Tasks []Task
}

// Reporter tells the gate how the first boot goes: each phase's start,
// each task's progress, each phase's result. gateclient.Client is one;
// tests fake it.
type Reporter interface {
	Phase(ctx context.Context, p api.Phase) error
}

// Runner runs phases and records what is done under Dir.
type Runner struct {
	Dir string // /var/lib/kiln/firstboot
	Log *slog.Logger
	// Report, when set, is told how the phases go. A report that cannot
	// be sent is logged and never stops the first boot: the gate may be
	// down, and the machine's own work matters more.
	Report Reporter
	// ReportTimeout bounds each report, so that a gate that does not
	// answer slows the first boot little; 0 means 10 s.
	ReportTimeout time.Duration
}

// Run runs every task not yet recorded. It stops at the first failing
// task that is not optional: its phase is reported failed with the error
// and, since only done tasks are recorded, runs again at the next Run
// (kiln-firstboot.service restarts on failure). A phase whose tasks are
// all recorded is reported done again, so a gate that missed it learns.
func (r Runner) Run(ctx context.Context, phases []Phase) error {
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		return err
	}
	rep := &reports{to: r.Report, log: r.Log, timeout: r.ReportTimeout}
	var optional []error
	for _, ph := range phases {
		if !slices.ContainsFunc(ph.Tasks, func(t Task) bool { return t.EveryBoot || !r.done(ph.Name+"."+t.Name) }) {
			r.Log.Info("phase already done", "phase", ph.Name)
			rep.send(ctx, api.Phase{Phase: ph.Name, Status: api.PhaseDone, Message: "already done"})
			continue
		}
		rep.send(ctx, api.Phase{Phase: ph.Name, Status: api.PhaseRunning})
		var skipped []string
		for i, t := range ph.Tasks {
			id := ph.Name + "." + t.Name
			if !t.EveryBoot && r.done(id) {
				r.Log.Info("task already done", "task", id)
				continue
			}
			r.Log.Info("task", "task", id)
			rep.send(ctx, api.Phase{Phase: ph.Name, Status: api.PhaseRunning, Task: t.Name, Message: fmt.Sprintf("task %d of %d", i+1, len(ph.Tasks))})
			err := t.Run(ctx)
			if err != nil && t.Optional {
				r.Log.Warn("optional task failed", "task", id, "err", err)
				optional = append(optional, fmt.Errorf("%s: %w", id, err))
				skipped = append(skipped, t.Name+": "+err.Error())
				continue
			}
			if err == nil && !t.EveryBoot {
				err = r.record(id)
			}
			if err != nil {
				rep.send(ctx, api.Phase{Phase: ph.Name, Status: api.PhaseFailed, Task: t.Name, Error: err.Error()})
				return fmt.Errorf("%s: %w", id, err)
			}
		}
		done := api.Phase{Phase: ph.Name, Status: api.PhaseDone}
		if len(skipped) > 0 {
			done.Message = "optional tasks failed (tried again at the next boot): " + strings.Join(skipped, "; ")
		}
		rep.send(ctx, done)
	}
	if len(optional) > 0 {
		r.Log.Warn("first boot finished with optional failures", "err", errors.Join(optional...))
	}
	return nil
}

// reports sends one Run's reports. A phase's result that cannot be sent
// is kept and sent before the next report, so the gate learns how every
// phase ended as soon as it can be reached (the first phases run before
// the network is up); progress that cannot be sent is stale by then and
// dropped.
type reports struct {
	to      Reporter
	log     *slog.Logger
	timeout time.Duration
	unsent  []api.Phase
}

func (rs *reports) send(ctx context.Context, p api.Phase) {
	if rs.to == nil {
		return
	}
	queue := append(rs.unsent, p)
	rs.unsent = nil
	for i, q := range queue {
		rctx, cancel := context.WithTimeout(ctx, cmp.Or(rs.timeout, 10*time.Second))
		err := rs.to.Phase(rctx, q)
		cancel()
		if err == nil {
			continue
		}
		rs.log.Warn("cannot report to the gate; the first boot goes on",
			"phase", q.Phase, "status", q.Status, "task", q.Task, "not_sent", len(queue)-i, "err", err)
		// The gate is not answering: keep the results for the next
		// report rather than wait on it again for each.
		for _, q := range queue[i:] {
			if q.Status != api.PhaseRunning {
				rs.unsent = append(rs.unsent, q)
			}
		}
		return
	}
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

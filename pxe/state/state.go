// Package state owns the gate's record of each netbooted machine: where it
// is in its install (install, installing, installed, failed), its one-time
// install token, its last progress report or error, its first-boot
// report, its last netboot (the gate's word for its last power-on), the
// phases of its first boot and its services' last health as the machine
// reported them, with since when each has its status and when it was
// first healthy in this boot. Records are JSON files in the state
// directory (one per MAC), replaced atomically (write, fsync, rename) and
// serialised across processes by a lock file, so `kiln gate reinstall` can
// re-arm a machine while the gate is serving and a record survives a
// power cut.
package state

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Machine states.
const (
	// Install: the next netboot installs the machine (the default for a
	// machine never seen, and what re-arming sets). A UEFI machine boots
	// its disk first: the gate's answer to its OS's health report makes
	// its next boot a netboot (api.HealthAnswer).
	Install = "install"
	// Installing: the installer traded its token for the install manifest.
	Installing = "installing"
	// Installed: the installer reported success; netboots exit to disk.
	Installed = "installed"
	// Failed: the installer reported an error; netboots exit to disk
	// until someone re-arms the machine.
	Failed = "failed"
)

// Errors the HTTP layer maps to 403.
var (
	ErrBadToken   = errors.New("wrong or consumed install token")
	ErrWrongState = errors.New("machine is not in a state that allows this")
	// ErrSecretsTaken: this install's secrets were handed out already.
	ErrSecretsTaken = errors.New("secrets already handed out for this install")
)

// ErrTooManyAttempts: MaxAttempts installs in a row ended without a
// result; ArmToken made the machine Failed instead of arming it.
var ErrTooManyAttempts = errors.New("gave up installing")

// Progress is the installer's last progress report.
type Progress struct {
	Phase   string `json:"phase"`
	Message string `json:"message,omitempty"`
	Done    int64  `json:"done,omitempty"`
	Total   int64  `json:"total,omitempty"`
}

// Booted is the role OS's first-boot report.
type Booted struct {
	Hostname string    `json:"hostname"`
	Address  string    `json:"address"`
	At       time.Time `json:"at"`
}

// Record is one machine's state on disk.
type Record struct {
	MAC     string `json:"mac"`
	Machine string `json:"machine"`
	State   string `json:"state"`
	// Since is when the machine entered State; Updated is the last change
	// of any kind (progress reports included).
	Since   time.Time `json:"since"`
	Updated time.Time `json:"updated"`
	// Token is the one-time install credential handed out on the iPXE
	// leg. Empty when none is outstanding.
	Token    string    `json:"token,omitempty"`
	Progress *Progress `json:"progress,omitempty"`
	// ProgressAt is when Progress arrived (the status page shows how
	// stale an install's last word is).
	ProgressAt time.Time `json:"progress_at,omitzero"`
	Error      string    `json:"error,omitempty"`
	Booted     *Booted   `json:"booted,omitempty"`
	// Netbooted is when the machine last asked for its iPXE script
	// (MarkNetbooted).
	Netbooted time.Time `json:"netbooted,omitzero"`
	// DiskBoot is the start of a boot that no netboot began, as the
	// machine's OS reported it (a UEFI machine boots its disk first):
	// see ReportHealth and PowerOn.
	DiskBoot time.Time `json:"disk_boot,omitzero"`
	// Handouts are the latest hand-outs of the machine's secrets, oldest
	// first (at most MaxHandouts): more than one per install means a
	// host other than the machine asked first.
	Handouts []Handout `json:"handouts,omitempty"`
	// Phases are the role OS's first-boot phases as the machine reported
	// them, in the order first reported (at most MaxPhases); a new
	// install starts them afresh.
	Phases []Phase `json:"phases,omitempty"`
	// Health is the machine's last health report.
	Health *Health `json:"health,omitempty"`
	// Installs counts the installs that succeeded: after one, an install
	// is a reinstall, which keeps the machine's data disks.
	Installs int `json:"installs,omitempty"`
	// Attempts counts the installs begun since the last result (or
	// re-arm by the operator): each one a power cut or a hang ended
	// counts. At MaxAttempts the machine is Failed: no install loop.
	Attempts int `json:"attempts,omitempty"`
	// Rearmed says why and when the gate itself re-armed the machine
	// (an install it stopped hearing from); empty otherwise.
	Rearmed string `json:"rearmed,omitempty"`
}

// MaxAttempts bounds the installs in a row that end without a result.
// One interrupted by a power cut restarts at the next netboot; this many
// in a row is something else (a machine that resets mid-install, an
// installer that hangs) that reinstalling again will not cure.
const MaxAttempts = 5

// Bounds of what a machine's reports may make a record hold: they come
// from the network, and every record is read whole at each status page.
const (
	// MaxPhases bounds a record's first-boot phases: a role declares a
	// handful.
	MaxPhases = 16
	// MaxServices bounds the services of a health report.
	MaxServices = 32
	// MaxName bounds a phase, task or service name (bytes).
	MaxName = 64
	// MaxText bounds a message, error or detail (bytes).
	MaxText = 2048
)

// ErrTooManyPhases: a machine reported a new phase beyond MaxPhases.
var ErrTooManyPhases = errors.New("too many first-boot phases")

// Phase statuses, as the machine reports them.
const (
	PhaseRunning = "running"
	PhaseDone    = "done"
	PhaseFailed  = "failed"
)

// PhaseReport is one report of a first-boot phase (api.Phase, checked by
// the HTTP layer).
type PhaseReport struct {
	Phase, Status, Task, Message, Error string
}

// Phase is what the gate knows of one first-boot phase of a machine.
type Phase struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	// Task is the task running, or the one that failed.
	Task    string `json:"task,omitempty"`
	Message string `json:"message,omitempty"`
	// Error is the last failure's error; it stays while the phase runs
	// again, and goes when the phase is done.
	Error string `json:"error,omitempty"`
	// Attempts counts the starts of the phase (a failed phase is run
	// again at the next start of the first-boot service).
	Attempts int `json:"attempts,omitempty"`
	// Started is when the last attempt started, At when the last report
	// arrived (the gate's clock, not the machine's).
	Started time.Time `json:"started,omitzero"`
	At      time.Time `json:"at"`
}

// Health is a machine's last health report, with when the gate received
// it.
type Health struct {
	Services []Service `json:"services"`
	At       time.Time `json:"at"`
	// NetbootNext: the machine said its next boot is a netboot (its OS
	// set it when the gate answered that it is re-armed).
	NetbootNext bool `json:"netboot_next,omitempty"`
}

// Service is one service's health as the machine reported it, with what
// the gate makes of its reports in the machine's current boot.
type Service struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Since is the first report of Status in an unbroken run of reports
	// of it in this boot (ReportHealth sets it; the machine's reports
	// leave it out).
	Since time.Time `json:"since"`
	// HealthyAt is the service's first report of ServiceOK in this boot,
	// kept whatever it reports after: how long the machine took to bring
	// it up. Zero until then; a netboot clears it.
	HealthyAt time.Time `json:"healthy_at,omitzero"`
}

// ServiceOK is the status of a healthy service (api.HealthOK).
const ServiceOK = "ok"

// MaxHandouts bounds the hand-outs a record keeps.
const MaxHandouts = 8

// Handout records one hand-out of a machine's secrets: to which install
// (its token, so the same install cannot take them twice), when, and to
// which address (the status page shows it: a hand-out the operator did
// not expect is a LAN host that raced the machine).
type Handout struct {
	Token  string    `json:"token"`
	At     time.Time `json:"at"`
	Remote string    `json:"remote"`
}

// Store is the state directory.
type Store struct {
	dir string
	mu  sync.Mutex // serialises this process; the lock file serialises processes
	now func() time.Time
}

// Open opens (creating) the state directory. now may be nil (time.Now).
func Open(dir string, now func() time.Time) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	st := &Store{dir: dir, now: now}
	if err := st.locked(st.sweep); err != nil {
		return nil, err
	}
	return st, nil
}

// sweep removes the temporary files of writes that a power cut stopped
// before their rename (WriteFileAtomic): never read as state, they would
// only pile up on the gate's card. Under the lock, no write is under way.
func (s *Store) sweep() error {
	tmps, err := filepath.Glob(filepath.Join(s.dir, ".*.json.tmp*"))
	if err != nil {
		return err
	}
	for _, t := range tmps {
		if err := os.Remove(t); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("state: %w", err)
		}
	}
	return nil
}

// Dir is the folder of the records (on the gate, under /perm).
func (s *Store) Dir() string { return s.dir }

// NormalizeMAC returns mac in lower-case colon form, the key of a record.
func NormalizeMAC(mac string) (string, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return "", fmt.Errorf("mac %q: %w", mac, err)
	}
	if len(hw) != 6 {
		return "", fmt.Errorf("mac %q: not an Ethernet address", mac)
	}
	return hw.String(), nil
}

func (s *Store) path(mac string) string {
	return filepath.Join(s.dir, strings.ReplaceAll(mac, ":", "-")+".json")
}

// Get returns the record of mac; a machine never seen is in Install.
func (s *Store) Get(mac, machine string) (Record, error) {
	var r Record
	err := s.locked(func() error {
		var err error
		r, err = s.read(mac, machine)
		return err
	})
	return r, err
}

// Update applies fn to the record of mac under the lock and writes the
// result back atomically. If fn returns an error nothing is written.
func (s *Store) Update(mac, machine string, fn func(*Record) error) (Record, error) {
	var r Record
	err := s.locked(func() error {
		var err error
		if r, err = s.read(mac, machine); err != nil {
			return err
		}
		before := r
		if err := fn(&r); err != nil {
			return err
		}
		now := s.now().UTC()
		r.Updated = now
		if r.State != before.State {
			r.Since = now
		}
		return s.write(r)
	})
	return r, err
}

// List returns every record on disk, sorted by machine name then MAC.
func (s *Store) List() ([]Record, error) {
	var out []Record
	err := s.locked(func() error {
		ents, err := os.ReadDir(s.dir)
		if err != nil {
			return fmt.Errorf("state dir: %w", err)
		}
		for _, e := range ents {
			if !strings.HasSuffix(e.Name(), ".json") {
				continue
			}
			r, err := readFile(filepath.Join(s.dir, e.Name()))
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Machine != out[j].Machine {
			return out[i].Machine < out[j].Machine
		}
		return out[i].MAC < out[j].MAC
	})
	return out, err
}

// ArmToken hands out a fresh one-time install token for a machine in
// Install (or Installing: a machine that netboots again mid-install was
// interrupted, and the old token dies with that attempt). It returns
// ErrWrongState otherwise.
func (s *Store) ArmToken(mac, machine string) (string, error) {
	tok, err := newToken()
	if err != nil {
		return "", err
	}
	rec, err := s.Update(mac, machine, func(r *Record) error {
		if r.State != Install && r.State != Installing {
			return wrongState(r)
		}
		if r.Attempts >= MaxAttempts {
			giveUp(r)
			return nil
		}
		r.State = Install
		r.Token = tok
		r.Progress, r.ProgressAt = nil, time.Time{}
		r.Error = ""
		return nil
	})
	if err != nil {
		return "", err
	}
	if rec.State == Failed {
		return "", fmt.Errorf("%w: %s", ErrTooManyAttempts, rec.Error)
	}
	return tok, nil
}

// Authorize checks token against a machine in Install or Installing
// without changing anything.
func (s *Store) Authorize(mac, machine, token string) error {
	r, err := s.Get(mac, machine)
	if err != nil {
		return err
	}
	if err := checkToken(&r, token); err != nil {
		return err
	}
	if r.State != Install && r.State != Installing {
		return wrongState(&r)
	}
	return nil
}

// BeginInstall checks token and moves the machine to Installing; the
// installer may ask again (a retried fetch) while Installing.
func (s *Store) BeginInstall(mac, machine, token string) (Record, error) {
	return s.Update(mac, machine, func(r *Record) error {
		if err := checkToken(r, token); err != nil {
			return err
		}
		if r.State != Install && r.State != Installing {
			return wrongState(r)
		}
		if r.State == Install {
			// A new install: the machine's first boot starts afresh.
			r.Phases, r.Health = nil, nil
			r.Attempts++
		}
		r.State = Installing
		return nil
	})
}

// HandOutSecrets records that the install holding token takes its
// machine's secrets, once: the machine must be Installing (it fetched its
// manifest) with that token, and this install must not have taken them
// before (ErrSecretsTaken).
func (s *Store) HandOutSecrets(mac, machine, token, remote string) (Record, error) {
	return s.Update(mac, machine, func(r *Record) error {
		if err := checkToken(r, token); err != nil {
			return err
		}
		if r.State != Installing {
			return wrongState(r)
		}
		for _, h := range r.Handouts {
			if h.Token == token {
				return ErrSecretsTaken
			}
		}
		r.Handouts = append(r.Handouts, Handout{Token: token, At: s.now().UTC(), Remote: remote})
		if n := len(r.Handouts); n > MaxHandouts {
			r.Handouts = r.Handouts[n-MaxHandouts:]
		}
		return nil
	})
}

// ReportProgress records a progress report of an install under way.
func (s *Store) ReportProgress(mac, machine, token string, p Progress) (Record, error) {
	return s.Update(mac, machine, func(r *Record) error {
		if err := checkToken(r, token); err != nil {
			return err
		}
		if r.State != Installing {
			return wrongState(r)
		}
		r.Progress, r.ProgressAt = &p, s.now().UTC()
		return nil
	})
}

// Finish records the installer's result: ok -> Installed, else Failed
// with msg. Either way the token is consumed.
func (s *Store) Finish(mac, machine, token string, ok bool, msg string) (Record, error) {
	return s.Update(mac, machine, func(r *Record) error {
		if err := checkToken(r, token); err != nil {
			return err
		}
		if r.State != Installing && r.State != Install {
			return wrongState(r)
		}
		r.Token = ""
		r.Attempts, r.Rearmed = 0, ""
		if ok {
			r.State, r.Error = Installed, ""
			r.Installs++
			return nil
		}
		if msg == "" {
			msg = "installer reported failure without a message"
		}
		r.State, r.Error = Failed, msg
		return nil
	})
}

// PowerOn is the machine's last power-on as far as the gate can tell: its
// last netboot, or the later start of a boot its OS reported that no
// netboot began.
func (r Record) PowerOn() time.Time {
	if r.DiskBoot.After(r.Netbooted) {
		return r.DiskBoot
	}
	return r.Netbooted
}

// MarkNetbooted records a netboot of the machine (its request for its
// iPXE script), the gate's word for the machine's power-on: a BIOS machine
// netboots first at every power-on (installed ones are sent on to their
// disk), while the first-boot report comes once per install (its task is
// recorded done), after the services may have come up, so it marks
// neither a later boot nor the start of the first. (A UEFI machine boots
// its disk first; its health reports say when, see ReportHealth.) The firmware's
// DHCP request comes a few seconds earlier but is not one per boot (iPXE
// asks again, and again when it retries). The iPXE leg is plain HTTP, so a
// LAN host asking in a machine's name moves its power-on: only the times
// shown depend on it. The last boot's health stays, the machine's last
// word, but none of its services has been healthy in the new boot yet.
func (s *Store) MarkNetbooted(mac, machine string) (Record, error) {
	return s.Update(mac, machine, func(r *Record) error {
		r.Netbooted = s.now().UTC()
		clearHealthy(r)
		return nil
	})
}

// MarkBooted records the role OS's first-boot report. A machine still in
// Installing is recorded Installed: its installer's result never reached
// the gate (the gate was down, or its power was cut, as it was sent), but
// the role OS runs from a disk that can boot only once its install is
// complete and read back (the installer writes the boot loader last), and
// the report comes with the certificate that install put on it.
func (s *Store) MarkBooted(mac, machine string, b Booted) (Record, error) {
	return s.Update(mac, machine, func(r *Record) error {
		b.At = s.now().UTC()
		r.Booted = &b
		if r.State == Installing {
			r.State, r.Token, r.Error = Installed, "", ""
			r.Attempts, r.Rearmed = 0, ""
			r.Installs++
		}
		return nil
	})
}

// ReportPhase records a first-boot phase report. A phase not seen before
// is added after the others (ErrTooManyPhases beyond MaxPhases); a start
// (running without a task) counts an attempt; done clears the last
// failure; strings are clipped to MaxName and MaxText.
func (s *Store) ReportPhase(mac, machine string, p PhaseReport) (Record, error) {
	return s.Update(mac, machine, func(r *Record) error {
		now := s.now().UTC()
		name := clip(p.Phase, MaxName)
		i := slices.IndexFunc(r.Phases, func(ph Phase) bool { return ph.Name == name })
		if i < 0 {
			if len(r.Phases) >= MaxPhases {
				return fmt.Errorf("%w: %d known, %q is new", ErrTooManyPhases, len(r.Phases), name)
			}
			r.Phases = append(r.Phases, Phase{Name: name})
			i = len(r.Phases) - 1
		}
		ph := &r.Phases[i]
		// A task report without its phase's start (the start was lost,
		// or the gate's record is newer than the boot) still is an
		// attempt.
		if p.Status == PhaseRunning && (p.Task == "" || ph.Attempts == 0) {
			ph.Attempts++
			ph.Started = now
		}
		ph.Status, ph.Task, ph.Message, ph.At = clip(p.Status, MaxName), clip(p.Task, MaxName), clip(p.Message, MaxText), now
		switch p.Status {
		case PhaseDone:
			ph.Error = ""
		case PhaseFailed:
			ph.Error = clip(p.Error, MaxText)
		}
		return nil
	})
}

// HealthReport is a machine's health report as the gate records it.
type HealthReport struct {
	Services []Service
	// NetbootNext: the machine's next boot is a netboot (api.Health).
	NetbootNext bool
	// Boot is when the machine's running system started (its kernel, by
	// its clock, which the gate's NTP sets); zero when it did not say.
	Boot time.Time
}

// ReportHealth replaces the machine's last health report: the first
// MaxServices services, strings clipped to MaxName and MaxText, each with
// its Since and HealthyAt carried on from the last report of this boot. A
// report from a boot that no netboot began (diskBoot) makes that boot the
// machine's power-on first, as a netboot does.
func (s *Store) ReportHealth(mac, machine string, rep HealthReport) (Record, error) {
	return s.Update(mac, machine, func(r *Record) error {
		now := s.now().UTC()
		if boot := diskBoot(r, rep.Boot); !boot.IsZero() {
			r.DiskBoot = boot
			clearHealthy(r)
		}
		before := bootServices(r)
		h := &Health{Services: make([]Service, 0, min(len(rep.Services), MaxServices)), At: now, NetbootNext: rep.NetbootNext}
		for _, sv := range rep.Services[:min(len(rep.Services), MaxServices)] {
			sv = Service{Name: clip(sv.Name, MaxName), Status: clip(sv.Status, MaxName), Detail: clip(sv.Detail, MaxText)}
			h.Services = append(h.Services, track(sv, before, now))
		}
		r.Health = h
		return nil
	})
}

// Bounds of diskBoot's judgement. bootSlack: a reported start this close
// to the known power-on is the same boot (a clock set by NTP after boot
// moves the start the kernel reports). netbootToKernel: a netboot this
// long or less before a start began that boot (the gate sent it to its
// disk, or its installer rebooted into it).
const (
	bootSlack       = 30 * time.Second
	netbootToKernel = 3 * time.Minute
)

// diskBoot is boot when it is the start of a boot the gate has not
// counted, that no netboot began; zero otherwise. A netboot before the
// install's result (Since, in Installed) began the install, not the boot
// from disk that follows it.
func diskBoot(r *Record, boot time.Time) time.Time {
	boot = boot.UTC()
	if boot.IsZero() || !boot.After(r.PowerOn().Add(bootSlack)) {
		return time.Time{}
	}
	installs := r.State == Installed && r.Netbooted.Before(r.Since)
	if !r.Netbooted.IsZero() && boot.Sub(r.Netbooted) <= netbootToKernel && !installs {
		return time.Time{}
	}
	return boot
}

// clearHealthy marks a new boot: the last boot's health stays, the
// machine's last word, but none of its services has been healthy in it.
func clearHealthy(r *Record) {
	if r.Health == nil {
		return
	}
	for i := range r.Health.Services {
		r.Health.Services[i].HealthyAt = time.Time{}
	}
}

// bootServices are the services of the machine's last health report when
// it came in this boot (not before its power-on), else none: a service
// restarted with its machine, so what it was in the boot before says
// nothing of since when it is what it is now.
func bootServices(r *Record) []Service {
	if r.Health == nil || r.Health.At.Before(r.PowerOn()) {
		return nil
	}
	return r.Health.Services
}

// track sets sv's Since and HealthyAt, reported at now, from its report
// in before (the same boot's last): Since stays while the status does,
// HealthyAt once set.
func track(sv Service, before []Service, now time.Time) Service {
	sv.Since = now
	if i := slices.IndexFunc(before, func(b Service) bool { return b.Name == sv.Name }); i >= 0 {
		b := before[i]
		if b.Status == sv.Status && !b.Since.IsZero() {
			sv.Since = b.Since
		}
		sv.HealthyAt = b.HealthyAt
	}
	if sv.HealthyAt.IsZero() && sv.Status == ServiceOK {
		sv.HealthyAt = now
	}
	return sv
}

// clip cuts s to at most n bytes of valid UTF-8.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// Rearm sets the machine back to Install: its next netboot reinstalls it.
// It is the operator's word: the count of attempts starts again.
func (s *Store) Rearm(mac, machine string) (Record, error) {
	return s.Update(mac, machine, func(r *Record) error {
		r.State, r.Token, r.Progress, r.ProgressAt, r.Error = Install, "", nil, time.Time{}, ""
		r.Attempts, r.Rearmed = 0, ""
		return nil
	})
}

// RearmStalled re-arms every machine in Installing that the gate has not
// heard from (its install began, or its last progress report came) for
// longer than timeout: its installer hung, or its power was cut and it
// has not netbooted since. The stale token dies, so a hung installer that
// wakes cannot finish; the next netboot installs afresh. A machine at
// MaxAttempts is Failed instead. It returns the records it changed.
func (s *Store) RearmStalled(timeout time.Duration) ([]Record, error) {
	recs, err := s.List()
	if err != nil {
		return nil, err
	}
	var changed []Record
	for _, rec := range recs {
		if rec.State != Installing {
			continue
		}
		r, err := s.Update(rec.MAC, rec.Machine, func(r *Record) error {
			now := s.now()
			last := r.Since
			if r.ProgressAt.After(last) {
				last = r.ProgressAt
			}
			if r.State != Installing || now.Sub(last) <= timeout {
				return errUnchanged
			}
			if r.Attempts >= MaxAttempts {
				giveUp(r)
				return nil
			}
			r.Rearmed = fmt.Sprintf("re-armed by the gate at %s: no word from its install for %s (%s)",
				now.UTC().Format(time.RFC3339), now.Sub(last).Round(time.Second), lastWord(r))
			r.State, r.Token = Install, ""
			return nil
		})
		if errors.Is(err, errUnchanged) {
			continue
		}
		if err != nil {
			return changed, err
		}
		changed = append(changed, r)
	}
	return changed, nil
}

// errUnchanged makes Update write nothing.
var errUnchanged = errors.New("unchanged")

// giveUp fails a machine whose installs keep ending without a result.
func giveUp(r *Record) {
	r.Error = fmt.Sprintf("%d installs in a row ended without a result (the last: %s); `kiln gate reinstall %s` tries again",
		r.Attempts, lastWord(r), r.Machine)
	r.State, r.Token = Failed, ""
}

// lastWord is the install's last progress report, for a human.
func lastWord(r *Record) string {
	if r.Progress == nil {
		return "it reported no progress"
	}
	w := "last at " + r.Progress.Phase
	if r.Progress.Message != "" {
		w += " " + r.Progress.Message
	}
	if r.Progress.Total > 0 {
		w += fmt.Sprintf(" %d/%d MiB", r.Progress.Done>>20, r.Progress.Total>>20)
	}
	return w
}

// wrongState is ErrWrongState with the state the machine is in: the
// status page shows it to whoever reads why a request was refused.
func wrongState(r *Record) error {
	return fmt.Errorf("%w (its state is %s)", ErrWrongState, r.State)
}

func checkToken(r *Record, token string) error {
	if r.Token == "" || subtle.ConstantTimeCompare([]byte(r.Token), []byte(token)) != 1 {
		return ErrBadToken
	}
	return nil
}

func newToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("install token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// locked runs fn holding both the process mutex and an flock on the
// directory's lock file.
func (s *Store) locked(fn func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := os.OpenFile(filepath.Join(s.dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("state lock: %w", err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("state lock: %w", err)
	}
	defer unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return fn()
}

func (s *Store) read(mac, machine string) (Record, error) {
	r, err := readFile(s.path(mac))
	if errors.Is(err, fs.ErrNotExist) {
		return Record{MAC: mac, Machine: machine, State: Install}, nil
	}
	if err != nil {
		return Record{}, err
	}
	if machine != "" {
		r.Machine = machine
	}
	return r, nil
}

func readFile(path string) (Record, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Record{}, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("state %s: %w", filepath.Base(path), err)
	}
	return r, nil
}

// write replaces the record file atomically: a reader (or a power cut)
// sees the old record or the new one, never half of one.
func (s *Store) write(r Record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(s.path(r.MAC), append(b, '\n'), 0o600)
}

// WriteFileAtomic writes data to a temporary file beside path, syncs it,
// renames it over path and syncs the directory.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", filepath.Base(path), err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

package firstboot

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/kilnlab/kiln/roles"
)

// The ceph phase bootstraps a storage node's share of the lab's Ceph
// cluster by hand, as Ceph's manual deployment does and as was proven on
// Debian's 16.2.15 (DESIGN.md §7): monmaptool and ceph-mon --mkfs, a
// manager, and OSDs with ceph-volume lvm create. Every storage node runs a
// monitor (roles: the monitors are the storage nodes) and all of them are
// made from the same monmap, keys and fsid, so they find each other with no
// node being first.
//
// Its tasks, in order, each safe to run again after a power cut at any
// point (the Runner records a task only once it has succeeded; each task
// finds what an earlier, interrupted run of itself left):
//
//	conf         add the fsid (from the node's secrets) to ceph.conf
//	keyrings     client.admin and client.bootstrap-osd keyrings into place
//	mon-mkfs     monmaptool + ceph-mon --mkfs, unless the monitor's done
//	             file says it is made; a store without it was interrupted
//	             before the monitor ever ran, and is made again
//	mon-start    systemctl enable --now ceph-mon@HOST
//	quorum       wait (bounded) until this monitor is in a quorum
//	global-id    ceph config set mon auth_allow_insecure_global_id_reclaim false
//	mgr-keyring  the manager's keyring into its data directory
//	mgr-auth     ceph auth import of the manager's key (its caps included)
//	mgr-start    systemctl enable --now ceph-mgr@HOST
//	osd-DISK     per planned OSD device (osd.go): refuse a device that is
//	             not the planned one; skip one that holds this cluster's
//	             OSD (activating it if it is not running); else
//	             ceph-volume lvm create
//	report       wait (bounded) for a manager and the OSDs, print
//	             KILN-CEPH-OK with the cluster's health
//	selftest     make the lab's own small pool "kiln" unless it exists,
//	             write this node's object kiln-selftest-HOST to it, read
//	             back every node's and check them, print
//	             KILN-CEPH-SELFTEST (selftest.go); every command is
//	             bounded in time
//
// A failing task prints KILN-CEPH-FAILED task=ceph.NAME: ERROR on the
// console; kiln-firstboot then fails and its next run starts again at
// that task.
//
// The mkfs keyring holds mon., client.admin and client.bootstrap-osd (with
// their caps): the monitor that leads the first quorum seeds the auth
// database from it, and creates the client.bootstrap-* it does not find
// there with keys of its own, so client.bootstrap-osd must be in it for the
// lab's key to be the cluster's. Each node holds only its own manager's key,
// and the auth database is the leader's, so each node imports its manager's
// key once the quorum stands, with the admin key (ceph auth import sets the
// key and caps it is given, the same on every run).
//
// OSDs come back after a reboot by themselves: ceph-volume lvm create
// enables ceph-volume@lvm-ID-OSDFSID.service, which at every boot mounts
// the OSD's tmpfs and starts ceph-osd@ID (ceph-volume lvm trigger); no
// ceph-volume lvm activate --all is needed. A reinstall rewrites /etc and
// so loses that unit, but not the OSD on the data partition (the installer
// rewrites the system disk's partition table, not the partition): the
// osd-DISK task finds it and activates it again.

// Paths of the ceph phase.
const (
	cephAdminKeyring     = "/etc/ceph/ceph.client.admin.keyring"
	cephBootstrapOSDRing = "/var/lib/ceph/bootstrap-osd/ceph.keyring"
	cephTmpDir           = "/var/lib/ceph/tmp"
	cephTmpMonmap        = cephTmpDir + "/kiln-monmap"
	cephTmpMonKeyring    = cephTmpDir + "/kiln-mon.keyring"
)

// cephTask is one task of the ceph phase.
type cephTask struct {
	name string
	run  func(context.Context) error
}

// cephTasks are the ceph phase's tasks; each failure is printed on the
// console as KILN-CEPH-FAILED.
func (s *node) cephTasks() []Task {
	host := s.env.Machine.Name
	tasks := []cephTask{
		{"conf", s.cephConf},
		{"keyrings", s.keyrings},
		{"mon-mkfs", s.monMkfs},
		{"mon-start", s.systemctlStart("ceph-mon@" + host)},
		{"quorum", s.waitQuorum},
		{"global-id", s.ceph("config", "set", "mon", "auth_allow_insecure_global_id_reclaim", "false")},
		{"mgr-keyring", s.mgrKeyring},
		{"mgr-auth", s.ceph("auth", "import", "-i", mgrKeyring(host))},
		{"mgr-start", s.systemctlStart("ceph-mgr@" + host)},
	}
	if c := s.env.Machine.Ceph; c != nil {
		for _, d := range c.OSDs {
			tasks = append(tasks, cephTask{"osd-" + d.Disk, func(ctx context.Context) error { return s.osd(ctx, d) }})
		}
	}
	tasks = append(tasks, cephTask{"report", s.report}, cephTask{"selftest", s.selftest})
	out := make([]Task, len(tasks))
	for i, t := range tasks {
		out[i] = Task{Name: t.name, Run: func(ctx context.Context) error {
			err := t.run(ctx)
			if err != nil {
				fmt.Fprintf(s.env.Console, "KILN-CEPH-FAILED task=ceph.%s: %v\n", t.name, err)
			}
			return err
		}}
	}
	return out
}

// secret reads one file of the node's Ceph secrets (roles.RenderSecrets),
// which the installer wrote to the state partition.
func (s *node) secret(name string) ([]byte, error) {
	b, err := s.readFile(roles.CephSecretsDir + "/" + name)
	if err != nil {
		return nil, fmt.Errorf("the node's Ceph secrets: %w", err)
	}
	return b, nil
}

// fsid is the cluster's fsid, from the node's secrets.
func (s *node) fsid() (string, error) {
	b, err := s.secret("fsid")
	if err != nil {
		return "", err
	}
	id, err := uuid.Parse(strings.TrimSpace(string(b)))
	if err != nil {
		return "", fmt.Errorf("the node's Ceph fsid: %w", err)
	}
	return id.String(), nil
}

// cephConf adds "fsid = FSID" at the top of ceph.conf's [global] section
// (roles renders the rest). A ceph.conf that names another fsid is
// refused: its node would join, or make, another cluster than its keys'.
func (s *node) cephConf(context.Context) error {
	fsid, err := s.fsid()
	if err != nil {
		return err
	}
	conf, err := s.readFile(roles.CephConfPath)
	if err != nil {
		return err
	}
	out, err := withFSID(conf, fsid)
	if err != nil {
		return fmt.Errorf("%s: %w", roles.CephConfPath, err)
	}
	return s.writeFile(roles.CephConfPath, out, 0o644)
}

// withFSID returns conf with fsid in its [global] section.
func withFSID(conf []byte, fsid string) ([]byte, error) {
	var out bytes.Buffer
	section, global := "", false
	sc := bufio.NewScanner(bytes.NewReader(conf))
	for sc.Scan() {
		line := sc.Text()
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "[") && strings.HasSuffix(t, "]") {
			section = strings.TrimSpace(t[1 : len(t)-1])
			out.WriteString(line + "\n")
			if section == "global" && !global {
				global = true
				out.WriteString("fsid = " + fsid + "\n")
			}
			continue
		}
		if k, v, ok := strings.Cut(t, "="); ok && section == "global" && strings.TrimSpace(k) == "fsid" {
			if v = strings.TrimSpace(v); !strings.EqualFold(v, fsid) {
				return nil, fmt.Errorf("names the cluster %s, but the node's keys are cluster %s's", v, fsid)
			}
			continue // written at the top of [global] already
		}
		out.WriteString(line + "\n")
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !global {
		return nil, errors.New("no [global] section")
	}
	return out.Bytes(), nil
}

// keyrings puts client.admin's keyring where the ceph CLI finds it and
// client.bootstrap-osd's where ceph-volume does, root-only.
func (s *node) keyrings(context.Context) error {
	for _, k := range []struct{ secret, path string }{
		{"client.admin.keyring", cephAdminKeyring},
		{"client.bootstrap-osd.keyring", cephBootstrapOSDRing},
	} {
		b, err := s.secret(k.secret)
		if err != nil {
			return err
		}
		if err := s.writeFile(k.path, b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func monDir(host string) string { return "/var/lib/ceph/mon/ceph-" + host }

// monMkfs makes the monitor's store, once: its done file, written last and
// durably, says it is made. Without it, whatever is in the monitor's
// directory is an interrupted mkfs of a monitor that never ran (mon-start
// comes after), so it is removed and made again: ceph-mon --mkfs itself
// leaves a directory that is not empty alone ("monitor may already
// exist"), half a store included.
func (s *node) monMkfs(ctx context.Context) error {
	host := s.env.Machine.Name
	dir := monDir(host)
	if s.exists(dir + "/done") {
		return s.removeMkfsInputs()
	}
	fsid, err := s.fsid()
	if err != nil {
		return err
	}
	mons, err := s.mons()
	if err != nil {
		return err
	}
	if ents, err := os.ReadDir(s.path(dir)); err == nil && len(ents) > 0 {
		s.env.Log.Warn("removing the store of an interrupted ceph-mon --mkfs", "dir", dir)
		if err := os.RemoveAll(s.path(dir)); err != nil {
			return err
		}
	}
	args := []string{"--create", "--clobber", "--fsid", fsid}
	for _, m := range mons {
		args = append(args, "--addv", m.Name, m.Addrs())
	}
	if err := os.MkdirAll(s.path(cephTmpDir), 0o755); err != nil {
		return err
	}
	if _, err := s.run(ctx, "monmaptool", append(args, cephTmpMonmap)...); err != nil {
		return err
	}
	var ring []byte
	for _, name := range []string{"mon.keyring", "client.admin.keyring", "client.bootstrap-osd.keyring"} {
		b, err := s.secret(name)
		if err != nil {
			return err
		}
		ring = append(ring, b...)
	}
	if err := s.writeFile(cephTmpMonKeyring, ring, 0o600); err != nil {
		return err
	}
	if err := os.MkdirAll(s.path(dir), 0o750); err != nil {
		return err
	}
	// ceph-mon drops to the ceph user before it reads its inputs and
	// writes its store.
	if _, err := s.run(ctx, "chown", "ceph:ceph", cephTmpMonmap, cephTmpMonKeyring, dir); err != nil {
		return err
	}
	if _, err := s.run(ctx, "ceph-mon", "--cluster", "ceph", "--mkfs", "-i", host,
		"--monmap", cephTmpMonmap, "--keyring", cephTmpMonKeyring, "--setuser", "ceph", "--setgroup", "ceph"); err != nil {
		return err
	}
	if err := s.writeFile(dir+"/done", nil, 0o644); err != nil {
		return err
	}
	return s.removeMkfsInputs()
}

// removeMkfsInputs removes the monmap and the keyring made for mkfs: the
// store has them now, and the keyring holds the admin key.
func (s *node) removeMkfsInputs() error {
	var errs []error
	for _, p := range []string{cephTmpMonmap, cephTmpMonKeyring} {
		if err := os.Remove(s.path(p)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// mons are the cluster's monitors from machine.json; this node must be one.
func (s *node) mons() ([]roles.CephMon, error) {
	c := s.env.Machine.Ceph
	if c == nil || len(c.Mons) == 0 {
		return nil, errors.New("machine.json has no Ceph monitors (is this a storage node of a kiln lab?)")
	}
	if !slices.ContainsFunc(c.Mons, func(m roles.CephMon) bool { return m.Name == s.env.Machine.Name }) {
		return nil, fmt.Errorf("machine.json: %s is not among the monitors", s.env.Machine.Name)
	}
	return c.Mons, nil
}

// systemctlStart enables a unit for every later boot and starts it now;
// both are no-ops when done. When the unit fails, its last journal lines
// go with the error, so that the gate's page says why.
func (s *node) systemctlStart(unit string) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := s.run(ctx, "systemctl", "enable", "--now", unit)
		if err == nil {
			return nil
		}
		if journal, jerr := s.run(ctx, "journalctl", "--unit", unit, "--lines", "12", "--no-pager", "--output", "cat"); jerr == nil && len(journal) > 0 {
			return fmt.Errorf("%w\n%s's journal:\n%s", err, unit, strings.TrimSpace(string(journal)))
		}
		return err
	}
}

// ceph runs one ceph command as client.admin; each one used here sets a
// state, so running it twice is running it once.
func (s *node) ceph(args ...string) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := s.run(ctx, "ceph", append([]string{"--connect-timeout", "30"}, args...)...)
		return err
	}
}

// waitQuorum waits until this node's monitor is in a quorum, as the
// monitors answer client.admin: a majority of the storage nodes must be up,
// so the first to boot waits for the next.
func (s *node) waitQuorum(ctx context.Context) error {
	host := s.env.Machine.Name
	mons, err := s.mons()
	if err != nil {
		return err
	}
	limit := or(s.QuorumTimeout, 15*time.Minute)
	last := time.Time{}
	err = s.wait(ctx, limit, func(ctx context.Context) (bool, error) {
		q, err := s.quorum(ctx)
		if err == nil && slices.Contains(q, host) {
			s.env.Log.Info("monitor quorum", "quorum", q)
			return true, nil
		}
		if time.Since(last) > time.Minute {
			last = time.Now()
			s.env.Log.Info("waiting for a monitor quorum", "need", len(mons)/2+1, "of", len(mons), "quorum", q, "err", err)
		}
		return false, err
	})
	if errors.Is(err, errTimedOut) {
		names := make([]string, len(mons))
		for i, m := range mons {
			names[i] = m.Name
		}
		return fmt.Errorf("no monitor quorum with %s after %s: %d of the monitors %s must be up: %w",
			host, limit, len(mons)/2+1, strings.Join(names, ", "), err)
	}
	return err
}

// quorum is the monitors in quorum, by name.
func (s *node) quorum(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := s.run(ctx, "ceph", "--connect-timeout", "10", "quorum_status", "--format", "json")
	if err != nil {
		return nil, err
	}
	var q struct {
		Names []string `json:"quorum_names"`
	}
	if err := json.Unmarshal(out, &q); err != nil {
		return nil, fmt.Errorf("ceph quorum_status: %w", err)
	}
	return q.Names, nil
}

func mgrDir(host string) string     { return "/var/lib/ceph/mgr/ceph-" + host }
func mgrKeyring(host string) string { return mgrDir(host) + "/keyring" }

// mgrKeyring puts the manager's keyring in its data directory, owned by
// the ceph user it runs as.
func (s *node) mgrKeyring(ctx context.Context) error {
	host := s.env.Machine.Name
	b, err := s.secret("mgr.keyring")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.path(mgrDir(host)), 0o750); err != nil {
		return err
	}
	if err := s.writeFile(mgrKeyring(host), b, 0o600); err != nil {
		return err
	}
	_, err = s.run(ctx, "chown", "-R", "ceph:ceph", mgrDir(host))
	return err
}

// report waits (bounded) until a manager is active and the cluster's OSDs
// are up and in, then prints the cluster's state on the console. The
// OSDs of nodes that are still installing may be missing: the marker says
// what this node saw, and the wait only keeps it from reporting a moment
// too early.
func (s *node) report(ctx context.Context) error {
	var h CephHealth // the last answer
	err := s.wait(ctx, or(s.SettleTimeout, 2*time.Minute), func(ctx context.Context) (bool, error) {
		got, err := CephStatus(ctx, s.run)
		if err != nil {
			return false, err
		}
		h = got
		return h.MgrAvailable && h.OSDs > 0 && h.Up == h.OSDs && h.In == h.OSDs, nil
	})
	if err != nil && !errors.Is(err, errTimedOut) {
		return err
	}
	if h.Status == "" { // not one answer in the whole wait
		return err
	}
	_, err = fmt.Fprintln(s.env.Console, h.Marker(s.env.Machine.Name))
	return err
}

package firstboot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// The selftest task, the ceph phase's last, proves that the cluster stores
// and serves data, and on a lab of several storage nodes that what one node
// wrote another reads. It uses the lab's own small pool, "kiln" (8
// placement groups, application "rados" so that Ceph does not warn
// POOL_APP_NOT_ENABLED), made by whichever node gets there first: `ceph osd
// pool create` answers 0 for a pool that exists ("pool 'kiln' already
// exists", Ceph 16), and enabling an application that is enabled is a
// no-op. The pool holds nothing but the self-test's objects and nothing
// else uses it: an operator may delete it, and only a first boot that runs
// this task again (a reinstall) makes it again.
//
// Each node writes one object, kiln-selftest-HOST, holding exactly
// "kiln selftest HOST FSID\n" (written again by every run: overwriting is
// harmless), then lists the pool and reads back every kiln-selftest-*
// object, its own included, checking that each names its own machine and
// this cluster's fsid. The console line
//
//	KILN-CEPH-SELFTEST host=ceph-2 wrote=kiln-selftest-ceph-2 read=kiln-selftest-ceph-1,kiln-selftest-ceph-2
//
// says what it read, sorted; the nodes that finished earlier are in it.
// An object that does not read back as written fails the task.
//
// rados has no timeout of its own and blocks on a placement group that is
// not active (e.g. while too few storage nodes are up for the pool's
// min_size), so every command runs under SelftestTimeout; the task then
// fails, and kiln-firstboot's next run tries again. The object's source and
// the read-back copies are in selftestDir, removed whatever the outcome;
// they hold the host name and the fsid, nothing secret.

// The self-test's pool and files.
const (
	selftestPool   = "kiln"
	selftestPGs    = "8"
	selftestApp    = "rados"
	selftestPrefix = "kiln-selftest-"
	selftestDir    = "/var/lib/kiln/ceph-selftest"
	selftestCopy   = selftestDir + "/read" // each object read back, in turn
)

// machineName is a machine's name as the profile allows it (a DNS label).
var machineName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// selftestData is what machine host's self-test object holds.
func selftestData(host, fsid string) string {
	return "kiln selftest " + host + " " + fsid + "\n"
}

// selftest is the ceph phase's selftest task (see above).
func (s *node) selftest(ctx context.Context) error {
	host := s.env.Machine.Name
	read, err := s.selftestRun(ctx, host)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(s.env.Console, "KILN-CEPH-SELFTEST host=%s wrote=%s read=%s\n",
		host, selftestPrefix+host, strings.Join(read, ","))
	return err
}

// selftestRun makes the pool, writes host's object and reads back every
// self-test object, sorted; it removes its files on the way out.
func (s *node) selftestRun(ctx context.Context, host string) (read []string, err error) {
	fsid, err := s.fsid()
	if err != nil {
		return nil, err
	}
	for _, args := range [][]string{
		{"osd", "pool", "create", selftestPool, selftestPGs},
		{"osd", "pool", "application", "enable", selftestPool, selftestApp},
	} {
		if _, err := s.bounded(ctx, "ceph", append([]string{"--connect-timeout", "30"}, args...)...); err != nil {
			return nil, err
		}
	}
	defer func() {
		if rerr := os.RemoveAll(s.path(selftestDir)); rerr != nil && err == nil {
			err = rerr
		}
	}()
	own := selftestPrefix + host
	src := selftestDir + "/" + own
	if err := s.writeFile(src, []byte(selftestData(host, fsid)), 0o644); err != nil {
		return nil, err
	}
	if _, err := s.bounded(ctx, "rados", "-p", selftestPool, "put", own, src); err != nil {
		return nil, err
	}
	objs, err := s.readAll(ctx, fsid, selftestCopy)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(objs, own) {
		return nil, fmt.Errorf("rados -p %s ls does not list %s, just written", selftestPool, own)
	}
	return objs, nil
}

// readAll lists the self-test objects and reads back each (readBack) into
// the file copy, in a directory that exists; it returns their names,
// sorted. The health report calls it too, with a copy of its own: the two
// may run at once.
func (s *node) readAll(ctx context.Context, fsid, copy string) ([]string, error) {
	out, err := s.bounded(ctx, "rados", "-p", selftestPool, "ls")
	if err != nil {
		return nil, err
	}
	var objs []string
	for line := range strings.Lines(string(out)) {
		// One object a line; a locator, if any, follows a tab.
		name, _, _ := strings.Cut(strings.TrimRight(line, "\r\n"), "\t")
		if strings.HasPrefix(name, selftestPrefix) {
			objs = append(objs, name)
		}
	}
	slices.Sort(objs)
	objs = slices.Compact(objs)
	for _, obj := range objs {
		if err := s.readBack(ctx, obj, fsid, copy); err != nil {
			return nil, err
		}
	}
	return objs, nil
}

// readBack reads the self-test object obj into the file copy and checks
// that it holds what the self-test of the machine it is named after writes
// in this cluster; it removes copy.
func (s *node) readBack(ctx context.Context, obj, fsid, copy string) error {
	name := strings.TrimPrefix(obj, selftestPrefix)
	if !machineName.MatchString(name) {
		return fmt.Errorf("object %s in pool %s: %q is not a machine name; kiln's self-test objects are %sHOST",
			obj, selftestPool, name, selftestPrefix)
	}
	if _, err := s.bounded(ctx, "rados", "-p", selftestPool, "get", obj, copy); err != nil {
		return err
	}
	got, err := s.readFile(copy)
	if err != nil {
		return fmt.Errorf("object %s read back: %w", obj, err)
	}
	if err := os.Remove(s.path(copy)); err != nil {
		return err
	}
	want := selftestData(name, fsid)
	if string(got) == want {
		return nil
	}
	if f := strings.Fields(string(got)); len(f) == 4 && string(got) == selftestData(name, f[3]) && uuid.Validate(f[3]) == nil {
		return fmt.Errorf("object %s in pool %s names the Ceph cluster %s, but this is %s", obj, selftestPool, f[3], fsid)
	}
	return fmt.Errorf("object %s in pool %s reads back %q, want %q", obj, selftestPool, clip(got, 100), want)
}

// bounded runs a command of the self-test under SelftestTimeout.
func (s *node) bounded(ctx context.Context, name string, args ...string) ([]byte, error) {
	limit := or(s.SelftestTimeout, 5*time.Minute)
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	out, err := s.run(cctx, name, args...)
	if err != nil && ctx.Err() == nil && errors.Is(cctx.Err(), context.DeadlineExceeded) {
		return nil, fmt.Errorf("%s %s: no answer in %s (are the placement groups of pool %s active? see ceph -s): %w",
			name, strings.Join(args, " "), limit, selftestPool, errTimedOut)
	}
	return out, err
}

// clip is b, cut to at most n bytes.
func clip(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "..."
}

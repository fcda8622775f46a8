package firstboot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/roles"
)

// The commands of ceph-1's first boot in the reference lab, in order.
var firstRun = []string{
	"resize2fs /dev/disk/by-partuuid/state-uuid",
	"timedatectl show -p NTPSynchronized --value",
	"monmaptool --create --clobber --fsid " + testFSID +
		" --addv ceph-1 [v2:192.168.1.11:3300,v1:192.168.1.11:6789]" +
		" --addv ceph-2 [v2:192.168.1.12:3300,v1:192.168.1.12:6789]" +
		" --addv ceph-3 [v2:192.168.1.13:3300,v1:192.168.1.13:6789] /var/lib/ceph/tmp/kiln-monmap",
	"chown ceph:ceph /var/lib/ceph/tmp/kiln-monmap /var/lib/ceph/tmp/kiln-mon.keyring /var/lib/ceph/mon/ceph-ceph-1",
	"ceph-mon --cluster ceph --mkfs -i ceph-1 --monmap /var/lib/ceph/tmp/kiln-monmap --keyring /var/lib/ceph/tmp/kiln-mon.keyring --setuser ceph --setgroup ceph",
	"systemctl enable --now ceph-mon@ceph-1",
	"ceph --connect-timeout 10 quorum_status --format json",
	"ceph --connect-timeout 30 config set mon auth_allow_insecure_global_id_reclaim false",
	"chown -R ceph:ceph /var/lib/ceph/mgr/ceph-ceph-1",
	"ceph --connect-timeout 30 auth import -i /var/lib/ceph/mgr/ceph-ceph-1/keyring",
	"systemctl enable --now ceph-mgr@ceph-1",
	"ceph-volume lvm list --format json",
	"ceph-volume lvm create --bluestore --data /dev/vda4",
	"ceph-volume lvm list --format json",
	"ceph-volume lvm create --bluestore --data /dev/vdb",
	"ceph --connect-timeout 30 -s --format json",
	"ceph --connect-timeout 30 osd pool create kiln 8",
	"ceph --connect-timeout 30 osd pool application enable kiln rados",
	"rados -p kiln put kiln-selftest-ceph-1 /var/lib/kiln/ceph-selftest/kiln-selftest-ceph-1",
	"rados -p kiln ls",
	"rados -p kiln get kiln-selftest-ceph-1 /var/lib/kiln/ceph-selftest/read",
}

// selftestRun are the commands of ceph-1's selftest task when the pool
// holds the objects objs (its own included), sorted.
func selftestRun(objs ...string) []string {
	out := slices.Clone(firstRun[len(firstRun)-5 : len(firstRun)-1])
	for _, o := range objs {
		out = append(out, "rados -p kiln get "+o+" /var/lib/kiln/ceph-selftest/read")
	}
	return out
}

// The console markers of ceph-1's ceph phase, uninterrupted, alone in the
// lab.
const (
	okMarker       = "KILN-CEPH-OK host=ceph-1 health=HEALTH_OK mons=3 osds=2/2\n"
	selftestMarker = "KILN-CEPH-SELFTEST host=ceph-1 wrote=kiln-selftest-ceph-1 read=kiln-selftest-ceph-1\n"
)

// The task records of a storage node's finished first boot.
var storageRecords = []string{
	"announce.console", "ceph.conf", "ceph.global-id", "ceph.keyrings", "ceph.mgr-auth", "ceph.mgr-keyring",
	"ceph.mgr-start", "ceph.mon-mkfs", "ceph.mon-start", "ceph.osd-osd", "ceph.osd-system", "ceph.quorum",
	"ceph.report", "ceph.selftest", "network.wait-address", "storage.grow-state",
}

func records(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	return names
}

// TestCephFirstBoot runs a storage node's whole first boot: the exact
// commands, the files it leaves, the console markers; a second run finds
// everything recorded and runs nothing.
func TestCephFirstBoot(t *testing.T) {
	f, env, console := newFakeNode(t)
	r := Runner{Dir: t.TempDir(), Log: quiet()}
	if err := r.Run(context.Background(), env.Phases()); err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, console)
	}
	if d := cmp.Diff(firstRun, f.ran); d != "" {
		t.Errorf("commands (-want +got):\n%s", d)
	}
	if len(f.broken) > 0 {
		t.Errorf("the phase did what a real node would not survive: %q", f.broken)
	}
	want := okMarker + selftestMarker + "KILN-BOOTED host=ceph-1 addr=192.168.1.11/24\n"
	if console.String() != want {
		t.Errorf("console = %q, want %q", console, want)
	}
	if d := cmp.Diff(storageRecords, records(t, r.Dir)); d != "" {
		t.Errorf("records (-want +got):\n%s", d)
	}
	for _, c := range []struct {
		path string
		mode os.FileMode
		has  string
	}{
		{roles.CephConfPath, 0o644, "[global]\nfsid = " + testFSID + "\nmon_initial_members = ceph-1, ceph-2, ceph-3\n"},
		{cephAdminKeyring, 0o600, "[client.admin]\n\tkey = " + testKey(2) + "\n"},
		{cephBootstrapOSDRing, 0o600, "[client.bootstrap-osd]\n\tkey = " + testKey(3) + "\n"},
		{"/var/lib/ceph/mgr/ceph-ceph-1/keyring", 0o600, "[mgr.ceph-1]\n\tkey = " + testKey(10) + "\n"},
		{"/var/lib/ceph/mon/ceph-ceph-1/done", 0o644, ""},
		{"/var/lib/ceph/mon/ceph-ceph-1/store.db/CURRENT", 0o644, "MANIFEST"},
	} {
		fi, err := os.Stat(filepath.Join(f.root, c.path))
		if err != nil {
			t.Errorf("%s: %v", c.path, err)
			continue
		}
		if fi.Mode().Perm() != c.mode || !strings.Contains(f.read(c.path), c.has) {
			t.Errorf("%s: mode %v, contents %q; want %v, containing %q", c.path, fi.Mode().Perm(), f.read(c.path), c.mode, c.has)
		}
	}
	// The monmap and the mkfs keyring (which holds the admin key) are
	// gone, and so are the self-test's files.
	for _, p := range []string{cephTmpMonmap, cephTmpMonKeyring, selftestDir} {
		if f.exists(p) {
			t.Errorf("%s is left behind", p)
		}
	}
	// The lab's pool holds this node's object.
	wantPool := fmt.Sprintf("pools [kiln apps [rados] objects [kiln-selftest-ceph-1=%q]]", "kiln selftest ceph-1 "+testFSID+"\n")
	if !strings.Contains(f.state(), wantPool) {
		t.Errorf("state:\n%s\nwant %s", f.state(), wantPool)
	}
	f.reboot()
	if err := r.Run(context.Background(), env.Phases()); err != nil {
		t.Fatal(err)
	}
	// A second boot checks the clock again (an RTC restarts it up to a
	// second off) and runs nothing else.
	if d := cmp.Diff([]string{timedatectl}, f.ran); d != "" {
		t.Errorf("a second boot ran (-want +got):\n%s", d)
	}
}

// TestCephRerunUnrecorded: every task done but none recorded (e.g. the
// records were lost, or each task's power cut came right after its work):
// the phase runs again and changes nothing: no mkfs, no new OSD.
func TestCephRerunUnrecorded(t *testing.T) {
	f, env, _ := newFakeNode(t)
	r := Runner{Dir: t.TempDir(), Log: quiet()}
	if err := r.Run(context.Background(), env.Phases()); err != nil {
		t.Fatal(err)
	}
	tree, state := f.tree(), f.state()
	if err := os.RemoveAll(r.Dir); err != nil {
		t.Fatal(err)
	}
	f.reboot()
	if err := r.Run(context.Background(), env.Phases()); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"resize2fs /dev/disk/by-partuuid/state-uuid",
		"timedatectl show -p NTPSynchronized --value",
		"systemctl enable --now ceph-mon@ceph-1",
		"ceph --connect-timeout 10 quorum_status --format json",
		"ceph --connect-timeout 30 config set mon auth_allow_insecure_global_id_reclaim false",
		"chown -R ceph:ceph /var/lib/ceph/mgr/ceph-ceph-1",
		"ceph --connect-timeout 30 auth import -i /var/lib/ceph/mgr/ceph-ceph-1/keyring",
		"systemctl enable --now ceph-mgr@ceph-1",
		"ceph-volume lvm list --format json",
		"systemctl is-active --quiet ceph-osd@0",
		"ceph-volume lvm list --format json",
		"systemctl is-active --quiet ceph-osd@1",
		"ceph --connect-timeout 30 -s --format json",
	}
	want = append(want, selftestRun("kiln-selftest-ceph-1")...)
	if d := cmp.Diff(want, f.ran); d != "" {
		t.Errorf("commands (-want +got):\n%s", d)
	}
	if d := cmp.Diff(tree, f.tree()); d != "" {
		t.Errorf("files (-first run +re-run):\n%s", d)
	}
	if d := cmp.Diff(state, f.state()); d != "" {
		t.Errorf("units and OSDs (-first run +re-run):\n%s", d)
	}
	if len(f.broken) > 0 {
		t.Errorf("broken: %q", f.broken)
	}
}

// TestCephPowerCut cuts the power in every command of the first boot,
// once before the command had its effect and once after, then boots again:
// the second boot finishes, and the node ends as an uninterrupted first
// boot leaves it (same files, units and OSDs), without ever making the
// monitor's store after the monitor ran or an OSD on a device that holds
// one.
func TestCephPowerCut(t *testing.T) {
	clean, env, _ := newFakeNode(t)
	if err := (Runner{Dir: t.TempDir(), Log: quiet()}).Run(context.Background(), env.Phases()); err != nil {
		t.Fatal(err)
	}
	wantTree, wantState := clean.tree(), clean.state()
	for i := range firstRun {
		for _, after := range []bool{false, true} {
			name := fmt.Sprintf("%02d-%s-before", i+1, strings.Fields(firstRun[i])[0])
			if after {
				name = strings.TrimSuffix(name, "before") + "after"
			}
			t.Run(name, func(t *testing.T) {
				f, env, console := newFakeNode(t)
				r := Runner{Dir: t.TempDir(), Log: quiet()}
				err := r.Run(f.cutPower(i+1, after), env.Phases())
				if !errors.Is(err, errPowerCut) && !errors.Is(err, context.Canceled) {
					t.Fatalf("the cut boot: %v", err)
				}
				f.reboot()
				if err := r.Run(context.Background(), env.Phases()); err != nil {
					t.Fatalf("the boot after the cut: %v\nconsole:\n%s", err, console)
				}
				if len(f.broken) > 0 {
					t.Errorf("broken: %q", f.broken)
				}
				if d := cmp.Diff(wantState, f.state()); d != "" {
					t.Errorf("units and OSDs (-uninterrupted +cut):\n%s", d)
				}
				if d := cmp.Diff(wantTree, f.tree()); d != "" {
					t.Errorf("files (-uninterrupted +cut):\n%s", d)
				}
				if !strings.Contains(console.String(), okMarker) || !strings.HasSuffix(console.String(), selftestMarker+"KILN-BOOTED host=ceph-1 addr=192.168.1.11/24\n") {
					t.Errorf("console:\n%s", console)
				}
			})
		}
	}
}

// osdTask runs the osd task of ceph-1's planned device on disk (system:
// the data partition, osd: the data disk) after the tasks before it.
func osdTask(t *testing.T, f *fakeNode, env *Env, disk string) error {
	t.Helper()
	s := &node{env: env, Storage: env.Storage}
	for _, task := range []func(context.Context) error{s.cephConf, s.keyrings, s.monMkfs, s.systemctlStart("ceph-mon@ceph-1")} {
		if err := task(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	f.ran = nil
	for _, d := range env.Machine.Ceph.OSDs {
		if d.Disk == disk {
			return s.osd(context.Background(), d)
		}
	}
	t.Fatalf("no planned OSD on disk %s", disk)
	return nil
}

// TestOSDRefused: a device that is not the planned one, in any way, is
// refused and nothing at all is run.
func TestOSDRefused(t *testing.T) {
	osdUUID := func(env *Env) string { return env.Machine.Ceph.OSDs[0].Partition.UUID }
	for _, tc := range []struct {
		name, disk string
		change     func(f *fakeNode, env *Env)
		want       string // in the error
	}{
		{"data disk missing", "osd", func(f *fakeNode, _ *Env) {
			f.write("/sys/block/vdb/serial", "SOMEONE-ELSES\n")
		}, `no disk with serial "WD-KILN-CEPH1-B"`},
		{"two disks with the serial", "osd", func(f *fakeNode, _ *Env) {
			f.addDisk("vdc", "WD-KILN-CEPH1-B", 1000000000000)
		}, `serial "WD-KILN-CEPH1-B" wwn "" matches /dev/vdb, /dev/vdc`},
		{"data disk too small", "osd", func(f *fakeNode, _ *Env) {
			f.write("/sys/block/vdb/size", "1953124\n")
		}, "has 999999488 bytes, the plan 1000000000000"},
		{"data disk partitioned", "osd", func(f *fakeNode, _ *Env) {
			f.addPartition("vdb", 1, "somebody", "8c6f2f9e-0000-4000-8000-000000000001", 1<<20, 1<<30)
		}, "/dev/vdb (serial \"WD-KILN-CEPH1-B\" wwn \"\") has partitions (vdb1), but the installer left the planned data disk without any"},
		{"data disk is the system disk", "osd", func(f *fakeNode, _ *Env) {
			// The same disk seen by another serial: vda answers to
			// the data disk's serial, and holds the system.
			f.write("/sys/block/vda/serial", "WD-KILN-CEPH1-B\n")
			f.write("/sys/block/vdb/serial", "WD-KILN-CEPH1-X\n")
		}, "/dev/vda (serial \"WD-KILN-CEPH1-B\" wwn \"\") has partitions (vda1, vda2, vda3, vda4)"},
		{"system disk missing", "system", func(f *fakeNode, _ *Env) {
			f.write("/sys/block/vda/serial", "SOMEONE-ELSES\n")
		}, `no disk with serial "WD-KILN-CEPH1-A"`},
		{"no PARTUUID link", "system", func(f *fakeNode, env *Env) {
			os.Remove(filepath.Join(f.root, "/dev/disk/by-partuuid", osdUUID(env)))
		}, "no partition with PARTUUID 11b91ccf-fe16-5be1-a778-c475039d9421"},
		{"PARTUUID on another disk", "system", func(f *fakeNode, env *Env) {
			f.addDisk("vdc", "OTHER", 1000000000000)
			f.addPartition("vdc", 4, "kiln-osd", osdUUID(env), 53687091200, 946311528448)
		}, "/dev/vdc4 (PARTUUID 11b91ccf-fe16-5be1-a778-c475039d9421) is not a partition of /dev/vda"},
		{"PARTUUID on the state partition", "system", func(f *fakeNode, env *Env) {
			f.link("/dev/disk/by-partuuid/"+osdUUID(env), "../../vda3")
		}, "/dev/vda3 (PARTUUID 11b91ccf-fe16-5be1-a778-c475039d9421) is not the planned partition: number 3, planned 4; start 2282749952, planned 53687091200; size 51404341248, planned 946311528448; GPT name kiln-state, planned kiln-osd"},
		{"partition resized", "system", func(f *fakeNode, _ *Env) {
			f.write("/sys/block/vda/vda4/size", "1024\n")
		}, "size 524288, planned 946311528448"},
		{"partition renamed", "system", func(f *fakeNode, _ *Env) {
			f.write("/sys/block/vda/vda4/uevent", "PARTN=4\nPARTNAME=data\n")
		}, "GPT name data, planned kiln-osd"},
		{"link out of /dev", "system", func(f *fakeNode, env *Env) {
			f.link("/dev/disk/by-partuuid/"+osdUUID(env), "../../../tmp/x")
		}, "points to /tmp/x, not a device node"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, env, _ := newFakeNode(t)
			tc.change(f, env)
			err := osdTask(t, f, env, tc.disk)
			if !errors.Is(err, errRefused) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("osd = %v\nwant errRefused, containing %q", err, tc.want)
			}
			if len(f.ran) != 0 {
				t.Errorf("ran %q for a refused device", f.ran)
			}
		})
	}
}

// TestOSDExisting: a device that holds this cluster's OSD is kept (and
// activated when it does not run); another cluster's is refused.
func TestOSDExisting(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cluster string
		running bool
		want    []string
		err     string
	}{
		{"running", testFSID, true, []string{
			"ceph-volume lvm list --format json",
			"systemctl is-active --quiet ceph-osd@7",
		}, ""},
		{"not running (a reinstall)", testFSID, false, []string{
			"ceph-volume lvm list --format json",
			"systemctl is-active --quiet ceph-osd@7",
			"ceph-volume lvm activate --bluestore 7 00000000-0000-4000-8000-000000000007",
		}, ""},
		{"another cluster's", otherFSID, true, []string{
			"ceph-volume lvm list --format json",
		}, "/dev/vdb holds osd.7 of another Ceph cluster (fsid " + otherFSID + "); kiln does not destroy OSDs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, env, _ := newFakeNode(t)
			f.osds["/dev/vda4"] = &fakeOSD{id: 3, clusterFSID: testFSID, osdFSID: "00000000-0000-4000-8000-000000000003"}
			f.osds["/dev/vdb"] = &fakeOSD{id: 7, clusterFSID: tc.cluster, osdFSID: "00000000-0000-4000-8000-000000000007"}
			f.enabled["ceph-osd@7"] = tc.running
			err := osdTask(t, f, env, "osd")
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("osd = %v, want error %q", err, tc.err)
			}
			if d := cmp.Diff(tc.want, f.ran); d != "" {
				t.Errorf("commands (-want +got):\n%s", d)
			}
			if len(f.osds) != 2 || !f.enabled["ceph-osd@7"] && tc.cluster == testFSID {
				t.Errorf("OSDs %v, units %v", f.osds, f.enabled)
			}
		})
	}
}

// TestCephFailedMarker: a task that fails names itself on the console,
// is not recorded, and stops the first boot before the announcement.
func TestCephFailedMarker(t *testing.T) {
	f, env, console := newFakeNode(t)
	f.peersUp = false // ceph-2 and ceph-3 are not up: no quorum
	r := Runner{Dir: t.TempDir(), Log: quiet()}
	err := r.Run(context.Background(), env.Phases())
	if err == nil || !strings.Contains(err.Error(), "no monitor quorum with ceph-1 after 50ms: 2 of the monitors ceph-1, ceph-2, ceph-3 must be up") {
		t.Fatalf("Run = %v", err)
	}
	if got := console.String(); !strings.HasPrefix(got, "KILN-CEPH-FAILED task=ceph.quorum: no monitor quorum with ceph-1 after 50ms") || strings.Contains(got, "KILN-BOOTED") {
		t.Errorf("console = %q", got)
	}
	if _, err := os.Stat(filepath.Join(r.Dir, "ceph.quorum")); err == nil {
		t.Error("a failed task was recorded")
	}
	// The other nodes come up; the next run goes on from the quorum.
	f.peersUp = true
	f.reboot()
	if err := r.Run(context.Background(), env.Phases()); err != nil {
		t.Fatal(err)
	}
	if f.ran[0] != timedatectl || f.ran[1] != "ceph --connect-timeout 10 quorum_status --format json" {
		t.Errorf("the next run started with %q, want the clock then the quorum", f.ran[:2])
	}
}

func TestWithFSID(t *testing.T) {
	const fsid = testFSID
	for _, tc := range []struct{ name, in, want, err string }{
		{"added", "# c\n[global]\nmon_host = x\n\n[osd]\na = 1\n", "# c\n[global]\nfsid = " + fsid + "\nmon_host = x\n\n[osd]\na = 1\n", ""},
		{"already there", "[global]\nfsid = " + fsid + "\nmon_host = x\n", "[global]\nfsid = " + fsid + "\nmon_host = x\n", ""},
		{"further down, upper case", "[global]\nmon_host = x\n  fsid =  " + strings.ToUpper(fsid) + "\n", "[global]\nfsid = " + fsid + "\nmon_host = x\n", ""},
		{"in another section", "[global]\n[client]\nfsid = " + otherFSID + "\n", "[global]\nfsid = " + fsid + "\n[client]\nfsid = " + otherFSID + "\n", ""},
		{"another cluster's", "[global]\nfsid = " + otherFSID + "\n", "", "names the cluster " + otherFSID},
		{"no global", "[osd]\na = 1\n", "", "no [global] section"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := withFSID([]byte(tc.in), fsid)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("withFSID = %q, %v; want error %q", got, err, tc.err)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Errorf("withFSID = %q, %v; want %q", got, err, tc.want)
			}
			again, err := withFSID(got, fsid)
			if err != nil || string(again) != string(got) {
				t.Errorf("not idempotent: %q, %v", again, err)
			}
		})
	}
}

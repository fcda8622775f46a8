package firstboot

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const booted = "KILN-BOOTED host=ceph-1 addr=192.168.1.11/24\n"

// TestSelftestReadsOthers: storage nodes that finished earlier left their
// objects in the lab's pool; ceph-1 reads them back too, sorted, with its
// own, and leaves other objects of the pool alone.
func TestSelftestReadsOthers(t *testing.T) {
	f, env, console := newFakeNode(t)
	f.seedObject("kiln-selftest-ceph-3", selftestData("ceph-3", testFSID))
	f.seedObject("kiln-selftest-ceph-2", selftestData("ceph-2", testFSID))
	f.seedObject("benchmark_data_ceph-2_1234_object0", "not kiln's\n")
	r := Runner{Dir: t.TempDir(), Log: quiet()}
	if err := r.Run(context.Background(), env.Phases()); err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, console)
	}
	want := selftestRun("kiln-selftest-ceph-1", "kiln-selftest-ceph-2", "kiln-selftest-ceph-3")
	if d := cmp.Diff(want, f.ran[len(f.ran)-len(want):]); d != "" {
		t.Errorf("the selftest's commands (-want +got):\n%s", d)
	}
	marker := "KILN-CEPH-SELFTEST host=ceph-1 wrote=kiln-selftest-ceph-1 read=kiln-selftest-ceph-1,kiln-selftest-ceph-2,kiln-selftest-ceph-3\n"
	if got := console.String(); got != okMarker+marker+booted {
		t.Errorf("console = %q", got)
	}
	p := f.pools[selftestPool]
	if got := p.objects["kiln-selftest-ceph-1"]; got != "kiln selftest ceph-1 "+testFSID+"\n" {
		t.Errorf("kiln-selftest-ceph-1 holds %q", got)
	}
	if len(p.objects) != 4 || len(p.apps) != 1 || !p.apps["rados"] {
		t.Errorf("pool kiln: apps %v, objects %v", p.apps, p.objects)
	}
	if f.exists(selftestDir) {
		t.Errorf("%s is left behind", selftestDir)
	}
}

// TestSelftestMismatch: an object that does not read back as its machine's
// self-test in this cluster writes it fails the task, with what it holds;
// nothing is left on disk, and once the object is gone (an operator
// deleted it) the next run finishes.
func TestSelftestMismatch(t *testing.T) {
	for _, tc := range []struct {
		name, obj, data string
		err             string // after "KILN-CEPH-FAILED task=ceph.selftest: "
	}{
		{"corrupt", "kiln-selftest-ceph-2", "kiln selftest ceph-2 " + testFSID[:20],
			`object kiln-selftest-ceph-2 in pool kiln reads back "kiln selftest ceph-2 6c1f3e2a-9d4b-4c59-8", want "kiln selftest ceph-2 ` + testFSID + `\n"`},
		{"no newline", "kiln-selftest-ceph-2", "kiln selftest ceph-2 " + testFSID,
			`object kiln-selftest-ceph-2 in pool kiln reads back "kiln selftest ceph-2 ` + testFSID + `", want "kiln selftest ceph-2 ` + testFSID + `\n"`},
		{"garbage", "kiln-selftest-ceph-3", "\x00\x01" + strings.Repeat("x", 200),
			`object kiln-selftest-ceph-3 in pool kiln reads back "\x00\x01` + strings.Repeat("x", 98) + `...", want "kiln selftest ceph-3 ` + testFSID + `\n"`},
		{"another cluster's", "kiln-selftest-ceph-2", selftestData("ceph-2", otherFSID),
			"object kiln-selftest-ceph-2 in pool kiln names the Ceph cluster " + otherFSID + ", but this is " + testFSID},
		{"another machine's", "kiln-selftest-ceph-2", selftestData("ceph-3", testFSID),
			`object kiln-selftest-ceph-2 in pool kiln reads back "kiln selftest ceph-3 ` + testFSID + `\n", want "kiln selftest ceph-2 ` + testFSID + `\n"`},
		{"not a machine name", "kiln-selftest-Ceph_2", selftestData("Ceph_2", testFSID),
			`object kiln-selftest-Ceph_2 in pool kiln: "Ceph_2" is not a machine name; kiln's self-test objects are kiln-selftest-HOST`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, env, console := newFakeNode(t)
			f.seedObject(tc.obj, tc.data)
			r := Runner{Dir: t.TempDir(), Log: quiet()}
			err := r.Run(context.Background(), env.Phases())
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("Run = %v\nwant an error containing %s", err, tc.err)
			}
			if got := console.String(); got != okMarker+"KILN-CEPH-FAILED task=ceph.selftest: "+tc.err+"\n" {
				t.Errorf("console = %q", got)
			}
			if _, err := os.Stat(filepath.Join(r.Dir, "ceph.selftest")); err == nil {
				t.Error("the failed selftest was recorded")
			}
			if f.exists(selftestDir) {
				t.Errorf("%s is left behind", selftestDir)
			}
			// The operator deletes the object; the next run reads
			// only ceph-1's own.
			delete(f.pools[selftestPool].objects, tc.obj)
			f.reboot()
			console.Reset()
			if err := r.Run(context.Background(), env.Phases()); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(append([]string{timedatectl}, selftestRun("kiln-selftest-ceph-1")...), f.ran); d != "" {
				t.Errorf("the next run's commands (-want +got):\n%s", d)
			}
			if got := console.String(); got != selftestMarker+booted {
				t.Errorf("the next run's console = %q", got)
			}
		})
	}
}

// TestSelftestBounded: rados blocks on a placement group that is not
// active (too few storage nodes up yet); the task gives up after
// SelftestTimeout, and runs again once the cluster serves.
func TestSelftestBounded(t *testing.T) {
	f, env, console := newFakeNode(t)
	f.pgsInactive = true
	env.Storage.SelftestTimeout = 20 * time.Millisecond
	r := Runner{Dir: t.TempDir(), Log: quiet()}
	err := r.Run(context.Background(), env.Phases())
	const want = "rados -p kiln put kiln-selftest-ceph-1 /var/lib/kiln/ceph-selftest/kiln-selftest-ceph-1: no answer in 20ms (are the placement groups of pool kiln active? see ceph -s): timed out"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Run = %v\nwant an error containing %s", err, want)
	}
	if got := console.String(); got != okMarker+"KILN-CEPH-FAILED task=ceph.selftest: "+want+"\n" {
		t.Errorf("console = %q", got)
	}
	if f.exists(selftestDir) {
		t.Errorf("%s is left behind", selftestDir)
	}
	f.pgsInactive = false
	f.reboot()
	console.Reset()
	if err := r.Run(context.Background(), env.Phases()); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(append([]string{timedatectl}, selftestRun("kiln-selftest-ceph-1")...), f.ran); d != "" {
		t.Errorf("the next run's commands (-want +got):\n%s", d)
	}
	if got := console.String(); got != selftestMarker+booted {
		t.Errorf("the next run's console = %q", got)
	}
}

// TestSelftestLeftovers: a power cut in the self-test leaves its files (the
// fake's cuts stop no Go code, so its deferred removal still runs): the
// next run overwrites them, finishes, and removes them all.
func TestSelftestLeftovers(t *testing.T) {
	f, env, console := newFakeNode(t)
	f.write(selftestDir+"/kiln-selftest-ceph-1", "kiln selftest ceph-1 "+testFSID+"\n")
	f.write(selftestCopy, "kiln selftest ce") // rados get cut short
	f.write(selftestDir+"/.kiln-tmp-123", "kiln")
	r := Runner{Dir: t.TempDir(), Log: quiet()}
	if err := r.Run(context.Background(), env.Phases()); err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, console)
	}
	if got := console.String(); got != okMarker+selftestMarker+booted {
		t.Errorf("console = %q", got)
	}
	if f.exists(selftestDir) {
		t.Errorf("%s is left behind", selftestDir)
	}
}

package firstboot

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/pxe/api"
)

// TestHealth: a storage node's health report before its monitor is in a
// quorum, once its first boot is done, with an OSD down, with the cluster
// unreachable and with its placement groups inactive.
func TestHealth(t *testing.T) {
	const healthy = "HEALTH_OK: monitors 3/3 in quorum (ceph-1,ceph-2,ceph-3), manager active, 0 standby, OSDs 2 up 2 in of 2"
	for _, tc := range []struct {
		name  string
		boot  bool // run the first boot to its end first
		after func(f *fakeNode)
		want  []api.Service
	}{
		{"before the first boot", false, nil, []api.Service{
			{Name: "ceph", Status: api.HealthStarting, Detail: "the first boot's ceph phase has not finished yet"},
			{Name: "ceph-data", Status: api.HealthStarting, Detail: "the first boot's ceph phase has not finished yet"},
		}},
		{"healthy", true, nil, []api.Service{
			{Name: "ceph", Status: api.HealthOK, Detail: healthy},
			{Name: "ceph-data", Status: api.HealthOK, Detail: "read back 2 objects of pool kiln: kiln-selftest-ceph-1, kiln-selftest-ceph-2"},
		}},
		{"an OSD down", true, func(f *fakeNode) { f.enabled["ceph-osd@1"] = false }, []api.Service{
			{Name: "ceph", Status: api.HealthWarn, Detail: "HEALTH_WARN: monitors 3/3 in quorum (ceph-1,ceph-2,ceph-3), manager active, 0 standby, OSDs 1 up 2 in of 2, checks OSD_DOWN"},
			{Name: "ceph-data", Status: api.HealthOK, Detail: "read back 2 objects of pool kiln: kiln-selftest-ceph-1, kiln-selftest-ceph-2"},
		}},
		{"no quorum", true, func(f *fakeNode) { f.peersUp = false }, []api.Service{
			{Name: "ceph", Status: api.HealthFailed, Detail: "the cluster does not answer: [errno 110] RADOS timed out (error connecting to the cluster)"},
			{Name: "ceph-data", Status: api.HealthFailed, Detail: "rados: couldn't connect to cluster: (110) Connection timed out"},
		}},
		{"placement groups inactive", true, func(f *fakeNode) { f.pgsInactive = true }, []api.Service{
			{Name: "ceph", Status: api.HealthOK, Detail: healthy},
			{Name: "ceph-data", Status: api.HealthFailed, Detail: "rados -p kiln get kiln-selftest-ceph-1 /run/kiln/health-read/read: no answer in 50ms (are the placement groups of pool kiln active? see ceph -s): timed out"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, env, console := newFakeNode(t)
			f.seedObject("kiln-selftest-ceph-2", selftestData("ceph-2", testFSID))
			dir := t.TempDir()
			if tc.boot {
				if err := (Runner{Dir: dir, Log: quiet()}).Run(context.Background(), env.Phases()); err != nil {
					t.Fatalf("first boot: %v\nconsole:\n%s", err, console)
				}
			}
			if tc.after != nil {
				tc.after(f)
			}
			env.Storage.SelftestTimeout = 50 * time.Millisecond
			ran := len(f.ran)
			got := env.Health(context.Background(), dir)
			if d := cmp.Diff(api.Health{Services: tc.want}, got); d != "" {
				t.Errorf("health (-want +got):\n%s", d)
			}
			if f.exists(healthReadDir) {
				t.Errorf("%s is left behind", healthReadDir)
			}
			for _, sv := range got.Services {
				switch sv.Status { // what the gate accepts
				case api.HealthOK, api.HealthWarn, api.HealthFailed, api.HealthStarting:
				default:
					t.Errorf("service %s: status %q, which the gate refuses", sv.Name, sv.Status)
				}
			}
			for _, c := range f.ran[ran:] {
				if !strings.HasPrefix(c, "ceph --connect-timeout 30 -s") && !strings.HasPrefix(c, "rados -p kiln ls") && !strings.HasPrefix(c, "rados -p kiln get ") {
					t.Errorf("the health check ran %q: it must only read", c)
				}
			}
		})
	}
}

// TestHealthLine: the console shows a report's line only when it changed.
func TestHealthLine(t *testing.T) {
	var console bytes.Buffer
	env := &Env{Console: &console, Storage: &Storage{Root: t.TempDir()}}
	ok := api.Health{Services: []api.Service{{Name: "ceph", Status: api.HealthOK}, {Name: "ceph-data", Status: api.HealthOK}}}
	warn := api.Health{Services: []api.Service{{Name: "ceph", Status: api.HealthWarn}, {Name: "ceph-data", Status: api.HealthOK}}}
	for _, h := range []api.Health{ok, ok, warn, warn, ok} {
		if err := env.PrintHealthChange(HealthLine("ceph-1", h)); err != nil {
			t.Fatal(err)
		}
	}
	want := "KILN-HEALTH host=ceph-1 ceph=ok ceph-data=ok\n" +
		"KILN-HEALTH host=ceph-1 ceph=warn ceph-data=ok\n" +
		"KILN-HEALTH host=ceph-1 ceph=ok ceph-data=ok\n"
	if console.String() != want {
		t.Errorf("console:\n%s\nwant:\n%s", console.String(), want)
	}
	if _, err := os.Stat(filepath.Join(env.Storage.Root, healthLast)); err != nil {
		t.Error("the last line is not kept")
	}
}

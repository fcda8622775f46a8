package qemutests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/qemu-tests/lab"
	"github.com/kilnlab/kiln/qemu-tests/rehearse"
)

// cephDeadline bounds a storage node from power-on to its role OS: the
// install, then a monitor, a manager and two OSDs made under TCG.
const cephDeadline = 40 * time.Minute

var (
	cephOK       = regexp.MustCompile(`KILN-CEPH-OK host=(\S+) health=(\S+) mons=(\d+) osds=(\d+)/(\d+)(?: checks=(\S+))?`)
	cephSelftest = regexp.MustCompile(`KILN-CEPH-SELFTEST host=(\S+) wrote=(\S+) read=(\S+)`)
)

// TestCephOneNode is the CI tier of the lab's Ceph: one storage node
// netboots from the gate VM, is installed (its secrets, Ceph's keys among
// them, handed over once), and its first boot brings up Debian's Ceph
// 16.2.15 from the profile: one monitor, a manager, and an OSD on each of
// the two planned devices (the data partition after the system slice, and
// the whole second disk). The node writes an object into the cluster and
// reads it back; the gate's page shows its phases done. The cluster's
// state as the node printed it is kept in test-output.
func TestCephOneNode(t *testing.T) {
	requireLab(t)
	ctx := testContext(t, cephDeadline)
	l, p := startLab(t, ctx, profiles.DHCPProxy, gateVM)
	m := machine(t, p, "node-s")
	cfg := lab.ConfigFor(p.Lab, m)
	r := l.Install(ctx, m, cfg)
	t.Logf("%s: install %s, role OS (Ceph up) %s, power-cycled to disk in %s, %d boots: %s",
		m.Name, r.Install, r.Booted, r.Reboot, r.Boots, r.Detail)
	serial, _ := os.ReadFile(filepath.Join(l.Net.OutDir(), cfg.Name+".serial.log"))
	var kept []string
	for _, line := range strings.Split(string(serial), "\n") {
		if strings.Contains(line, "KILN-CEPH") {
			kept = append(kept, strings.TrimSpace(line))
		}
	}
	if err := os.WriteFile(filepath.Join(l.Net.OutDir(), "ceph-status.txt"), []byte(strings.Join(kept, "\n")+"\n"), 0o644); err != nil {
		t.Error(err)
	}
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	ok := cephOK.FindStringSubmatch(string(serial))
	if ok == nil {
		t.Fatalf("no KILN-CEPH-OK line on %s's console", m.Name)
	}
	t.Logf("ceph: %s", ok[0])
	if ok[1] != m.Name || ok[3] != "1" || ok[4] != "2" || ok[5] != "2" {
		t.Errorf("ceph on %s: want 1 monitor in quorum and 2 OSDs up and in: %s", m.Name, ok[0])
	}
	// One node: HEALTH_OK, or HEALTH_WARN only for the redundancy that
	// validation already warned about.
	if ok[2] != "HEALTH_OK" {
		for _, c := range strings.Split(ok[6], ",") {
			if c != "POOL_NO_REDUNDANCY" && c != "OSD_POOL_NO_REDUNDANCY" {
				t.Errorf("ceph health %s with check %s: %s", ok[2], c, ok[0])
			}
		}
	}
	st := cephSelftest.FindStringSubmatch(string(serial))
	if st == nil {
		t.Fatalf("no KILN-CEPH-SELFTEST line on %s's console", m.Name)
	}
	if !strings.Contains(","+st[3]+",", ",kiln-selftest-"+m.Name+",") {
		t.Errorf("the node did not read back the object it wrote: %s", st[0])
	}
	checkGateStatus(t, l, m.Name, "installed")
	for _, ms := range gateStatus(t, l).Machines {
		if ms.Name != m.Name {
			continue
		}
		b, _ := json.Marshal(ms.Phases)
		for _, ph := range []string{"time", "ceph"} {
			if !strings.Contains(string(b), `"name":"`+ph+`","status":"done"`) {
				t.Errorf("gate status: phase %s of %s not done: %s", ph, m.Name, b)
			}
		}
	}
	checkSecretsOnDisk(t, filepath.Join(l.Net.OutDir(), cfg.Name+"-"+m.Disks[0].Name+".img"), m.Disks[0])
}

// TestCephThreeNodes is make e2e's lab (KILN_E2E=1; not in CI, which runs
// TestCephOneNode): seed 004's three storage nodes netboot from the gate VM
// at the same time (three monitors need two of them up for a quorum),
// each with an OSD on its data partition and one on its second disk. Each
// node's first boot ends with the cluster's state as it saw it; the last
// sees 3 monitors in quorum and 6 OSDs up and in, HEALTH_OK; and a node
// reads back an object another node wrote.
func TestCephThreeNodes(t *testing.T) {
	if os.Getenv("KILN_E2E") != "1" {
		t.Skip("the three-node Ceph lab is make e2e's (KILN_E2E=1)")
	}
	requireLab(t)
	ctx := testContext(t, 100*time.Minute)
	l, p := startLabFor(t, ctx, "testdata/ceph3.yaml", profiles.DHCPProxy, gateVM)
	var ms []plan.Machine
	for _, name := range []string{"ceph-1", "ceph-2", "ceph-3"} {
		ms = append(ms, machine(t, p, name))
	}
	// All three stay up until the last has come up (InstallUp): a node
	// still bootstrapping needs the others' monitors.
	results := make([]rehearse.Result, len(ms))
	vms := make([]*lab.VM, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], vms[i] = l.InstallUp(ctx, m, lab.ConfigFor(p.Lab, m))
		}()
	}
	wg.Wait()
	for _, vm := range vms {
		if vm != nil {
			vm.Stop()
		}
	}
	var oks, tests []string
	maxOSDs, maxMons := 0, 0
	health := ""
	for i, m := range ms {
		r := results[i]
		t.Logf("%s: install %s, role OS (Ceph up) %s, power-cycled to disk in %s: %s", m.Name, r.Install, r.Booted, r.Reboot, r.Detail)
		if r.Err != nil {
			t.Errorf("%s: %v", m.Name, r.Err)
			continue
		}
		serial, _ := os.ReadFile(filepath.Join(l.Net.OutDir(), m.Name+".serial.log"))
		if ok := cephOK.FindStringSubmatch(string(serial)); ok != nil {
			oks = append(oks, ok[0])
			mons, _ := strconv.Atoi(ok[3])
			up, _ := strconv.Atoi(ok[4])
			if up > maxOSDs || (up == maxOSDs && mons >= maxMons) {
				maxOSDs, maxMons, health = up, mons, ok[2]
			}
		}
		if st := cephSelftest.FindStringSubmatch(string(serial)); st != nil {
			tests = append(tests, st[0])
		}
	}
	os.WriteFile(filepath.Join(l.Net.OutDir(), "ceph-status.txt"), []byte(strings.Join(append(oks, tests...), "\n")+"\n"), 0o644)
	for _, line := range append(oks, tests...) {
		t.Logf("%s", line)
	}
	if len(oks) != 3 || maxMons != 3 || maxOSDs != 6 || health != "HEALTH_OK" {
		t.Errorf("want every node's KILN-CEPH-OK, the fullest with 3 mons, 6 OSDs up and in, HEALTH_OK: %q", oks)
	}
	crossRead := false
	for _, line := range tests {
		st := cephSelftest.FindStringSubmatch(line)
		for _, obj := range strings.Split(st[3], ",") {
			if obj != st[2] {
				crossRead = true
			}
		}
	}
	if !crossRead {
		t.Errorf("no node read back an object another node wrote: %q", tests)
	}
}

package qemutests

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
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
	"github.com/kilnlab/kiln/pxe/httpd"
	"github.com/kilnlab/kiln/qemu-tests/lab"
	"github.com/kilnlab/kiln/qemu-tests/rehearse"
)

// cephDeadline bounds a storage node from power-on to its role OS: the
// install, then a monitor, a manager and two OSDs made under TCG.
const cephDeadline = 40 * time.Minute

var (
	cephOK       = regexp.MustCompile(`KILN-CEPH-OK host=(\S+) health=(\S+) mons=(\d+) osds=(\d+)/(\d+)(?: checks=(\S+))?`)
	cephSelftest = regexp.MustCompile(`KILN-CEPH-SELFTEST host=(\S+) wrote=(\S+) read=(\S+)`)
	netBond      = regexp.MustCompile(`KILN-NET-BOND (\S+) mode=(\S+) slaves=(\S+) up=(\d+) address=(\S+) mac=(\S+)`)
)

// TestCephOneNode is the CI tier of the lab's Ceph: one storage node
// netboots from the gate VM, is installed (its secrets, Ceph's keys among
// them, handed over once), and its first boot brings up Debian's Ceph
// 16.2.15 from the profile: one monitor, a manager, and an OSD on each of
// the two planned devices (the data partition after the system slice, and
// the whole second disk). The node writes an object into the cluster and
// reads it back; the gate's page shows its phases done, and its periodic
// health report (over the gate's TLS port) the cluster healthy. The cluster's
// state as the node printed it is kept in test-output. The node's two NICs
// are bonded (active-backup), and its first boot shows bond0 carrying its
// address over both.
func TestCephOneNode(t *testing.T) {
	requireLab(t)
	ctx := testContext(t, cephDeadline)
	l, p := startLab(t, ctx, profiles.DHCPProxy, gateVM)
	m := machine(t, p, "node-s")
	cfg := lab.ConfigFor(p.Lab, m)
	r, vm := l.InstallUp(ctx, m, cfg)
	health, rebooted := "", ""
	if r.Err == nil {
		// Its periodic health report reaches the gate with its own
		// certificate and says Ceph, Consul and Vault are well: Consul
		// a leader and its one voter, anonymous requests refused, Vault
		// initialised by the gate and unsealed.
		hctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		err := l.WaitHealth(hctx, []string{m.Name}, time.Time{}, rehearse.ServicesHealthy(p, m), func(_ string, h *httpd.HealthStatus) {
			health = rehearse.Describe(h)
			rehearse.Table(tlog{t}, rehearse.Rows(m, h, h.At.Sub(r.Started)))
		})
		cancel()
		if err != nil {
			t.Errorf("%s's health report: %v", m.Name, err)
		}
		t.Logf("%s's health report on the gate: %s", m.Name, health)
		// After a reboot Vault starts sealed: the node asks the gate,
		// which unseals it with the key it kept; no one else acts.
		r, rebooted = rebootServices(t, ctx, l, p, r, cfg, vm)
	}
	t.Logf("%s: install %s, role OS (Ceph up) %s, power-cycled to disk in %s, %d boots: %s",
		m.Name, r.Install, r.Booted, r.Reboot, r.Boots, r.Detail)
	serial, _ := os.ReadFile(filepath.Join(l.Net.OutDir(), cfg.Name+".serial.log"))
	var kept []string
	for _, line := range strings.Split(string(serial), "\n") {
		if strings.Contains(line, "KILN-CEPH") || strings.Contains(line, "KILN-NET-BOND") || strings.Contains(line, "KILN-HEALTH") || strings.Contains(line, "KILN-VAULT") {
			kept = append(kept, strings.TrimSpace(line))
		}
	}
	if health != "" {
		kept = append(kept, "health report on the gate: "+health)
	}
	if rebooted != "" {
		kept = append(kept, "health report after a reboot: "+rebooted)
	}
	if err := os.WriteFile(filepath.Join(l.Net.OutDir(), "ceph-status.txt"), []byte(strings.Join(kept, "\n")+"\n"), 0o644); err != nil {
		t.Error(err)
	}
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	checkBond(t, string(serial), m)
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
	// The gate initialised Vault, unsealed it and read back through it
	// the secret it wrote.
	if !regexp.MustCompile(`KILN-VAULT host=` + m.Name + ` unsealed selftest="wrote kiln-selftest/` + m.Name + `.*read back ` + m.Name).MatchString(string(serial)) {
		t.Errorf("no KILN-VAULT line with the gate's self-test passed on %s's console", m.Name)
	}
	checkGateStatus(t, l, m.Name, "installed")
	for _, ms := range gateStatus(t, l).Machines {
		if ms.Name != m.Name {
			continue
		}
		b, _ := json.Marshal(ms.Phases)
		for _, ph := range []string{"time", "ceph", "consul", "vault"} {
			if !strings.Contains(string(b), `"name":"`+ph+`","status":"done"`) {
				t.Errorf("gate status: phase %s of %s not done: %s", ph, m.Name, b)
			}
		}
	}
	checkSecretsOnDisk(t, filepath.Join(l.Net.OutDir(), cfg.Name+"-"+m.Disks[0].Name+".img"), m.Disks[0])
}

// rebootServices powers off m's VM (up from InstallUp) and on again from
// its disks, and waits until its services report healthy again: Vault
// unsealed by the gate with no one acting. It returns m's result with the
// reboot and the report.
func rebootServices(t *testing.T, ctx context.Context, l *rehearse.Lab, p *plan.Plan, r rehearse.Result, cfg lab.VMConfig, vm *lab.VM) (rehearse.Result, string) {
	t.Helper()
	m := machine(t, p, r.Machine)
	vm.Stop()
	r.Boots = vm.Boots()
	cfg.Name += "-again"
	start := time.Now()
	again, err := l.PowerOn(ctx, cfg, vm.Hardware())
	if err != nil {
		r.Err = fmt.Errorf("power on again: %w", err)
		return r, ""
	}
	defer again.Stop()
	r.Reboot, r.Boots, r.State = time.Since(start), r.Boots+again.Boots(), "installed, booted"
	report := ""
	hctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	err = l.WaitHealth(hctx, []string{m.Name}, start, rehearse.ServicesHealthy(p, m), func(_ string, h *httpd.HealthStatus) {
		report = rehearse.Describe(h)
		t.Logf("%s healthy again %s after the power-on (Vault unsealed by the gate): %s", m.Name, h.At.Sub(start).Round(time.Second), report)
	})
	if err != nil {
		t.Errorf("%s after a reboot: %v", m.Name, err)
	}
	return r, report
}

// tlog writes a table into the test log, one t.Log per line.
type tlog struct{ t *testing.T }

func (w tlog) Write(b []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		w.t.Log(line)
	}
	return len(b), nil
}

// checkBond checks the KILN-NET-BOND line of m's first boot: bond0 in
// active-backup over m's two NICs (by their kernel names), both up,
// carrying m's LAN address, with the MAC of the NIC m netboots from.
func checkBond(t *testing.T, serial string, m plan.Machine) {
	t.Helper()
	b := netBond.FindStringSubmatch(serial)
	if b == nil {
		t.Errorf("no KILN-NET-BOND line on %s's console", m.Name)
		return
	}
	t.Logf("bond: %s", b[0])
	if b[1] != "bond0" || b[2] != "active-backup" || len(strings.Split(b[3], ",")) != 2 || b[4] != "2" || b[5] != m.Address {
		t.Errorf("%s: want bond0 in active-backup over 2 NICs, both up, carrying %s: %s", m.Name, m.Address, b[0])
	}
	if !strings.EqualFold(b[6], m.MAC) {
		t.Errorf("%s: bond0 has MAC %s, want the netboot NIC's %s: %s", m.Name, b[6], m.MAC, b[0])
	}
}

// TestCephThreeNodes is make e2e's lab (KILN_E2E=1; not in CI, which runs
// TestCephOneNode): seed 004's three storage nodes netboot from the gate
// (kiln gate serve on the host side of the LAN, which the test can tell to
// reinstall a machine) at the same time (three monitors need two of them
// up for a quorum), each with an OSD on its data partition and one on its
// second disk. Then, as the lab's life would have it:
//
//  1. Each node's first boot ends with the cluster's state as it saw it;
//     the fullest sees 3 monitors in quorum and 6 OSDs up and in;
//     a node reads back an object another node wrote; every node's
//     periodic health report on the gate says HEALTH_OK, Consul a leader
//     and 3 voters, 3 members alive, anonymous requests refused, and
//     Vault unsealed (the gate initialised it once and unsealed each),
//     one active and two standby; the gate's self-test read back through
//     one node's Vault the secrets written through the others'.
//  2. ceph-3 is powered off (QEMU killed): the others report HEALTH_WARN
//     and still read back every object, ceph-3's included; Consul keeps a
//     leader (2 of 3 servers alive); Vault still answers on both.
//  3. ceph-3 is powered on again: every service of every node reports
//     healthy, ceph-3's Vault unsealed by the gate, with no one doing
//     anything.
//  4. ceph-3 is reinstalled (kiln gate reinstall, as after a broken OS):
//     its OSD partition and OSD disk are byte for byte what they were;
//     its first boot runs again and its OSDs rejoin with their data: 6
//     OSDs, not 8, HEALTH_OK on every node, every object read back.
//
// test-output keeps each node's console (the KILN-HEALTH lines show the
// cluster degrading and recovering) and ceph-status.txt.
func TestCephThreeNodes(t *testing.T) {
	if os.Getenv("KILN_E2E") != "1" {
		t.Skip("the three-node Ceph lab is make e2e's (KILN_E2E=1)")
	}
	requireLab(t)
	ctx := testContext(t, 150*time.Minute)
	l, p := startLabFor(t, ctx, "testdata/ceph3.yaml", profiles.DHCPProxy, gateHost)
	names := []string{"ceph-1", "ceph-2", "ceph-3"}
	var ms []plan.Machine
	for _, name := range names {
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
	t.Cleanup(func() {
		for _, vm := range vms {
			if vm != nil {
				vm.Stop()
			}
		}
	})
	log := &statusLog{path: filepath.Join(l.Net.OutDir(), "ceph-status.txt")}
	checkFirstBoots(t, l, ms, results, log)
	if t.Failed() {
		t.FailNow()
	}
	start := time.Now()
	// Every service of every node: Ceph HEALTH_OK, Consul a leader and 3
	// voters and 3 members alive and anonymous requests refused, Vault
	// unsealed by the gate.
	reports := map[string]*httpd.HealthStatus{}
	waitHealthOf(t, ctx, l, log, "1. all three up", p, ms, start, reports)
	checkVaultCluster(t, reports, names)
	var rows []rehearse.Row
	for i, m := range ms {
		rows = append(rows, rehearse.Rows(m, reports[m.Name], reports[m.Name].At.Sub(results[i].Started))...)
	}
	rehearse.Table(tlog{t}, rows)

	// 2. A storage node lost: Ceph degraded but serving every object,
	// Consul still has a leader (2 of 3 servers), Vault answers through
	// the survivors (a standby took over if ceph-3 was active).
	const lost = 2 // ceph-3
	vms[lost].Stop()
	down := time.Now()
	t.Logf("ceph-3 powered off")
	waitHealth(t, ctx, l, log, "2. ceph-3 down", names[:2], down, func(h *httpd.HealthStatus) string {
		ceph, data := rehearse.Service(h, "ceph"), rehearse.Service(h, "ceph-data")
		consul, vault := rehearse.Service(h, "consul"), rehearse.Service(h, "vault")
		switch {
		case ceph.Status != "warn" || !strings.HasPrefix(ceph.Detail, "HEALTH_WARN:"):
			return "ceph " + ceph.Status + " (" + ceph.Detail + "), want HEALTH_WARN"
		case data.Status != "ok" || !strings.Contains(data.Detail, "kiln-selftest-ceph-3"):
			return "ceph-data " + data.Status + " (" + data.Detail + "), want every object read back, ceph-3's too"
		case consul.Status != "warn" || !strings.Contains(consul.Detail, "2 of 3 servers alive") || !strings.Contains(consul.Detail, "leader ceph-"):
			return "consul " + consul.Status + " (" + consul.Detail + "), want a leader with 2 of 3 servers alive"
		case vault.Status != "ok":
			return "vault " + vault.Status + " (" + vault.Detail + "), want it unsealed and answering"
		}
		return ""
	})

	// 3. It comes back: HEALTH_OK without a human.
	cfg := lab.ConfigFor(p.Lab, ms[lost])
	hw := vms[lost].Hardware()
	cfg.Name = "ceph-3-poweron"
	vm, err := l.PowerOn(ctx, cfg, hw)
	if err != nil {
		t.Fatalf("ceph-3 power on: %v", err)
	}
	vms[lost] = vm
	t.Logf("ceph-3 powered on again after %s down", time.Since(down).Round(time.Second))
	// Every row healthy again, ceph-3's Vault unsealed by the gate.
	back := time.Now()
	waitHealthOf(t, ctx, l, log, "3. ceph-3 back", p, ms, back, reports)
	checkVaultCluster(t, reports, names)

	// 4. Reinstalled: its data kept byte for byte, its OSDs rejoin.
	vms[lost].Stop()
	kept := osdRegions(t, ms[lost], hw.Disks)
	before := hashRegions(t, kept)
	if err := l.Reinstall(ctx, "ceph-3"); err != nil {
		t.Fatal(err)
	}
	cfg.Name = "ceph-3-reinstall"
	if err := installOnly(ctx, l, cfg, hw); err != nil {
		t.Fatalf("ceph-3 reinstall: %v", err)
	}
	after := hashRegions(t, kept)
	for i, r := range kept {
		if before[i] != after[i] {
			t.Errorf("the reinstall changed %s: sha256 %s before, %s after", r, before[i], after[i])
		} else {
			t.Logf("kept byte for byte by the reinstall: %s (sha256 %s)", r, after[i])
		}
	}
	cfg.Name = "ceph-3-reinstalled"
	mark := time.Now()
	if vms[lost], err = l.PowerOn(ctx, cfg, hw); err != nil {
		t.Fatalf("ceph-3 after its reinstall: %v", err)
	}
	line, err := vms[lost].WaitFor(ctx, regexp.MustCompile(`KILN-CEPH-OK host=ceph-3 .*`))
	if err != nil {
		t.Fatalf("ceph-3's first boot after its reinstall: %v\n%s", err, vms[lost].Tail(30))
	}
	log.add("4. ceph-3 reinstalled, its first boot: " + line)
	waitHealth(t, ctx, l, log, "4. ceph-3 reinstalled", names, mark, rehearse.CephHealthy(3, 6))
}

// checkFirstBoots checks the three nodes' first boots from their consoles.
func checkFirstBoots(t *testing.T, l *rehearse.Lab, ms []plan.Machine, results []rehearse.Result, log *statusLog) {
	t.Helper()
	var oks, tests []string
	maxOSDs, maxMons := 0, 0
	health := ""
	for i, m := range ms {
		r := results[i]
		t.Logf("%s: install %s, role OS (Ceph up) %s: %s", m.Name, r.Install, r.Booted, r.Detail)
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
	for _, line := range append(oks, tests...) {
		log.add("first boot: " + line)
	}
	// The cluster may not be healthy yet when a node's part is done (a
	// peer's OSD still starting); the health reports must then say it is.
	if len(oks) != 3 || maxMons != 3 || maxOSDs != 6 {
		t.Errorf("want every node's KILN-CEPH-OK, the fullest with 3 mons, 6 OSDs up and in: %q", oks)
	}
	t.Logf("the fullest first-boot view: %s", health)
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

// waitHealthOf waits until each of ms reports, after since, every service
// the plan gives it healthy; reports receives each accepted report.
func waitHealthOf(t *testing.T, ctx context.Context, l *rehearse.Lab, log *statusLog, step string, p *plan.Plan, ms []plan.Machine, since time.Time, reports map[string]*httpd.HealthStatus) {
	t.Helper()
	for _, m := range ms {
		accept := rehearse.ServicesHealthy(p, m)
		waitHealth(t, ctx, l, log, step, []string{m.Name}, since, func(h *httpd.HealthStatus) string {
			why := accept(h)
			if why == "" {
				reports[m.Name] = h
			}
			return why
		})
	}
}

// checkVaultCluster wants one active Vault and the others standby, and a
// node whose gate self-test read back, through its own Vault, secrets
// written through the others' (one storage, one cluster).
func checkVaultCluster(t *testing.T, reports map[string]*httpd.HealthStatus, names []string) {
	t.Helper()
	active, standby, cross := 0, 0, ""
	for _, n := range names {
		v := rehearse.Service(reports[n], "vault")
		switch {
		case strings.Contains(v.Detail, "unsealed, active"):
			active++
		case strings.Contains(v.Detail, "unsealed, standby"):
			standby++
		}
		if i := strings.Index(v.Detail, "read back "); i >= 0 {
			read := strings.Split(strings.Fields(v.Detail[i+len("read back "):])[0], ",")
			if len(read) == len(names) {
				cross = n + ": " + v.Detail
			}
		}
	}
	if active != 1 || standby != len(names)-1 {
		t.Errorf("vault: %d active and %d standby, want 1 and %d", active, standby, len(names)-1)
	}
	if cross == "" {
		t.Errorf("no node's Vault read back every node's secret (written through the others)")
	} else {
		t.Logf("vault: a secret written through one node read through another: %s", cross)
	}
}

// healthWait bounds each wait for the nodes' health reports: Ceph's own
// detection of a lost node takes about half a minute, its recovery a few
// minutes under TCG, and a node reports every two minutes or so.
const healthWait = 20 * time.Minute

// waitHealth waits until each of the machines has sent the gate a health
// report after since that accept takes, logging each.
func waitHealth(t *testing.T, ctx context.Context, l *rehearse.Lab, log *statusLog, step string, machines []string, since time.Time, accept func(*httpd.HealthStatus) string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, healthWait)
	defer cancel()
	start := time.Now()
	err := l.WaitHealth(ctx, machines, since, accept, func(m string, h *httpd.HealthStatus) {
		line := fmt.Sprintf("%s: %s after %s: %s", step, m, time.Since(start).Round(time.Second), rehearse.Describe(h))
		log.add(line)
		t.Log(line)
	})
	if err != nil {
		t.Fatalf("%s: %v", step, err)
	}
}

// statusLog is ceph-status.txt in test-output, written as the test goes.
type statusLog struct {
	path  string
	lines []string
}

func (s *statusLog) add(line string) {
	s.lines = append(s.lines, line)
	os.WriteFile(s.path, []byte(strings.Join(s.lines, "\n")+"\n"), 0o644)
}

// region is a byte range of a disk image.
type region struct {
	path      string
	off, size int64
	what      string
}

func (r region) String() string { return r.what }

// osdRegions are m's OSD devices in its VM's disk images: the empty
// partitions of its system disk and its data disks, whole.
func osdRegions(t *testing.T, m plan.Machine, disks []string) []region {
	t.Helper()
	var out []region
	for i, d := range m.Disks {
		if d.Layout == nil {
			out = append(out, region{disks[i], 0, int64(d.Size), "disk " + d.Name})
			continue
		}
		for _, p := range d.Layout.Partitions {
			if p.Content == plan.ContentEmpty {
				out = append(out, region{disks[i], int64(p.Start), int64(p.Size), "partition " + p.Name + " of disk " + d.Name})
			}
		}
	}
	if len(out) != 2 {
		t.Fatalf("%s: want an OSD partition and an OSD disk, got %v", m.Name, out)
	}
	return out
}

func hashRegions(t *testing.T, rs []region) []string {
	t.Helper()
	out := make([]string, len(rs))
	for i, r := range rs {
		f, err := os.Open(r.path)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		_, err = io.Copy(h, io.NewSectionReader(f, r.off, r.size))
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[i] = hex.EncodeToString(h.Sum(nil))
	}
	return out
}

// installDeadEnd ends a wait on an installing machine at once.
var installDeadEnd = regexp.MustCompile(`KILN-INSTALL-(REFUSED|FAILED) .*`)

// startVM creates cfg's VM on the lab network and powers it on.
func startVM(ctx context.Context, l *rehearse.Lab, cfg lab.VMConfig) (*lab.VM, error) {
	vm, err := l.Net.NewVM(ctx, cfg)
	if err == nil {
		err = vm.Start(ctx)
	}
	return vm, err
}

// installOnly netboots a re-armed machine on its disks until its installer
// says KILN-INSTALL-OK, and powers it off there, before its role OS can
// touch a disk.
func installOnly(ctx context.Context, l *rehearse.Lab, cfg lab.VMConfig, hw lab.Hardware) error {
	cfg = cfg.On(hw)
	cfg.FailOn = append(cfg.FailOn, installDeadEnd)
	vm, err := startVM(ctx, l, cfg)
	if err != nil {
		return err
	}
	defer vm.Stop()
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`kiln: keeping `)); err != nil {
		return fmt.Errorf("no reinstall: %w\n%s", err, vm.Tail(30))
	}
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`KILN-INSTALL-OK \S+`)); err != nil {
		return fmt.Errorf("%w\n%s", err, vm.Tail(30))
	}
	return nil
}

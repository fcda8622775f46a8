package qemutests

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnlab/kiln/image/hosttool/hosttooltest"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/pxe/httpd"
	"github.com/kilnlab/kiln/qemu-tests/lab"
	"github.com/kilnlab/kiln/qemu-tests/rehearse"
	"github.com/kilnlab/kiln/qemu-tests/upstream"
)

// The end-to-end scenarios of the walking skeleton: real kiln gate, real
// bundle (pinned Debian kernel, u-root installer, mmdebstrap role image),
// VMs that netboot, install and reboot into their role OS.

const (
	testProfile     = "testdata/lab.yaml"
	machineDeadline = 20 * time.Minute
)

// testBuild is the kiln binary and a `kiln build -o` output (bundle and
// gate image) of one test profile, which every scenario on that profile
// shares: built once per test binary (it takes minutes). KILN_TEST_BUILD
// names an existing build of testdata/lab.yaml to reuse instead.
type testBuild struct {
	once          sync.Once
	kiln, out     string
	bundle        string
	err           error
	plan          *plan.Plan
	profile       string
	buildDuration time.Duration
}

// kilnBuild is testProfile's build; builds holds the others'.
var (
	kilnBuild testBuild
	builds    = struct {
		sync.Mutex
		m map[string]*testBuild
	}{m: map[string]*testBuild{testProfile: &kilnBuild}}
	kilnBinary struct {
		once sync.Once
		path string
		err  error
	}
)

// kilnAndBundle builds (once) testProfile's lab: the kiln binary, the
// bundle and the plan.
func kilnAndBundle(t *testing.T) (kiln, bundle string, p *plan.Plan) {
	b := buildOf(t, testProfile)
	return b.kiln, b.bundle, b.plan
}

// buildOf builds (once) profile's lab into test-output/build[-NAME].
func buildOf(t *testing.T, profile string) *testBuild {
	t.Helper()
	builds.Lock()
	b, ok := builds.m[profile]
	if !ok {
		b = &testBuild{}
		builds.m[profile] = b
	}
	builds.Unlock()
	root := os.Getenv("KILN_TEST_OUTPUT")
	if root == "" {
		root = "test-output"
	}
	kilnBinary.once.Do(func() {
		dir, _ := filepath.Abs(filepath.Join(root, "build"))
		kilnBinary.path = filepath.Join(dir, "kiln")
		kilnBinary.err = buildKiln(dir, kilnBinary.path)
	})
	if kilnBinary.err != nil {
		t.Fatalf("kiln: %v", kilnBinary.err)
	}
	b.once.Do(func() {
		dir, _ := filepath.Abs(filepath.Join(root, "build"))
		b.profile, _ = filepath.Abs(profile)
		b.kiln = kilnBinary.path
		if profile == testProfile {
			b.out = os.Getenv("KILN_TEST_BUILD")
		}
		if b.out == "" {
			b.out = filepath.Join(dir, "out")
			if profile != testProfile {
				b.out += "-" + strings.TrimSuffix(filepath.Base(profile), ".yaml")
			}
			start := time.Now()
			b.err = prepareUpstream(b.kiln, b.profile, secretsDir(b.out), filepath.Join(root, "upstream"))
			if b.err == nil {
				b.err = run(exec.Command(b.kiln, "build", "--src", "..", "-o", b.out, "--secrets", secretsDir(b.out), b.profile))
			}
			b.buildDuration = time.Since(start)
		}
		b.bundle = filepath.Join(b.out, "bundle")
		if b.err != nil {
			return
		}
		var prof *profiles.Profile
		if prof, b.err = profiles.Load(b.profile); b.err == nil {
			b.plan, b.err = plan.Compute(prof)
		}
	})
	if b.err != nil {
		t.Fatalf("kiln and its bundle of %s: %v", profile, b.err)
	}
	if b.buildDuration > 0 {
		t.Logf("kiln build of %s took %s", profile, b.buildDuration.Round(time.Second))
	}
	return b
}

// prepareUpstream puts the upstream programs profile's lab runs into its
// record (labDir), as a user would: the real Consul and Vault built from
// the module proxy (KILN_UPSTREAM, where `make upstream` put them; else
// built into dir now, minutes) by kiln artifacts import, k3s's stand-in by
// kiln artifacts fetch from a local server.
func prepareUpstream(kiln, profile, labDir, dir string) error {
	p, err := profiles.Load(profile)
	if err != nil {
		return err
	}
	needs := upstream.NeedsOf(p)
	if needs == (upstream.Needs{}) {
		return nil
	}
	var log strings.Builder
	ctx := context.Background()
	bin := os.Getenv("KILN_UPSTREAM")
	if bin == "" {
		bin, _ = filepath.Abs(dir)
		if err := upstream.Build(ctx, "..", bin, &log); err != nil {
			return fmt.Errorf("%w\n%s", err, log.String())
		}
	}
	work, err := os.MkdirTemp("", "kiln-upstream-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if err := upstream.Prepare(ctx, kiln, labDir, bin, work, needs, &log); err != nil {
		return fmt.Errorf("%w\n%s", err, log.String())
	}
	return nil
}

// secretsDir is where the test build of out keeps the lab's secrets (not
// the user's ~/.local/state/kiln).
func secretsDir(out string) string { return filepath.Clean(out) + "-secrets" }

func buildKiln(dir, out string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-o", out, "../cmd/kiln")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	return run(cmd)
}

func run(cmd *exec.Cmd) error {
	var buf strings.Builder
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return &cmdError{cmd.String(), err, buf.String()}
	}
	return nil
}

type cmdError struct {
	cmd    string
	err    error
	output string
}

func (e *cmdError) Error() string {
	out := e.output
	if len(out) > 4000 {
		out = "..." + out[len(out)-4000:]
	}
	return e.cmd + ": " + e.err.Error() + "\n" + out
}

// Gates of a test lab.
const (
	gateVM   = "vm"   // the gate's SD image booted as an arm64 VM
	gateHost = "host" // kiln gate serve in the lab's namespace
)

// startLab runs the gate for the test profile in DHCP mode `mode`: its own
// image as a VM, or `kiln gate serve` on the host side.
func startLab(t *testing.T, ctx context.Context, mode, gate string) (*rehearse.Lab, *plan.Plan) {
	t.Helper()
	return startLabFor(t, ctx, testProfile, mode, gate)
}

// startLabFor is startLab on another test profile's lab.
func startLabFor(t *testing.T, ctx context.Context, profile, mode, gate string) (*rehearse.Lab, *plan.Plan) {
	t.Helper()
	b := buildOf(t, profile)
	out := outputDir(t)
	o := rehearse.Options{
		Plan: b.plan, Profile: b.profile, Bundle: b.bundle, Kiln: b.kiln, Out: out, Mode: mode, Accel: accel,
	}
	if gate == gateVM {
		o.GateImage = filepath.Join(b.out, b.plan.Gate.Name+".img")
	}
	l, err := rehearse.Start(ctx, o)
	if err != nil {
		t.Fatalf("rehearsal lab: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("lab state at failure:\n%s", l.Net.Diagnose(40))
			t.Logf("gate log: %s", filepath.Join(out, "gate.log"))
		}
		l.Close()
	})
	return l, b.plan
}

func machine(t *testing.T, p *plan.Plan, name string) plan.Machine {
	t.Helper()
	m, ok := p.Machine(name)
	if !ok {
		t.Fatalf("no machine %s in %s", name, testProfile)
	}
	return *m
}

// TestInstallBIOSProxy is scenario A: SeaBIOS, the gate in proxy mode
// beside a dnsmasq ISP box — the gate is its own SD image booted as an
// arm64 VM, so nothing on the host serves the netboot. The server VM has
// two disks of the same size; the profile's disk is the second, the first
// holds an ext4 file system with a file and must come out byte-for-byte
// unchanged. The gate's status page must then show the machine installed.
func TestInstallBIOSProxy(t *testing.T) {
	requireLab(t)
	ctx := testContext(t, machineDeadline)
	l, p := startLab(t, ctx, profiles.DHCPProxy, gateVM)
	t.Logf("gate VM serving after %s (kernel boot=%ss): %s", l.Gate.Serving, l.Gate.Kernel, l.Gate.Line)
	m := machine(t, p, "node-a")
	cfg := lab.ConfigFor(p.Lab, m)
	other := ext4Disk(t, ctx, filepath.Join(l.Net.OutDir(), "other.img"), int64(m.Disks[0].Size))
	before := sha256File(t, other)
	cfg.Disks = append([]lab.Disk{{Name: "other", Serial: "KILN-A-OTHER", Path: other}}, cfg.Disks...)

	r, vm := l.InstallUp(ctx, m, cfg)
	if r.Err == nil {
		checkK3sStandin(t, ctx, l, p, m, r)
		r = l.PowerCycle(ctx, r, cfg, vm)
	}
	t.Logf("%s: install %s, role OS %s, power-cycled to disk in %s, %d boots: %s",
		m.Name, r.Install, r.Booted, r.Reboot, r.Boots, r.Detail)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if after := sha256File(t, other); after != before {
		t.Errorf("the disk kiln was not asked to touch changed: sha256 %s before, %s after", before, after)
	}
	checkGateStatus(t, l, m.Name, "installed")
	checkSecretsOnDisk(t, filepath.Join(l.Net.OutDir(), cfg.Name+"-"+m.Disks[0].Name+".img"), m.Disks[0])
}

// checkK3sStandin waits for m's health report: k3s, as the lab's
// labelled stand-in (fetched, verified and baked in by kiln's real code),
// ok with its config, token, airgap images and GitOps manifests checked,
// and a verdict of STAND-IN, never VERIFIED.
func checkK3sStandin(t *testing.T, ctx context.Context, l *rehearse.Lab, p *plan.Plan, m plan.Machine, r rehearse.Result) {
	t.Helper()
	// Reports come every two minutes or so (HealthInterval after the
	// last one ends): a few chances even on a slow machine.
	hctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	var rows []rehearse.Row
	err := l.WaitHealth(hctx, []string{m.Name}, time.Time{}, rehearse.ServicesHealthy(p, m), func(_ string, h *httpd.HealthStatus) {
		rows = rehearse.Rows(m, h, h.At.Sub(r.Started))
	})
	if err != nil {
		t.Errorf("%s's health report: %v", m.Name, err)
		return
	}
	rehearse.Table(tlog{t}, rows)
	if len(rows) != 1 || rows[0].Service != plan.ServiceK3s || rows[0].Verdict != httpd.VerdictStandIn || !strings.Contains(rows[0].Detail, "STAND-IN") {
		t.Errorf("%s: want one k3s row, verdict STAND-IN: %+v", m.Name, rows)
	}
}

// checkSecretsOnDisk reads the installed state partition with debugfs
// (Debian e2fsprogs, an independent reader): the machine's key is there,
// root-only, in a root-only directory, and the first boot did not open
// them up.
func checkSecretsOnDisk(t *testing.T, img string, d plan.Disk) {
	t.Helper()
	hosttooltest.Need(t, "debugfs")
	var state *plan.Partition
	for i, p := range d.Layout.Partitions {
		if p.Content == plan.ContentState {
			state = &d.Layout.Partitions[i]
		}
	}
	if state == nil {
		t.Fatalf("disk %s has no state partition", d.Name)
	}
	fs := fmt.Sprintf("%s?offset=%d", img, state.Start)
	for path, mode := range map[string]string{
		"/etc/upper/kiln/secrets":             "0700",
		"/etc/upper/kiln/secrets/machine.key": "0600",
		"/etc/upper/kiln/tls/machine.pem":     "0644",
	} {
		out := tool(t, "debugfs", "-R", "stat "+path, fs)
		if !regexp.MustCompile(`Mode:\s+`+mode+`\b`).MatchString(out) || !regexp.MustCompile(`User:\s+0\s+Group:\s+0\b`).MatchString(out) {
			t.Errorf("%s on the installed state partition: want mode %s, owned by root:\n%s", path, mode, out)
		}
	}
	t.Logf("secrets on %s's state partition: root-only (debugfs)", d.Name)
}

// checkGateStatus reads the gate's /status.json from inside the lab, as a
// machine of the LAN would, and wants machine in state.
func checkGateStatus(t *testing.T, l *rehearse.Lab, machine, state string) {
	t.Helper()
	st := gateStatus(t, l)
	for _, m := range st.Machines {
		if m.Name == machine {
			if m.State != state {
				t.Errorf("gate status page: %s is %q, want %q", machine, m.State, state)
			}
			t.Logf("gate status: %s %s; gate kiln RSS %d KiB, %d of %d MiB used", machine, m.State,
				st.Gate.KilnRSSBytes>>10, st.Gate.MemUsedBytes>>20, st.Gate.MemTotalBytes>>20)
			return
		}
	}
	t.Errorf("gate status page has no machine %s", machine)
}

// gateStatus reads the gate's /status.json across the lab LAN.
func gateStatus(t *testing.T, l *rehearse.Lab) httpd.Status {
	t.Helper()
	body, err := l.Net.Get(l.StatusURL())
	if err != nil {
		t.Fatalf("gate status: %v", err)
	}
	var st httpd.Status
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("gate status.json: %v", err)
	}
	return st
}

// TestInstallUEFIFull is scenario B: OVMF, the gate as the only DHCP
// server (full mode), one disk. The installer puts the disk first in the
// firmware's boot order (installer/efiboot), so the power-cycle goes
// straight to it; then the machine is re-armed and must reinstall by the
// way a real UEFI machine would: its first power-on still boots its disk,
// its OS hears from the gate and makes its next boot a netboot, and that
// power-on installs it again.
func TestInstallUEFIFull(t *testing.T) {
	requireLab(t)
	ctx := testContext(t, machineDeadline)
	l, p := startLab(t, ctx, profiles.DHCPFull, gateHost)
	m := machine(t, p, "node-b")
	cfg := lab.ConfigFor(p.Lab, m)
	r, vm := l.InstallUp(ctx, m, cfg)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	hw := vm.Hardware()
	r = l.PowerCycle(ctx, r, cfg, vm)
	t.Logf("%s: install %s, role OS %s, power-cycled to disk in %s, %d boots: %s",
		m.Name, r.Install, r.Booted, r.Reboot, r.Boots, r.Detail)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	reinstallUEFI(t, ctx, l, m, cfg, hw)
}

// netbootNext is the role OS's console line once it has set BootNext.
var netbootNext = regexp.MustCompile(`KILN-NETBOOT-NEXT host=\S+ entry=Boot[0-9A-F]{4}`)

// reinstallUEFI re-arms installed UEFI machine m and follows its
// reinstall: a power-on that boots its disk (PowerOn fails on an install
// start), its OS's BootNext line and the gate's page saying so, then a
// power-on that installs it and boots its new role OS.
func reinstallUEFI(t *testing.T, ctx context.Context, l *rehearse.Lab, m plan.Machine, cfg lab.VMConfig, hw lab.Hardware) {
	t.Helper()
	if err := l.Reinstall(ctx, m.Name); err != nil {
		t.Fatal(err)
	}
	on := cfg
	on.Name = m.Name + "-rearmed"
	start := time.Now()
	vm, err := l.PowerOn(ctx, on, hw)
	if err != nil {
		t.Fatalf("re-armed, first power-on: %v", err)
	}
	defer vm.Stop()
	toDisk := time.Since(start)
	line, err := vm.WaitFor(ctx, netbootNext)
	if err != nil {
		t.Fatalf("re-armed: its OS never made its next boot a netboot: %v\n%s", err, vm.Tail(30))
	}
	toNext := time.Since(start)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
		ms := statusOf(t, l, m.Name)
		if ms.NetbootNext && strings.Contains(ms.Reinstall, "its next power-on installs it") {
			t.Logf("gate status: %s %s: %s", m.Name, ms.State, ms.Reinstall)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gate's page never said %s netboots next: %+v", m.Name, ms)
		}
	}
	vm.Stop()

	again := cfg.On(hw)
	again.Name = m.Name + "-reinstall"
	again.FailOn = append(again.FailOn, installDeadEnd)
	start2 := time.Now()
	vm2, err := startVM(ctx, l, again)
	if err != nil {
		t.Fatal(err)
	}
	defer vm2.Stop()
	if _, err := vm2.WaitFor(ctx, regexp.MustCompile(`KILN-INSTALL-OK \S+`)); err != nil {
		t.Fatalf("re-armed, second power-on: no reinstall: %v\n%s", err, vm2.Tail(30))
	}
	installed := time.Since(start2)
	booted := regexp.MustCompile(`KILN-BOOTED host=` + regexp.QuoteMeta(m.Hostname) + ` `)
	if _, err := vm2.WaitFor(ctx, booted); err != nil {
		t.Fatalf("reinstalled, no role OS: %v\n%s", err, vm2.Tail(30))
	}
	t.Logf("%s re-armed: its power-on booted its disk in %s, its OS set the next boot to the network after %s (%s); "+
		"the next power-on reinstalled it in %s and booted its role OS in %s",
		m.Name, toDisk.Round(100*time.Millisecond), toNext.Round(time.Second), line,
		installed.Round(time.Second), time.Since(start2).Round(time.Second))
}

// statusOf is machine's line of the gate's /status.json.
func statusOf(t *testing.T, l *rehearse.Lab, machine string) httpd.MachineStatus {
	t.Helper()
	for _, m := range gateStatus(t, l).Machines {
		if m.Name == machine {
			return m
		}
	}
	t.Fatalf("gate status page has no machine %s", machine)
	return httpd.MachineStatus{}
}

// TestInstallRefusesAmbiguousDisk is scenario C: two disks answer to the
// profile's serial. The installer must refuse before writing anything.
func TestInstallRefusesAmbiguousDisk(t *testing.T) {
	requireLab(t)
	ctx := testContext(t, machineDeadline)
	l, p := startLab(t, ctx, profiles.DHCPProxy, gateHost)
	m := machine(t, p, "node-c")
	cfg := lab.ConfigFor(p.Lab, m)
	twin := cfg.Disks[0]
	twin.Name = "twin"
	cfg.Disks = append(cfg.Disks, twin)
	cfg.FailOn = []*regexp.Regexp{regexp.MustCompile(`KILN-INSTALL-OK`)}
	cfg.MaxBoots = 1

	vm, err := l.Net.NewVM(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer vm.Stop()
	line, err := vm.WaitFor(ctx, regexp.MustCompile(`KILN-INSTALL-REFUSED node-c: .*`))
	if err != nil {
		t.Fatalf("no refusal: %v\n%s", err, vm.Tail(40))
	}
	t.Logf("refused: %s", line)
	if !strings.Contains(line, "KILN-C-DUP") {
		t.Errorf("the refusal does not name the ambiguous serial: %s", line)
	}
	vm.Stop()
	for _, d := range vm.DiskPaths() {
		if !allZero(t, d) {
			t.Errorf("disk %s was written although the install was refused", d)
		}
	}
}

// ext4Disk makes a disk image of size bytes holding an ext4 file system
// with one file: what a careless installer would destroy.
func ext4Disk(t *testing.T, ctx context.Context, path string, size int64) string {
	t.Helper()
	tree := t.TempDir()
	if err := os.WriteFile(filepath.Join(tree, "precious.txt"), []byte("family photos\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err == nil {
		err = f.Truncate(size)
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := run(exec.CommandContext(ctx, "mke2fs", "-q", "-F", "-t", "ext4", "-d", tree, path)); err != nil {
		t.Fatal(err)
	}
	return path
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// allZero reads the whole file: a blank disk that stayed blank.
func allZero(t *testing.T, path string) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4<<20)
	for {
		n, err := f.Read(buf)
		for _, b := range buf[:n] {
			if b != 0 {
				return false
			}
		}
		if err == io.EOF {
			return true
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

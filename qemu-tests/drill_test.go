package qemutests

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kilnlab/kiln/image/bundle"
	"github.com/kilnlab/kiln/image/disklayout"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/qemu-tests/lab"
	"github.com/kilnlab/kiln/qemu-tests/rehearse"
)

// The install drill: power cuts (SIGKILL of QEMU, no shutdown) at points
// of an install chosen from the installer's own console lines, some after
// a random delay inside the image write, each followed by a look at what
// the disk holds and what it boots by itself, and by a power-on on the
// lab's network that must end installed and booted with a verified disk.

// Drill knobs: how many cuts (make test runs a handful, make e2e 20) and
// the seed of their points and delays (printed, so a run can be replayed).
const (
	drillCutsEnv = "KILN_DRILL_CUTS"
	drillSeedEnv = "KILN_DRILL_SEED"
	defaultCuts  = 3
	// stepDeadline bounds a power-on after a cut: a reinstall and the
	// role OS's boot take about 1.5 minutes under TCG.
	stepDeadline = 10 * time.Minute
)

// cutPoint is a moment of an install: the cut comes a random time up to
// delay after the first console line matching at.
type cutPoint struct {
	name  string
	at    *regexp.Regexp
	delay time.Duration
}

// cutPoints, in install order. The first one drawn is always the write
// of the root image: the cut a user fears most.
var cutPoints = []cutPoint{
	{"inside the root image write", regexp.MustCompile(`kiln: write-root \S+ \d+/\d+ MiB`), 6 * time.Second},
	{"checks, secrets fetched", regexp.MustCompile(`KILN-INSTALL-START`), 3 * time.Second},
	{"clearing the old boot loader", regexp.MustCompile(`kiln: \S+ cannot boot until the install is complete`), 0},
	{"table written", regexp.MustCompile(`kiln: partitioning`), time.Second},
	{"verifying the root", regexp.MustCompile(`kiln: verifying`), 2 * time.Second},
	{"writing the secrets", regexp.MustCompile(`kiln: writing the machine's secrets`), time.Second},
	{"inside the ESP write", regexp.MustCompile(`kiln: write-esp`), time.Second},
	{"ESP complete, result being sent", regexp.MustCompile(`kiln: \S+ written and read back, its head last`), 0},
	{"reported installed, rebooting", regexp.MustCompile(`KILN-INSTALL-OK`), 2 * time.Second},
}

// canBoot is the installer's line once the disk may boot.
var canBoot = regexp.MustCompile(`its head last: \S+ can boot`)

// Lines that end a look at what a disk boots by itself: SeaBIOS gave up
// on it, or the kernel on it started.
var (
	noBootDevice = regexp.MustCompile(`No bootable device`)
	diskAlone    = regexp.MustCompile(`No bootable device|KILN-BOOTMODE`)
)

// drillRow is one cut's outcome.
type drillRow struct {
	n       int
	point   string
	delay   time.Duration
	atCut   string // what the disk held
	alone   string // what it booted by itself
	outcome string // what the power-on on the network did
	took    time.Duration
}

func TestInstallPowerCut(t *testing.T) {
	requireLab(t)
	cuts, seed := drillKnobs(t)
	rng := rand.New(rand.NewPCG(seed, seed^0x6b696c6e))
	t.Logf("install drill: %d cuts, seed %d (%s=%d replays them)", cuts, seed, drillSeedEnv, seed)
	ctx := testContext(t, time.Duration(cuts)*6*time.Minute+10*time.Minute)
	l, p := startLab(t, ctx, profiles.DHCPProxy, gateHost)
	m := machine(t, p, "node-a")
	cfg := lab.ConfigFor(p.Lab, m)
	disk := m.Disks[0]
	_, bundleDir, _ := kilnAndBundle(t)
	files := drillFiles(t, bundleDir, m)

	var hw *lab.Hardware
	var rows []drillRow
	order := append([]int{0}, rng.Perm(len(cutPoints)-1)...)
	for i := range cuts {
		pt := cutPoints[0]
		if i > 0 {
			pt = cutPoints[1+order[1+(i-1)%(len(order)-1)]]
		}
		row := drillRow{n: i + 1, point: pt.name}
		if pt.delay > 0 {
			row.delay = time.Duration(rng.Int64N(int64(pt.delay)))
		}
		if i > 0 {
			if err := l.Reinstall(ctx, m.Name); err != nil {
				t.Fatal(err)
			}
		}
		var said bool
		var err error
		hw, said, err = cutInstall(ctx, l, cfg, hw, i+1, pt, row.delay)
		if err != nil {
			t.Fatalf("cut %d (%s): %v", i+1, pt.name, err)
		}
		img := hw.Disks[0]
		row.atCut = inspectDisk(t, img, disk, files, said)
		row.alone = bootAlone(t, ctx, l, cfg, *hw, i+1)
		if (row.alone == "boots its kernel") != strings.HasPrefix(row.atCut, "complete") {
			t.Errorf("cut %d: the disk held %q and by itself %s", i+1, row.atCut, row.alone)
		}
		start := time.Now()
		row.outcome, err = powerOnAfterCut(ctx, l, cfg, *hw, m, i+1)
		row.took = time.Since(start)
		if err != nil {
			t.Errorf("cut %d (%s): after the power-on: %v", i+1, pt.name, err)
			rows = append(rows, row)
			break
		}
		if got := inspectDisk(t, img, disk, files, true); got != "complete: root and ESP verified" {
			t.Errorf("cut %d: after the power-on the disk holds %q", i+1, got)
		}
		rows = append(rows, row)
		t.Logf("cut %d: %s (+%s): at the cut %s; by itself %s; powered on: %s in %s",
			row.n, row.point, row.delay.Round(time.Millisecond), row.atCut, row.alone, row.outcome, row.took.Round(time.Second))
	}
	drillTable(t, rows)
	checkGateStatus(t, l, m.Name, "installed")
}

// drillKnobs reads the number of cuts and the seed from the environment.
func drillKnobs(t *testing.T) (int, uint64) {
	cuts := defaultCuts
	if s := os.Getenv(drillCutsEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a number of cuts, at least 1", drillCutsEnv, s)
		}
		cuts = n
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(drillSeedEnv); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: want a number", drillSeedEnv, s)
		}
		seed = n
	}
	return cuts, seed
}

// drillFiles are the bundle's files for m: what its disk must hold.
func drillFiles(t *testing.T, dir string, m plan.Machine) map[string]bundle.File {
	t.Helper()
	man, err := bundle.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	by := man.ByPath()
	out := map[string]bundle.File{}
	for content, path := range map[string]string{plan.ContentESP: bundle.ESP(m.Name), plan.ContentRoot: m.RoleImage} {
		f, ok := by[path]
		if !ok {
			t.Fatalf("bundle has no %s", path)
		}
		out[content] = f
	}
	return out
}

// cutInstall powers the machine on (on hw, or new disks the first time),
// waits for pt plus delay into its install and cuts the power. It says
// whether the installer had said the disk can boot before the cut.
func cutInstall(ctx context.Context, l *rehearse.Lab, cfg lab.VMConfig, hw *lab.Hardware, n int, pt cutPoint, delay time.Duration) (*lab.Hardware, bool, error) {
	c := cfg
	if hw != nil {
		c = cfg.On(*hw)
	}
	c.Name = fmt.Sprintf("%s-cut%02d", cfg.Name, n)
	c.FailOn = append(c.FailOn, installDeadEnd)
	vm, err := startVM(ctx, l, c)
	if err != nil {
		return nil, false, err
	}
	defer vm.Stop()
	ctx, cancel := context.WithTimeout(ctx, stepDeadline)
	defer cancel()
	if _, err := vm.WaitFor(ctx, pt.at); err != nil {
		return nil, false, fmt.Errorf("waiting for %s: %w\n%s", pt.at, err, vm.Tail(20))
	}
	select {
	case <-time.After(delay):
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	vm.Stop() // SIGKILL: the power cut
	serial, err := os.ReadFile(vm.SerialLog())
	if err != nil {
		return nil, false, err
	}
	h := vm.Hardware()
	return &h, canBoot.Match(serial), nil
}

// inspectDisk says what the system disk image holds, by independent
// reads of its bytes: its ESP complete (and then its root must be too:
// a boot loader beside a partial root is the failure this drill hunts)
// or its ESP's head zeroed (nothing a firmware boots). Anything else fails
// the test. said is whether the installer had said the disk can boot.
func inspectDisk(t *testing.T, img string, d plan.Disk, files map[string]bundle.File, said bool) string {
	t.Helper()
	var esp, root plan.Partition
	for _, p := range d.Layout.Partitions {
		switch p.Content {
		case plan.ContentESP:
			esp = p
		case plan.ContentRoot:
			root = p
		}
	}
	sums := hashRegions(t, []region{
		{img, int64(esp.Start), files[plan.ContentESP].Size, "ESP"},
		{img, int64(root.Start), files[plan.ContentRoot].Size, "root"},
	})
	espOK, rootOK := sums[0] == files[plan.ContentESP].SHA256, sums[1] == files[plan.ContentRoot].SHA256
	head := readRange(t, img, int64(esp.Start), disklayout.HeadSize)
	headZero := bytes.Equal(head, make([]byte, len(head)))
	switch {
	case espOK && rootOK:
		return "complete: root and ESP verified"
	case espOK:
		t.Errorf("%s: a complete ESP beside a root that does not verify", img)
		return "complete ESP, PARTIAL ROOT"
	case headZero && said:
		t.Errorf("%s: the installer said the disk could boot, its ESP's head is zero", img)
		return "ESP head zero after can-boot"
	case headZero:
		return fmt.Sprintf("ESP head zero (unbootable), root %s", map[bool]string{true: "complete", false: "partial"}[rootOK])
	default:
		t.Errorf("%s: the ESP is neither complete nor headless", img)
		return "PARTIAL ESP WITH A HEAD"
	}
}

// readRange reads n bytes of file path at off.
func readRange(t *testing.T, path string, off, n int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// bootAlone boots the disk with the machine unplugged from the network
// and its writes thrown away (-snapshot): what would a firmware whose
// netboot fails do with it? "no bootable device" (SeaBIOS went past it)
// or "boots its kernel".
func bootAlone(t *testing.T, ctx context.Context, l *rehearse.Lab, cfg lab.VMConfig, hw lab.Hardware, n int) string {
	t.Helper()
	c := cfg.On(hw)
	c.Name = fmt.Sprintf("%s-cut%02d-alone", cfg.Name, n)
	c.Unplugged = true
	c.ExtraArgs = append(c.ExtraArgs, "-snapshot")
	vm, err := startVM(ctx, l, c)
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Stop()
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	line, err := vm.WaitFor(wctx, diskAlone)
	if err != nil {
		t.Fatalf("cut %d: the disk by itself: %v\n%s", n, err, vm.Tail(20))
	}
	if noBootDevice.MatchString(line) {
		return "no bootable device"
	}
	return "boots its kernel"
}

// powerOnAfterCut powers the machine on, on the lab network, and waits
// until its role OS reports booted: after a cut mid-install the gate
// installs it again; after a cut once installed it boots its disk.
func powerOnAfterCut(ctx context.Context, l *rehearse.Lab, cfg lab.VMConfig, hw lab.Hardware, m plan.Machine, n int) (string, error) {
	c := cfg.On(hw)
	c.Name = fmt.Sprintf("%s-cut%02d-on", cfg.Name, n)
	c.FailOn = append(c.FailOn, installDeadEnd)
	vm, err := startVM(ctx, l, c)
	if err != nil {
		return "", err
	}
	defer vm.Stop()
	// Each step is bounded well under the test's deadline, so a machine
	// that hangs fails this cut with its console, not the run at its end.
	ctx, cancel := context.WithTimeout(ctx, stepDeadline)
	defer cancel()
	first, err := vm.WaitFor(ctx, regexp.MustCompile(`KILN-INSTALL-START|KILN-BOOTMODE`))
	if err != nil {
		return "", fmt.Errorf("%w\n%s", err, vm.Tail(20))
	}
	outcome := "booted its disk"
	if strings.Contains(first, "KILN-INSTALL-START") {
		if _, err := vm.WaitFor(ctx, regexp.MustCompile(`KILN-INSTALL-OK`)); err != nil {
			return "", fmt.Errorf("reinstall: %w\n%s", err, vm.Tail(20))
		}
		outcome = "installed again"
	}
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`KILN-BOOTED host=`+regexp.QuoteMeta(m.Hostname))); err != nil {
		return "", fmt.Errorf("role OS: %w\n%s", err, vm.Tail(20))
	}
	return outcome + ", role OS booted", nil
}

// drillTable prints the rows for the closing note.
func drillTable(t *testing.T, rows []drillRow) {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-3s %-32s %-8s %-44s %-20s %-34s %s\n", "#", "cut", "delay", "disk at the cut", "disk by itself", "powered on again", "took")
	for _, r := range rows {
		fmt.Fprintf(&b, "%-3d %-32s %-8s %-44s %-20s %-34s %s\n", r.n, r.point, r.delay.Round(time.Millisecond), r.atCut, r.alone, r.outcome, r.took.Round(time.Second))
	}
	t.Log(b.String())
}

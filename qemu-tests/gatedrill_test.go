package qemutests

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kilnlab/kiln/image/gateimg"
	"github.com/kilnlab/kiln/image/hosttool/hosttooltest"
	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/pxe/state"
	"github.com/kilnlab/kiln/qemu-tests/lab"
)

// TestGatePowerCut is the gate drill: the gate VM (its own SD image,
// proxy mode beside the ISP box) loses its power while a server streams
// its root image from it, and again as the server is about to report
// success. Each time, read from its card while it is off, /perm holds
// only whole state records in states the state machine allows; powered
// on again from that card, the gate serves the same install: the
// server's download resumes where it broke, its result reaches the gate,
// and the server ends installed and booted without anyone's help.
func TestGatePowerCut(t *testing.T) {
	requireLab(t)
	hosttooltest.Need(t, "e2fsck", "debugfs")
	ctx := testContext(t, machineDeadline)
	l, p := startLab(t, ctx, profiles.DHCPProxy, gateVM)
	t.Logf("gate VM serving after %s", l.Gate.Serving.Round(time.Second))
	m := machine(t, p, "node-a")
	cfg := lab.ConfigFor(p.Lab, m)
	cfg.Name = m.Name + "-gatecut"
	cfg.FailOn = append(cfg.FailOn, installDeadEnd)
	vm, err := startVM(ctx, l, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Stop()

	var left []string // temporary files an earlier cut left
	cut := func(at *regexp.Regexp, what string) {
		t.Helper()
		if _, err := vm.WaitFor(ctx, at); err != nil {
			t.Fatalf("waiting for %s: %v\n%s", at, err, vm.Tail(20))
		}
		if err := l.CutGate(); err != nil {
			t.Fatal(err)
		}
		recs, tmps := checkPerm(t, l.GateCard())
		t.Logf("gate cut %s: /perm consistent, %s", what, describeStates(recs))
		for _, name := range left {
			if slices.Contains(tmps, name) {
				t.Errorf("/perm/state/machines/%s: left by the previous cut and still there after the gate's restart", name)
			}
		}
		for _, name := range tmps {
			t.Logf("/perm/state/machines/%s: a write the cut stopped before its rename (the store removes it when it opens)", name)
		}
		left = tmps
		start := time.Now()
		if err := l.PowerOnGate(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("gate powered on again from its card: serving after %s", time.Since(start).Round(time.Second))
	}
	cut(regexp.MustCompile(`kiln: write-root \S+ \d+/\d+ MiB`), "during the root image write")
	cut(regexp.MustCompile(`its head last: \S+ can boot`), "as the server was about to report success")

	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`KILN-INSTALL-OK`)); err != nil {
		t.Fatalf("install after the gate's power cuts: %v\n%s", err, vm.Tail(30))
	}
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`KILN-BOOTED host=`+regexp.QuoteMeta(m.Hostname))); err != nil {
		t.Fatalf("role OS: %v\n%s", err, vm.Tail(30))
	}
	serial, err := os.ReadFile(vm.SerialLog())
	if err != nil {
		t.Fatal(err)
	}
	// One install started: it went on where the cut left it (the
	// download resumed, the result delivered late); more: the gate had
	// to start it again, which is allowed but not what kiln aims for.
	starts, oks := strings.Count(string(serial), "KILN-INSTALL-START"), strings.Count(string(serial), "KILN-INSTALL-OK")
	how := "resumed across both cuts"
	if starts > 1 {
		how = "restarted by the gate"
	}
	t.Logf("the server's installs: %d started, %d finished: the install %s", starts, oks, how)
	checkGateStatus(t, l, m.Name, state.Installed)
}

// checkPerm reads the gate's /perm from its card (the VM off): its
// journal replayed by e2fsck on a copy, as the gate's kernel will at the
// next mount, the file system must be clean, and every machine's state
// record whole JSON in a state the state machine allows. A cut between a
// write and its rename leaves a temporary file, never read as state and
// removed by the store when the gate starts: checkPerm returns their
// names beside the records, and fails on any other file.
func checkPerm(t *testing.T, card string) ([]state.Record, []string) {
	t.Helper()
	dir := t.TempDir()
	perm := filepath.Join(dir, "perm.img")
	tool(t, "dd", "if="+card, "of="+perm, "bs=1M", fmt.Sprintf("skip=%d", gateimg.PermStart>>20),
		fmt.Sprintf("count=%d", gateimg.PermSize>>20), "status=none")
	// -p replays the journal and fixes what is safe; exit 1 means it
	// did (the replay), anything above is damage.
	if out, err := exec.Command("e2fsck", "-fp", perm).CombinedOutput(); err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() > 1 {
			t.Fatalf("e2fsck of /perm after the cut: %v\n%s", err, out)
		}
	}
	tool(t, "e2fsck", "-fn", perm)
	states := filepath.Join(dir, "machines")
	tool(t, "debugfs", "-R", "rdump /state/machines "+dir, perm)
	ents, err := os.ReadDir(states)
	if err != nil {
		t.Fatal(err)
	}
	var recs []state.Record
	var tmps []string
	allowed := []string{state.Install, state.Installing, state.Installed, state.Failed}
	for _, e := range ents {
		name := e.Name()
		if name == ".lock" {
			continue
		}
		if tmp, _ := filepath.Match(".*.json.tmp*", name); tmp {
			tmps = append(tmps, name)
			continue
		}
		if filepath.Ext(name) != ".json" {
			t.Errorf("/perm/state/machines/%s: not a state record", name)
			continue
		}
		b, err := os.ReadFile(filepath.Join(states, name))
		if err != nil {
			t.Fatal(err)
		}
		var r state.Record
		if err := json.Unmarshal(b, &r); err != nil {
			t.Errorf("/perm/state/machines/%s: not whole JSON after the cut: %v", name, err)
			continue
		}
		if !slices.Contains(allowed, r.State) {
			t.Errorf("/perm/state/machines/%s: state %q", name, r.State)
		}
		recs = append(recs, r)
	}
	return recs, tmps
}

func describeStates(recs []state.Record) string {
	var s []string
	for _, r := range recs {
		d := r.Machine + " " + r.State
		if r.Progress != nil {
			d += " (" + r.Progress.Phase + ")"
		}
		s = append(s, d)
	}
	if len(s) == 0 {
		return "no machine recorded"
	}
	return strings.Join(s, ", ")
}

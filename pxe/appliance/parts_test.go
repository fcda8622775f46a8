package appliance

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPartUUIDArg(t *testing.T) {
	for _, tc := range []struct {
		cmdline, key, want string
		err                bool
	}{
		{"console=ttyS1 kiln.perm=PARTUUID=5EED0001-02 kiln.payload=PARTUUID=5eed0001-03", "kiln.payload", "5eed0001-03", false},
		{"console=ttyS1 kiln.perm=PARTUUID=5EED0001-02 kiln.payload=PARTUUID=5eed0001-03\n", "kiln.perm", "5eed0001-02", false},
		{"console=ttyS1", "kiln.perm", "", true},
		{"kiln.perm=/dev/mmcblk0p2", "kiln.perm", "", true},
		{"kiln.perm=PARTUUID=", "kiln.perm", "", true},
		{"xkiln.perm=PARTUUID=1-2", "kiln.perm", "", true},
	} {
		got, err := partUUIDArg(tc.cmdline, tc.key)
		if got != tc.want || (err != nil) != tc.err || (err != nil && !errors.Is(err, ErrCmdline)) {
			t.Errorf("partUUIDArg(%q, %s) = %q, %v; want %q, error %v", tc.cmdline, tc.key, got, err, tc.want, tc.err)
		}
	}
}

func TestParseUevent(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uevent
		err  bool
	}{
		{"MAJOR=179\nMINOR=2\nDEVNAME=mmcblk0p2\nDEVTYPE=partition\nDISKSEQ=9\nPARTN=2\n",
			uevent{Major: 179, Minor: 2, DevName: "mmcblk0p2", DevType: "partition", PartN: 2}, false},
		{"MAJOR=259\nMINOR=1\nDEVNAME=nvme0n1p1\nDEVTYPE=partition\nPARTN=1\nPARTUUID=ABCD-01\n",
			uevent{Major: 259, Minor: 1, DevName: "nvme0n1p1", DevType: "partition", PartN: 1, PartUUID: "abcd-01"}, false},
		{"MAJOR=x\nDEVNAME=vda\n", uevent{}, true},
		{"MAJOR=1\n", uevent{}, true},
		{"DEVNAME=../../etc\n", uevent{}, true},
	} {
		got, err := parseUevent(strings.NewReader(tc.in))
		if (err != nil) != tc.err {
			t.Errorf("parseUevent(%q): %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if !tc.err {
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("parseUevent(%q) (-want +got):\n%s", tc.in, diff)
			}
		}
	}
}

func TestFindPartition(t *testing.T) {
	for _, tc := range []struct {
		name     string
		setup    func(t *testing.T, root string)
		partuuid string
		want     string
	}{
		{"mbr", nil, fmt.Sprintf("%08x-02", testSig), "vda2"},
		{"mbr upper case", nil, fmt.Sprintf("%08X-03", testSig), "vda3"},
		{"other signature", nil, "12345678-02", ""},
		{"no such partition", nil, fmt.Sprintf("%08x-04", testSig), ""},
		{"uevent PARTUUID (Linux 6.11+)", func(t *testing.T, root string) {
			p := filepath.Join(root, "sys/class/block/vda1/uevent")
			if err := os.WriteFile(p, []byte("MAJOR=254\nMINOR=1\nDEVNAME=vda1\nDEVTYPE=partition\nPARTN=1\nPARTUUID=0ddba11-cafe\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "0DDBA11-CAFE", "vda1"},
		{"gpt's protective mbr", func(t *testing.T, root string) {
			b := mbr(testSig)
			b[446+4] = 0xee
			if err := os.WriteFile(filepath.Join(root, "dev/vda"), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}, fmt.Sprintf("%08x-02", testSig), ""},
		{"no boot signature", func(t *testing.T, root string) {
			if err := os.WriteFile(filepath.Join(root, "dev/vda"), make([]byte, 512), 0o644); err != nil {
				t.Fatal(err)
			}
		}, fmt.Sprintf("%08x-02", testSig), ""},
		{"disk node made from its uevent (empty here: no table)", func(t *testing.T, root string) {
			os.Remove(filepath.Join(root, "dev/vda"))
		}, fmt.Sprintf("%08x-02", testSig), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeGate(t)
			if tc.setup != nil {
				tc.setup(t, root)
			}
			sys := newFakeSys()
			got, err := blockFinder{root: root, sys: sys}.find(tc.partuuid)
			if tc.want == "" {
				if !errors.Is(err, ErrNotFound) {
					t.Errorf("find = %q, %v; want ErrNotFound", got, err)
				}
				return
			}
			if err != nil || got != filepath.Join(root, "dev", tc.want) {
				t.Errorf("find = %q, %v; want dev/%s", got, err, tc.want)
			}
			if len(sys.mknods) != 1 || !strings.HasPrefix(sys.mknods[0], tc.want+" 254:") {
				t.Errorf("mknod %v, want %s's node made", sys.mknods, tc.want)
			}
		})
	}
}

func TestClockNeverBelowFloor(t *testing.T) {
	sys := newFakeSys()
	c := clock{sys: sys}
	if stepped, err := c.raise(testBuild); !stepped || err != nil {
		t.Fatalf("raise from 1970: %v, %v", stepped, err)
	}
	// An older floor (a /perm/clock from before a reflash) changes nothing.
	if stepped, err := c.raise(testBuild.Add(-time.Hour)); stepped || err != nil || !c.floor.Equal(testBuild) {
		t.Errorf("raise to an older time: %v, %v, floor %v", stepped, err, c.floor)
	}
	if err := c.step(testBuild.Add(-time.Second)); !errors.Is(err, ErrBelowFloor) {
		t.Errorf("step below the floor: %v", err)
	}
	if err := c.step(testBuild.Add(time.Hour)); err != nil {
		t.Errorf("step forward: %v", err)
	}
	// Stepping back is fine while above the floor (a fast RTC-less clock).
	if err := c.step(testBuild.Add(time.Minute)); err != nil {
		t.Errorf("step back above the floor: %v", err)
	}
	want := []time.Time{testBuild, testBuild.Add(time.Hour), testBuild.Add(time.Minute)}
	if diff := cmp.Diff(want, sys.sets); diff != "" {
		t.Errorf("clock sets (-want +got):\n%s", diff)
	}
}

func TestClockFile(t *testing.T) {
	dir := t.TempDir()
	if got, err := readClockFile(dir); err != nil || !got.IsZero() {
		t.Errorf("first boot: %v, %v; want zero time", got, err)
	}
	if err := writeClockFile(dir, testBuild); err != nil {
		t.Fatal(err)
	}
	if got, err := readClockFile(dir); err != nil || !got.Equal(testBuild) {
		t.Errorf("read back %v, %v", got, err)
	}
	os.WriteFile(filepath.Join(dir, clockFile), []byte("\x00\x00"), 0o644)
	if _, err := readClockFile(dir); err == nil {
		t.Error("a torn file read without error")
	}
}

func TestSyncOnce(t *testing.T) {
	for _, tc := range []struct {
		name    string
		off     []time.Duration
		synced  bool
		stepped bool
	}{
		{"forward", []time.Duration{3 * time.Hour}, true, true},
		{"small offset: not stepped", []time.Duration{20 * time.Millisecond}, true, false},
		{"back above the floor", []time.Duration{-time.Hour}, true, true},
		{"below the floor: refused", []time.Duration{-48 * time.Hour}, false, false},
		{"no answer", nil, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			os.MkdirAll(filepath.Join(root, PermDir), 0o755)
			sys := newFakeSys()
			sys.now = testBuild.Add(24 * time.Hour)
			tm := &fakeTime{offs: tc.off}
			a, err := New(Config{Root: root, System: sys, Time: tm, Log: newDiscardLog()})
			if err != nil {
				t.Fatal(err)
			}
			a.clock.floor = testBuild
			if got := a.syncOnce(t.Context(), []string{"ntp.example.net"}); got != tc.synced {
				t.Errorf("syncOnce = %v, want %v", got, tc.synced)
			}
			if (tm.synced == 1) != tc.synced || (len(sys.sets) == 1) != tc.stepped {
				t.Errorf("Synced calls %d, clock sets %v", tm.synced, sys.sets)
			}
			if tc.stepped {
				if c, err := readClockFile(filepath.Join(root, PermDir)); err != nil || !c.Equal(sys.now) {
					t.Errorf("/perm/clock %v, %v after a step to %v", c, err, sys.now)
				}
			}
		})
	}
}

// Without modules.dep (a kernel with its drivers built in) the modules
// phase goes on; with one whose modules all fail, it fails.
func TestModulesPhase(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		n    int
		ok   bool
	}{
		{"none to load", &os.PathError{Op: "open", Path: "/lib/modules/6.1.0-50-arm64/modules.dep", Err: os.ErrNotExist}, 0, true},
		{"some failed", errors.New("vc4: finit_module: ENOENT"), 5, true},
		{"all failed", errors.New("squashfs: finit_module: ENOEXEC"), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := &modSys{fakeSys: newFakeSys(), n: tc.n, err: tc.err}
			a, err := New(Config{Root: t.TempDir(), System: sys, Log: newDiscardLog()})
			if err != nil {
				t.Fatal(err)
			}
			if err := a.loadModules(t.Context()); (err == nil) != tc.ok {
				t.Errorf("loadModules: %v, want ok %v", err, tc.ok)
			}
		})
	}
}

type modSys struct {
	*fakeSys
	n   int
	err error
}

func (m *modSys) LoadModules(*slog.Logger) (int, error) { return m.n, m.err }

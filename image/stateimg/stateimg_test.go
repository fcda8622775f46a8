package stateimg

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnlab/kiln/image/hosttool/hosttooltest"
)

const testUUID = "3a7b1c2d-4e5f-5a6b-8c7d-9e0f1a2b3c4d"

// etcTree writes a machine's /etc files the way the build would.
func etcTree(t *testing.T) string {
	dir := t.TempDir()
	for path, c := range map[string]struct {
		text string
		mode os.FileMode
	}{
		"hostname":                        {"ceph-1\n", 0o644},
		"systemd/network/10-kiln.network": {"[Match]\nMACAddress=52:54:00:00:00:11\n\n[Network]\nAddress=192.168.1.11/24\n", 0o644},
		"kiln/machine.json":               {`{"name":"ceph-1"}` + "\n", 0o600},
	} {
		p := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c.text), c.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/usr/share/zoneinfo/UTC", filepath.Join(dir, "localtime")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func debugfs(t *testing.T, img, req string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", req, img).Output()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v", req, err)
	}
	return string(out)
}

func TestBuild(t *testing.T) {
	hosttooltest.Need(t, append(Tools(), "e2fsck", "dumpe2fs")...)
	o := Options{Out: filepath.Join(t.TempDir(), "state.img"), Tree: etcTree(t), UUID: testUUID}
	if err := Build(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(o.Out); err != nil || fi.Size() != DefaultSize {
		t.Fatalf("image: %v %v", fi, err)
	}
	if out, err := exec.Command("e2fsck", "-fn", o.Out).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn: %v\n%s", err, out)
	}
	hdr, err := exec.Command("dumpe2fs", "-h", o.Out).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Filesystem UUID:          " + testUUID, "Filesystem volume name:   kiln-state",
		"Block size:               4096", "Inode size:	          256", "extent", "Filesystem created:       Mon Jan  1 00:00:00 2024"} {
		if !strings.Contains(string(hdr), want) {
			t.Errorf("dumpe2fs -h lacks %q", want)
		}
	}

	if got := debugfs(t, o.Out, "cat /etc/upper/hostname"); got != "ceph-1\n" {
		t.Errorf("hostname = %q", got)
	}
	if got := debugfs(t, o.Out, "cat /etc/upper/systemd/network/10-kiln.network"); !strings.Contains(got, "Address=192.168.1.11/24") {
		t.Errorf("10-kiln.network = %q", got)
	}
	for _, dir := range []string{EtcWork, VarUpper, VarWork} {
		ls := debugfs(t, o.Out, "ls -p /"+dir)
		if n := strings.Count(strings.TrimSpace(ls), "\n") + 1; n != 2 { // . and ..
			t.Errorf("%s is not an empty directory:\n%s", dir, ls)
		}
	}
	for path, want := range map[string]string{
		"/etc/upper/kiln/machine.json": "Mode:  0600",
		"/etc/upper/hostname":          "Mode:  0644",
		"/etc/upper/localtime":         "Type: symlink",
		"/var/work":                    "Mode:  0755",
	} {
		st := debugfs(t, o.Out, "stat "+path)
		for _, w := range []string{want, "User:     0   Group:     0", "ctime: 0x65920080:00000000"} {
			if !strings.Contains(st, w) {
				t.Errorf("stat %s lacks %q:\n%s", path, w, st)
			}
		}
	}
}

// TestReproducible builds from two separately written copies of the same
// tree, a second apart, and expects identical images.
func TestReproducible(t *testing.T) {
	hosttooltest.Need(t, Tools()...)
	var imgs [2][]byte
	for i := range imgs {
		if i == 1 {
			time.Sleep(1100 * time.Millisecond)
		}
		o := Options{Out: filepath.Join(t.TempDir(), "state.img"), Tree: etcTree(t), UUID: testUUID}
		if err := Build(context.Background(), o); err != nil {
			t.Fatal(err)
		}
		var err error
		if imgs[i], err = os.ReadFile(o.Out); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(imgs[0], imgs[1]) {
		t.Error("two builds of the same inputs differ")
	}
}

func TestRejects(t *testing.T) {
	hosttooltest.Need(t, Tools()...)
	dir := t.TempDir()
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, `a"b`), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]Options{
		"no uuid":   {Out: filepath.Join(dir, "a.img")},
		"bad uuid":  {Out: filepath.Join(dir, "a.img"), UUID: "x"},
		"tiny":      {Out: filepath.Join(dir, "a.img"), UUID: testUUID, Size: 1 << 20},
		"odd size":  {Out: filepath.Join(dir, "a.img"), UUID: testUUID, Size: DefaultSize + 512},
		"bad names": {Out: filepath.Join(dir, "a.img"), UUID: testUUID, Tree: bad},
	} {
		if err := Build(context.Background(), o); err == nil {
			t.Errorf("%s: Build succeeded", name)
		}
	}
	o := Options{Out: filepath.Join(dir, "a.img"), UUID: testUUID, Tree: bad}
	if err := Build(context.Background(), o); !errors.Is(err, ErrUnsupportedFile) {
		t.Errorf("quote in a name: %v", err)
	}
}

package appliance

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestLogRotatesWhileRunning: a gate flooded with requests logs for long
// without a reboot; its log on /perm must stay within twice logMax, the
// newest lines kept.
func TestLogRotatesWhileRunning(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logs", "gate.log")
	var l lateFile
	fmt.Fprintf(&l, "early line\n")
	if err := l.open(path); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	line := bytes.Repeat([]byte("x"), 64<<10-1)
	line = append(line, '\n')
	const n = 3 * logMax / (64 << 10) // three logs' worth
	for i := range n {
		if _, err := l.Write(line); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	fmt.Fprintf(&l, "last line\n")
	var total int64
	for _, p := range []string{path, path + ".1"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > logMax {
			t.Errorf("%s: %d bytes, more than %d", p, fi.Size(), logMax)
		}
		total += fi.Size()
	}
	if total < logMax {
		t.Errorf("the two logs hold %d bytes: rotation dropped more than the oldest", total)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(b, []byte("last line\n")) {
		t.Errorf("gate.log does not end with the newest line")
	}
}

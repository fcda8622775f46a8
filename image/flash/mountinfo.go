package flash

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// mount is one line of /proc/self/mountinfo.
type mount struct {
	dev    DevNum
	point  string // mount point, unescaped
	source string // mount source, unescaped (/dev/sdb1, overlay, ...)
}

func readMountinfo(path string) ([]mount, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mounts: %w", err)
	}
	return parseMountinfo(b)
}

// parseMountinfo reads proc(5)'s format: ID PARENT MAJ:MIN ROOT POINT
// OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS.
func parseMountinfo(b []byte) ([]mount, error) {
	var out []mount
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 6 || sep < 0 || sep+2 >= len(f) {
			return nil, fmt.Errorf("mountinfo line %d: malformed", n)
		}
		d, err := parseDevNum(f[2])
		if err != nil {
			return nil, fmt.Errorf("mountinfo line %d: %w", n, err)
		}
		out = append(out, mount{dev: d, point: unescape(f[4]), source: unescape(f[sep+2])})
	}
	return out, sc.Err()
}

// swap is one line of /proc/swaps.
type swap struct {
	path string
	file bool // a swap file rather than a partition
}

func readSwaps(path string) ([]swap, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil // a kernel without swap support
	}
	if err != nil {
		return nil, fmt.Errorf("swaps: %w", err)
	}
	var out []swap
	for i, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 2 {
			continue // header
		}
		out = append(out, swap{path: unescape(f[0]), file: f[1] == "file"})
	}
	return out, nil
}

// mountOf is the mount whose point is the longest prefix of path.
func mountOf(mounts []mount, path string) (mount, bool) {
	var best mount
	found := false
	for _, m := range mounts {
		p := strings.TrimSuffix(m.point, "/") + "/"
		if (path == m.point || strings.HasPrefix(path, p)) && (!found || len(m.point) >= len(best.point)) {
			best, found = m, true
		}
	}
	return best, found
}

// unescape undoes the kernel's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

package httpd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// GateStats is what the status page says about the gate itself; the bench
// reads it from status.json to report the appliance's idle footprint.
type GateStats struct {
	// UptimeS is the gate's uptime (/proc/uptime), seconds.
	UptimeS float64 `json:"uptime_s"`
	// KilnRSSBytes is this process's resident set (VmRSS of
	// /proc/self/status).
	KilnRSSBytes uint64 `json:"kiln_rss_bytes"`
	// MemUsedBytes is MemTotal - MemAvailable of /proc/meminfo: what the
	// whole gate uses, page cache that can be dropped not counted.
	MemUsedBytes  uint64 `json:"mem_used_bytes"`
	MemTotalBytes uint64 `json:"mem_total_bytes"`
	// StateFSUsedBytes and StateFSTotalBytes are the file system that
	// holds the machine states (the gate's /perm, its log beside them):
	// a long-running gate must not fill it.
	StateFSUsedBytes  uint64 `json:"state_fs_used_bytes"`
	StateFSTotalBytes uint64 `json:"state_fs_total_bytes"`
}

// fsUsage is the used and total bytes of the file system holding dir.
func fsUsage(dir string) (used, total uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	bs := uint64(st.Bsize)
	return (st.Blocks - st.Bfree) * bs, st.Blocks * bs, nil
}

// readGateStats reads GateStats under procRoot ("/proc" on the gate; a
// directory of fixtures in tests). It returns what it could read and the
// first error.
func readGateStats(procRoot string) (GateStats, error) {
	var g GateStats
	var errs []error
	var err error
	if g.UptimeS, err = readProc(procRoot, "uptime", parseUptime); err != nil {
		errs = append(errs, err)
	}
	if g.KilnRSSBytes, err = readProc(procRoot, "self/status", parseVmRSS); err != nil {
		errs = append(errs, err)
	}
	mi, err := readProc(procRoot, "meminfo", parseMeminfo)
	if err != nil {
		errs = append(errs, err)
	}
	g.MemTotalBytes, g.MemUsedBytes = mi.total, mi.total-mi.available
	return g, errors.Join(errs...)
}

func readProc[T any](root, name string, parse func(io.Reader) (T, error)) (T, error) {
	f, err := os.Open(filepath.Join(root, name))
	if err != nil {
		var zero T
		return zero, err
	}
	defer f.Close()
	v, err := parse(f)
	if err != nil {
		return v, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return v, nil
}

// parseUptime reads the first field of /proc/uptime ("12345.67 2345.67").
func parseUptime(r io.Reader) (float64, error) {
	b, err := io.ReadAll(io.LimitReader(r, 256))
	if err != nil {
		return 0, err
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return 0, errors.New("empty")
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("uptime %q: not a number of seconds", fields[0])
	}
	return v, nil
}

// parseVmRSS reads "VmRSS:    1234 kB" of /proc/self/status, in bytes.
func parseVmRSS(r io.Reader) (uint64, error) {
	v, err := kBFields(r, "VmRSS")
	return v["VmRSS"], err
}

type meminfo struct{ total, available uint64 }

// parseMeminfo reads MemTotal and MemAvailable of /proc/meminfo, in bytes.
func parseMeminfo(r io.Reader) (meminfo, error) {
	v, err := kBFields(r, "MemTotal", "MemAvailable")
	m := meminfo{total: v["MemTotal"], available: v["MemAvailable"]}
	if err == nil && m.available > m.total {
		return meminfo{}, fmt.Errorf("MemAvailable %d > MemTotal %d", m.available, m.total)
	}
	return m, err
}

// kBFields reads the "Key:   123 kB" lines named by keys (the format of
// /proc/meminfo and /proc/self/status) and returns them in bytes; every
// key must be present.
func kBFields(r io.Reader, keys ...string) (map[string]uint64, error) {
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = true
	}
	out := map[string]uint64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || !want[key] {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return nil, fmt.Errorf("%s: %q: want \"N kB\"", key, strings.TrimSpace(rest))
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil || n > 1<<53 {
			return nil, fmt.Errorf("%s: %q: not a size", key, f[0])
		}
		out[key] = n << 10
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, k := range keys {
		if _, ok := out[k]; !ok {
			return nil, fmt.Errorf("no %s line", k)
		}
	}
	return out, nil
}

package httpd

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseVmRSS(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     uint64
		err      bool
	}{
		{"status", "Name:\tkiln\nVmHWM:\t  24000 kB\nVmRSS:\t   18432 kB\nThreads:\t8\n", 18432 << 10, false},
		{"zero", "VmRSS:\t0 kB\n", 0, false},
		{"missing", "Name:\tkiln\nVmHWM:\t24000 kB\n", 0, true},
		{"kernel thread has none", "Name:\tkthreadd\nState:\tS (sleeping)\n", 0, true},
		{"no unit", "VmRSS:\t18432\n", 0, true},
		{"wrong unit", "VmRSS:\t18 MB\n", 0, true},
		{"not a number", "VmRSS:\tlots kB\n", 0, true},
		{"negative", "VmRSS:\t-1 kB\n", 0, true},
		{"huge", "VmRSS:\t99999999999999999999 kB\n", 0, true},
		{"prefix is not the key", "VmRSSX:\t5 kB\nVmRSS:\t6 kB\n", 6 << 10, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseVmRSS(strings.NewReader(tc.in))
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if err == nil && got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}

func TestParseMeminfo(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     meminfo
		err      bool
	}{
		{"meminfo", "MemTotal:        3884372 kB\nMemFree:         3523456 kB\nMemAvailable:    3701248 kB\n",
			meminfo{total: 3884372 << 10, available: 3701248 << 10}, false},
		{"order does not matter", "MemAvailable: 1 kB\nMemTotal: 2 kB\n", meminfo{total: 2 << 10, available: 1 << 10}, false},
		{"no MemAvailable (kernel < 3.14)", "MemTotal: 2 kB\nMemFree: 1 kB\n", meminfo{}, true},
		{"no MemTotal", "MemAvailable: 1 kB\n", meminfo{}, true},
		{"available above total", "MemTotal: 1 kB\nMemAvailable: 2 kB\n", meminfo{}, true},
		{"empty", "", meminfo{}, true},
		{"garbage", "MemTotal: x kB\nMemAvailable: 1 kB\n", meminfo{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseMeminfo(strings.NewReader(tc.in))
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if err == nil && got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseUptime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		err  bool
	}{
		{"3725.42 7000.11\n", 3725.42, false},
		{"0.50 0.10", 0.5, false},
		{"", 0, true},
		{"abc 1.0", 0, true},
		{"-3 1", 0, true},
	} {
		got, err := parseUptime(strings.NewReader(tc.in))
		if (err != nil) != tc.err {
			t.Errorf("%q: err = %v, want error %v", tc.in, err, tc.err)
		}
		if err == nil && got != tc.want {
			t.Errorf("%q: got %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestReadGateStats(t *testing.T) {
	got, err := readGateStats(filepath.Join("testdata", "proc"))
	if err != nil {
		t.Fatal(err)
	}
	want := GateStats{
		UptimeS: 3725.42, KilnRSSBytes: 18432 << 10,
		MemTotalBytes: 3884372 << 10, MemUsedBytes: (3884372 - 3701248) << 10,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	// A missing /proc is an error but not a crash: the page still renders.
	if _, err := readGateStats(t.TempDir()); err == nil {
		t.Error("empty proc root: no error")
	}
}

// TestReadGateStatsHere reads this machine's real /proc: the parsers
// must understand the kernel they run on, not only the fixtures.
func TestReadGateStatsHere(t *testing.T) {
	got, err := readGateStats("/proc")
	if err != nil {
		t.Skipf("no Linux /proc here: %v", err)
	}
	if got.KilnRSSBytes == 0 || got.MemTotalBytes == 0 || got.MemUsedBytes == 0 || got.MemUsedBytes > got.MemTotalBytes {
		t.Errorf("implausible: %+v", got)
	}
}

package netboot

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options of a run.
type Options struct {
	Rounds   int   // each figure, each server, this many times, alternating
	TFTPSize int64 // bytes of the TFTP file (64 MiB)
	HTTPSize int64 // bytes of the HTTP file (1 GiB, a role image's size)
	Parallel int   // clients at once in the parallel HTTP figure (8)
	// DHCPClients simulated PXE clients per DHCP round, DHCPConc of
	// them at once.
	DHCPClients, DHCPConc int
	// StormClients netboot at once in the PXE storm (50).
	StormClients int
	// Kiln is the kiln binary whose gate serve the storm runs.
	Kiln string
	// Skip names groups of figures not to run: "tftp", "http", "dhcp",
	// "storm".
	Skip map[string]bool
	Config
	Progress io.Writer // a line per figure and round
}

// Figure is one measured figure: per server, its value in each round
// (MiB/s unless Unit says otherwise).
type Figure struct {
	Name    string
	Servers []string // in the report's order: kiln first
	MiBps   map[string][]float64
	Unit    string
	// LowerBetter: a latency, where kiln's advantage is peer / kiln.
	LowerBetter bool
	Notes       []string
}

// Report is a whole run.
type Report struct {
	Figures []Figure
	// KilnRSS is kiln's HTTP server's resident memory idle and at its
	// peak while serving the HTTP figures.
	KilnRSSIdle, KilnRSSPeak int64
}

const (
	payloadTFTP = "tftp-payload.bin"
	payloadHTTP = "role-image.img"
)

// Run measures every figure but those of o.Skip.
func Run(ctx context.Context, n *Net, o Options) (*Report, error) {
	if err := writeFiles(o); err != nil {
		return nil, err
	}
	r := &Report{}
	for _, g := range []struct {
		name string
		run  func(context.Context, *Net, Options, *Report) error
	}{{"tftp", runTFTP}, {"http", runHTTP}, {"dhcp", runDHCP}, {"storm", runStorm}} {
		if o.Skip[g.name] {
			continue
		}
		if err := g.run(ctx, n, o, r); err != nil {
			return r, err
		}
	}
	return r, nil
}

func runTFTP(ctx context.Context, n *Net, o Options, r *Report) error {
	tftp := TFTPServers()
	if err := startAll(ctx, n, o.Config, tftp); err != nil {
		return err
	}
	defer stopAll(tftp)
	for _, bs := range []int{512, 1468, 65464} {
		name := fmt.Sprintf("TFTP %d MiB, blksize %d", o.TFTPSize>>20, bs)
		if bs == 65464 {
			name = fmt.Sprintf("TFTP %d MiB, blksize asked 65464 (the largest each takes)", o.TFTPSize>>20)
		}
		f, err := measure(ctx, o, name, tftp, func(s *Server) (int64, error) {
			return curl(ctx, n, "--tftp-blksize", strconv.Itoa(bs), s.URL(n, payloadTFTP))
		})
		if bs == 65464 {
			for _, s := range tftp {
				f.Notes = append(f.Notes, s.Name+": "+s.Largest)
			}
		}
		r.Figures = append(r.Figures, f)
		if err != nil {
			return err
		}
	}
	return nil
}

func runHTTP(ctx context.Context, n *Net, o Options, r *Report) error {
	http := HTTPServers()
	if err := startAll(ctx, n, o.Config, http); err != nil {
		return err
	}
	defer stopAll(http)
	kiln := http[0]
	r.KilnRSSIdle, _ = rss(kiln.Pid())
	peak := watchRSS(kiln.Pid())
	one, err := measure(ctx, o, fmt.Sprintf("HTTP %d MiB, one client", o.HTTPSize>>20), http, func(s *Server) (int64, error) {
		return curl(ctx, n, s.URL(n, payloadHTTP))
	})
	r.Figures = append(r.Figures, one)
	if err != nil {
		peak()
		return err
	}
	par, err := measure(ctx, o, fmt.Sprintf("HTTP %d MiB, %d clients at once (aggregate)", o.HTTPSize>>20, o.Parallel), http, func(s *Server) (int64, error) {
		return parallel(o.Parallel, func() (int64, error) { return curl(ctx, n, s.URL(n, payloadHTTP)) })
	})
	r.Figures = append(r.Figures, par)
	r.KilnRSSPeak = peak()
	if err != nil {
		return err
	}
	line, err := lineRate(ctx, n, o)
	r.Figures = append(r.Figures, line)
	return err
}

func runStorm(ctx context.Context, n *Net, o Options, r *Report) error {
	f, err := measureStorm(ctx, n, o)
	r.Figures = append(r.Figures, f)
	return err
}

func runDHCP(ctx context.Context, n *Net, o Options, r *Report) error {
	for _, mode := range []string{ModeFull, ModeProxy} {
		figs, err := measureDHCP(ctx, n, o, mode)
		r.Figures = append(r.Figures, figs...)
		if err != nil {
			return err
		}
	}
	return nil
}

// measure runs get on every server, Rounds times, the order turning each
// round so that no server always goes first (a warm page cache, a busy
// core).
func measure(ctx context.Context, o Options, name string, servers []*Server, get func(*Server) (int64, error)) (Figure, error) {
	f := Figure{Name: name, MiBps: map[string][]float64{}}
	for _, s := range servers {
		f.Servers = append(f.Servers, s.Name)
	}
	for round := range o.Rounds {
		for i := range servers {
			s := servers[(i+round)%len(servers)]
			start := time.Now()
			got, err := get(s)
			d := time.Since(start)
			if err != nil {
				return f, fmt.Errorf("%s, %s, round %d: %w", name, s.Name, round+1, err)
			}
			mibps := float64(got) / (1 << 20) / d.Seconds()
			f.MiBps[s.Name] = append(f.MiBps[s.Name], mibps)
			fmt.Fprintf(o.Progress, "bench: %s: %s round %d: %.1f MiB/s\n", name, s.Name, round+1, mibps)
		}
	}
	return f, nil
}

// curl fetches url in the client namespace into /dev/null and returns
// the bytes it got.
func curl(ctx context.Context, n *Net, args ...string) (int64, error) {
	args = append([]string{"-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download}"}, args...)
	out, err := n.InClient(ctx, "curl", args...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return 0, fmt.Errorf("curl %s: %w: %s", strings.Join(args, " "), err, ee.Stderr)
		}
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
}

// parallel runs k fetches at once and returns the bytes of all.
func parallel(k int, get func() (int64, error)) (int64, error) {
	var wg sync.WaitGroup
	sizes, errs := make([]int64, k), make([]error, k)
	for i := range k {
		wg.Go(func() { sizes[i], errs[i] = get() })
	}
	wg.Wait()
	var total int64
	for i := range k {
		if errs[i] != nil {
			return 0, errs[i]
		}
		total += sizes[i]
	}
	return total, nil
}

// lineRate is the veth's own limit: a plain socket copy of the HTTP
// file's size (this bench's serve-raw and sink), no file, no protocol.
func lineRate(ctx context.Context, n *Net, o Options) (Figure, error) {
	f := Figure{Name: fmt.Sprintf("TCP line rate, %d MiB plain socket copy", o.HTTPSize>>20), Servers: []string{"socket copy"}, MiBps: map[string][]float64{}}
	addr := n.ServerAddr + ":9000"
	srv := n.InServer(ctx, o.Self, "serve-raw", "-addr", addr, "-size", strconv.FormatInt(o.HTTPSize, 10))
	if err := srv.Start(); err != nil {
		return f, err
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	time.Sleep(300 * time.Millisecond)
	for round := range o.Rounds {
		start := time.Now()
		out, err := n.InClient(ctx, o.Self, "sink", "-addr", addr).Output()
		d := time.Since(start)
		if err != nil {
			return f, fmt.Errorf("line rate, round %d: %w", round+1, err)
		}
		got, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
		if err != nil || got != o.HTTPSize {
			return f, fmt.Errorf("line rate, round %d: got %q bytes, want %d", round+1, out, o.HTTPSize)
		}
		mibps := float64(got) / (1 << 20) / d.Seconds()
		f.MiBps["socket copy"] = append(f.MiBps["socket copy"], mibps)
		fmt.Fprintf(o.Progress, "bench: %s: round %d: %.1f MiB/s\n", f.Name, round+1, mibps)
	}
	return f, nil
}

func startAll(ctx context.Context, n *Net, c Config, servers []*Server) error {
	for _, s := range servers {
		if err := s.Start(ctx, n, c); err != nil {
			stopAll(servers)
			return err
		}
	}
	return nil
}

func stopAll(servers []*Server) {
	for _, s := range servers {
		s.Stop()
	}
}

// writeFiles makes the payloads: random bytes (no compression anywhere
// can flatter a server), and the probe.
func writeFiles(o Options) error {
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return err
	}
	for name, size := range map[string]int64{payloadTFTP: o.TFTPSize, payloadHTTP: o.HTTPSize} {
		if err := randomFile(filepath.Join(o.Dir, name), size); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(o.Dir, ProbeFile), []byte("kiln bench\n"), 0o644)
}

// randomFile makes path size random bytes, unless it has that size.
func randomFile(path string, size int64) error {
	if st, err := os.Stat(path); err == nil && st.Size() == size {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	rnd, err := os.Open("/dev/urandom")
	if err != nil {
		f.Close()
		return err
	}
	_, err = io.CopyN(f, rnd, size)
	rnd.Close()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// rss is pid's resident set in bytes.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(string(v)), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// watchRSS samples pid's RSS every 100 ms until the returned function is
// called, which returns the peak.
func watchRSS(pid int) func() int64 {
	var mu sync.Mutex
	var peak int64
	done := make(chan struct{})
	go func() {
		for {
			if v, err := rss(pid); err == nil {
				mu.Lock()
				peak = max(peak, v)
				mu.Unlock()
			}
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return func() int64 {
		close(done)
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

// stats is median, min and max.
func stats(v []float64) (med, lo, hi float64) {
	if len(v) == 0 {
		return 0, 0, 0
	}
	s := slices.Sorted(slices.Values(v))
	med = s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return med, s[0], s[len(s)-1]
}

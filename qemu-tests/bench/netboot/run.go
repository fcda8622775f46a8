package netboot

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
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
	// DHCPClients simulated PXE clients per full-mode DHCP round,
	// ProxyClients per proxyDHCP round, DHCPConc of them at once.
	// Proxy answers are cheap on both sides (nothing written): a round
	// needs ten times the clients to last long enough to time.
	DHCPClients, ProxyClients, DHCPConc int
	// StormClients netboot at once in the PXE storm (50).
	StormClients int
	// Kiln is the kiln binary whose gate serve the storm runs.
	Kiln string
	// Skip names groups of figures not to run, Only the groups to run
	// if it names any (see GroupNames).
	Skip, Only map[string]bool
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

// group is a group of figures that -only and -skip name, and how it runs.
type group struct {
	name string
	run  func(context.Context, *Net, Options, *Report) error
}

// groups are the groups in the report's order. The line rate is a group
// of its own so that it can be measured alone; it is the HTTP figures'
// limit.
func groups() []group {
	return []group{{"tftp", runTFTP}, {"http", runHTTP}, {"line", runLine}, {"dhcp", runDHCP}, {"storm", runStorm}}
}

// GroupNames are the names Options.Skip and Options.Only take.
func GroupNames() []string {
	var names []string
	for _, g := range groups() {
		names = append(names, g.name)
	}
	return names
}

// CheckGroups says whether Skip and Only name only groups there are, so
// that a typo does not run every figure, or none, for an hour.
func (o Options) CheckGroups() error {
	names := GroupNames()
	for _, set := range []map[string]bool{o.Skip, o.Only} {
		for name := range set {
			if !slices.Contains(names, name) {
				return fmt.Errorf("no group of figures %q (groups: %s)", name, strings.Join(names, ", "))
			}
		}
	}
	return nil
}

// runs says whether o runs the group name.
func (o Options) runs(name string) bool {
	return !o.Skip[name] && (len(o.Only) == 0 || o.Only[name])
}

// Run measures every figure of the groups o runs.
func Run(ctx context.Context, n *Net, o Options) (*Report, error) {
	if err := writeFiles(o); err != nil {
		return nil, err
	}
	r := &Report{}
	for _, g := range groups() {
		if !o.runs(g.name) {
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
	return err
}

func runLine(ctx context.Context, n *Net, o Options, r *Report) error {
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

// lineRate is the HTTP figures' limit on this veth: the HTTP file's bytes
// over TCP with no protocol, sent as nginx sends them (sendfile(2) from
// the page cache) and read into 1 MiB and discarded (this bench's
// serve-copy and sink), timed by the receiver from its first dial to the
// last byte. Over one connection it bounds the one-client figure, over
// Parallel at once the aggregate one: on two cores, connections at once
// use both.
func lineRate(ctx context.Context, n *Net, o Options) (Figure, error) {
	f := Figure{Name: fmt.Sprintf("TCP line rate, %d MiB per connection, plain socket copy (the HTTP figures' limit)", o.HTTPSize>>20), MiBps: map[string][]float64{},
		Notes: []string{"sender: sendfile(2) of the HTTP figures' file from the page cache; receiver: 1 MiB reads, discarded; timed in the receiver from its first dial to the last byte (no process start)"}}
	cases := []struct {
		name  string
		conns int
	}{{"1 connection", 1}, {fmt.Sprintf("%d connections at once (aggregate)", o.Parallel), o.Parallel}}
	for _, c := range cases {
		f.Servers = append(f.Servers, c.name)
	}
	addr := n.ServerAddr + ":9000"
	stop, err := startCopy(ctx, n, o, addr)
	if err != nil {
		return f, err
	}
	defer stop()
	for round := range o.Rounds {
		for i := range f.Servers {
			c := cases[(i+round)%len(cases)]
			mibps, err := copyOnce(ctx, n, o, addr, c.conns)
			if err != nil {
				return f, fmt.Errorf("line rate, %s, round %d: %w", c.name, round+1, err)
			}
			f.MiBps[c.name] = append(f.MiBps[c.name], mibps)
			fmt.Fprintf(o.Progress, "bench: line rate, %s: round %d: %.1f MiB/s\n", c.name, round+1, mibps)
		}
	}
	return f, nil
}

// CopyResult is what the line rate's sink read, and in how long.
type CopyResult struct {
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
}

// startCopy starts serve-copy on addr in the server namespace, waits
// until it listens, and returns how to stop it.
func startCopy(ctx context.Context, n *Net, o Options, addr string) (func(), error) {
	var stderr bytes.Buffer
	srv := n.InServer(ctx, o.Self, "serve-copy", "-addr", addr, "-file", filepath.Join(o.Dir, payloadHTTP))
	srv.Stderr = &stderr
	out, err := srv.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("serve-copy: %w", err)
	}
	stop := func() { srv.Process.Kill(); srv.Wait() }
	// It says "ready" once the file is in the page cache and it listens.
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		stop()
		return nil, fmt.Errorf("serve-copy did not start: %q, %v: %s", line, err, stderr.Bytes())
	}
	return stop, nil
}

// copyOnce runs the sink over conns connections in the client namespace
// and returns its MiB/s.
func copyOnce(ctx context.Context, n *Net, o Options, addr string, conns int) (float64, error) {
	out, err := n.InClient(ctx, o.Self, "sink", "-addr", addr, "-conns", strconv.Itoa(conns)).Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return 0, fmt.Errorf("sink: %w: %s", err, ee.Stderr)
	}
	if err != nil {
		return 0, fmt.Errorf("sink: %w", err)
	}
	var c CopyResult
	if err := json.Unmarshal(out, &c); err != nil {
		return 0, fmt.Errorf("sink: %w: %s", err, out)
	}
	if want := int64(conns) * o.HTTPSize; c.Bytes != want {
		return 0, fmt.Errorf("sink read %d bytes, want %d", c.Bytes, want)
	}
	return float64(c.Bytes) / (1 << 20) / c.Seconds, nil
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

// writeFiles makes the payloads of the groups o runs: random bytes (no
// compression anywhere can flatter a server), and the probe.
func writeFiles(o Options) error {
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return err
	}
	payloads := map[string]int64{}
	if o.runs("tftp") {
		payloads[payloadTFTP] = o.TFTPSize
	}
	if o.runs("http") || o.runs("line") {
		payloads[payloadHTTP] = o.HTTPSize
	}
	for name, size := range payloads {
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

// Median is v's median (0 for none), as the report prints it.
func Median(v []float64) float64 {
	med, _, _ := stats(v)
	return med
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

package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/pxe"
)

func TestPhasesAreTheContracts(t *testing.T) {
	want := []string{"modules", "payload", "clock", "perm", "network", "time", "wireguard", "serve"}
	if diff := cmp.Diff(want, Phases()); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}
}

// fakeTime is a TimeService whose servers are offs[i] ahead, one per Sync.
type fakeTime struct {
	mu     sync.Mutex
	offs   []time.Duration
	synced int
	served bool
}

func (f *fakeTime) Serve(ctx context.Context, pc net.PacketConn, log *slog.Logger) error {
	f.mu.Lock()
	f.served = true
	f.mu.Unlock()
	<-ctx.Done()
	return pc.Close()
}

func (f *fakeTime) Sync(ctx context.Context, servers []string) (time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.offs) == 0 {
		return 0, errors.New("no answer")
	}
	off := f.offs[0]
	f.offs = f.offs[1:]
	return off, nil
}

func (f *fakeTime) Synced() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.synced++
}

// runGate runs the appliance on a fake gate until the netboot service
// says it is ready, and returns what it printed and the pxe.Config.
func runGate(t *testing.T, root string, sys *fakeSys, cfg Config) (string, pxe.Config) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var got pxe.Config
	out := &syncBuffer{}
	cfg.Root, cfg.System, cfg.Stdout = root, sys, out
	cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.RetryEvery = time.Millisecond
	cfg.Serve = func(ctx context.Context, c pxe.Config) error {
		got = c
		c.Ready("http://10.0.0.2:8080")
		cancel()
		<-ctx.Done()
		return nil
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	return out.String(), got
}

func TestRunToServing(t *testing.T) {
	root := fakeGate(t)
	sys := newFakeSys()
	// The perm partition remembers a later time than the build.
	saved := testBuild.Add(40 * 24 * time.Hour)
	sys.Mknod(filepath.Join(root, "dev/vda2"), 254, 2)
	if err := os.MkdirAll(filepath.Join(root, "perm"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeClockFile(filepath.Join(root, "perm"), saved); err != nil {
		t.Fatal(err)
	}
	sys.mknods = nil
	sys.linkWait = 3 // the NIC's driver probes late
	tm := &fakeTime{}
	out, pc := runGate(t, root, sys, Config{Time: tm})
	t.Log("\n" + out)

	if !strings.Contains(out, "KILN-GATE-SERVING addr=10.0.0.2 http=http://10.0.0.2:8080 boot=3.2\n") {
		t.Errorf("no serving marker in:\n%s", out)
	}
	if strings.Contains(out, "KILN-GATE-FAILED") {
		t.Errorf("a phase failed:\n%s", out)
	}
	wantMounts := []string{
		filepath.Join(root, "dev/vda3") + " squashfs " + filepath.Join(root, "payload") + " 0x1",
		filepath.Join(root, "dev/vda2") + " ext4 " + filepath.Join(root, "perm") + " 0x406",
	}
	if diff := cmp.Diff(wantMounts, sys.mounts); diff != "" {
		t.Errorf("mounts (-want +got):\n%s", diff)
	}
	// vda3 has no node: made from its uevent; vda2's existed.
	if diff := cmp.Diff([]string{"vda3 254:3"}, sys.mknods); diff != "" {
		t.Errorf("mknod (-want +got):\n%s", diff)
	}
	// The build time first (payload), then /perm/clock's later time.
	if diff := cmp.Diff([]time.Time{testBuild, saved}, sys.sets); diff != "" {
		t.Errorf("clock steps (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"eth0 10.0.0.2/24"}, sys.addrs); diff != "" {
		t.Errorf("addresses (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"default via 10.0.0.1 dev eth0"}, sys.routes); diff != "" {
		t.Errorf("routes (-want +got):\n%s", diff)
	}
	if !sys.links["lo"] || !sys.links["eth0"] || sys.hostname != "gate-1" {
		t.Errorf("links up %v, host name %q", sys.links, sys.hostname)
	}
	if sys.calls["ListenPacket 10.0.0.2:123"] != 1 {
		t.Errorf("SNTP server not on the gate's address: %v", sys.calls)
	}
	resolv, _ := os.ReadFile(filepath.Join(root, "etc/resolv.conf"))
	if !strings.HasSuffix(string(resolv), "nameserver 10.0.0.1\nnameserver 9.9.9.9\n") {
		t.Errorf("resolv.conf:\n%s", resolv)
	}
	for _, d := range []string{"perm/state", "perm/logs"} {
		if fi, err := os.Stat(filepath.Join(root, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v", d, err)
		}
	}
	if c, err := readClockFile(filepath.Join(root, "perm")); err != nil || !c.Equal(saved) {
		t.Errorf("/perm/clock = %v, %v; want %v", c, err, saved)
	}
	log, _ := os.ReadFile(filepath.Join(root, "perm/logs/gate.log"))
	// Lines logged before /perm was mounted are kept too.
	for _, s := range []string{"phase=modules", "phase=payload", `phase=serve`} {
		if !strings.Contains(string(log), s) {
			t.Errorf("gate.log lacks %q:\n%s", s, log)
		}
	}
	wantCfg := []string{"eth0", filepath.Join(root, "payload/bundle"), filepath.Join(root, "perm/state"), "snponly.efi", "10.0.0.2"}
	gotCfg := []string{pc.Interface, pc.BundleDir, pc.StateDir, pc.UEFIBootFile, pc.Address.String()}
	if diff := cmp.Diff(wantCfg, gotCfg); diff != "" {
		t.Errorf("pxe.Config (-want +got):\n%s", diff)
	}
	if pc.Plan == nil || pc.Plan.Lab != "applab" || pc.Logger == nil {
		t.Errorf("pxe.Config plan %v logger %v", pc.Plan, pc.Logger)
	}
	if strings.Count(out, "\nwireguard: not in this build: skipped\n") != 1 {
		t.Errorf("wireguard phase not skipped once:\n%s", out)
	}
}

// A failed phase is reported with the contract's marker and retried from
// its first task; the gate still gets to serving.
func TestFailedPhaseRetries(t *testing.T) {
	for _, tc := range []struct {
		method, phase string
	}{
		{"LoadModules", "modules: load: injected LoadModules failure"},
		{"Mount", "payload: mount: injected Mount failure"},
		{"LinkByMAC", "network: nic: injected LinkByMAC failure"},
	} {
		t.Run(tc.method, func(t *testing.T) {
			sys := newFakeSys()
			sys.fail[tc.method] = 2
			out, _ := runGate(t, fakeGate(t), sys, Config{})
			want := "KILN-GATE-FAILED phase=" + tc.phase + "\n"
			if n := strings.Count(out, want); n != 2 {
				t.Errorf("%d × %q, want 2, in:\n%s", n, want, out)
			}
			if !strings.Contains(out, "KILN-GATE-SERVING ") {
				t.Errorf("not serving after the retries:\n%s", out)
			}
		})
	}
}

// The serve phase is retried when the netboot service fails (a port taken).
func TestServeFailureRetries(t *testing.T) {
	root := fakeGate(t)
	sys := newFakeSys()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &syncBuffer{}
	tries := 0
	a, err := New(Config{
		Root: root, System: sys, Stdout: out, Log: slog.New(slog.DiscardHandler), RetryEvery: time.Millisecond,
		Serve: func(ctx context.Context, c pxe.Config) error {
			if tries++; tries < 3 {
				return errors.New("dhcp: address already in use")
			}
			cancel()
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := strings.Count(out.String(), "KILN-GATE-FAILED phase=serve: netboot: dhcp: address already in use\n"); n != 2 {
		t.Errorf("%d serve failures reported, want 2:\n%s", n, out)
	}
}

func TestNoPartitionFails(t *testing.T) {
	root := fakeGate(t)
	// Another card: the payload's PARTUUID is on no disk.
	if err := os.WriteFile(filepath.Join(root, "dev/vda"), mbr(0x0badcafe), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &syncBuffer{}
	a, err := New(Config{
		Root: root, System: newFakeSys(), Stdout: writerFunc(func(p []byte) (int, error) {
			out.Write(p)
			if strings.Contains(out.String(), "KILN-GATE-FAILED") {
				cancel()
			}
			return len(p), nil
		}),
		Log: slog.New(slog.DiscardHandler), RetryEvery: time.Millisecond, WaitDevices: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	a.Run(ctx)
	want := fmt.Sprintf("KILN-GATE-FAILED phase=payload: mount: PARTUUID=%08x-03: partition not found (gave up waiting: no PARTUUID=%08x-03 after 1ms)", testSig, testSig)
	if !strings.Contains(out.String(), want) {
		t.Errorf("got:\n%s\nwant the line %q", out, want)
	}
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }

func newDiscardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// A failing tunnel is retried in the background and does not hold back
// the netboot service: the lab comes up without the internet.
func TestWireGuardDetached(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &syncBuffer{}
	up := make(chan struct{})
	tries := 0
	a, err := New(Config{
		Root: fakeGate(t), System: newFakeSys(), Stdout: out, Log: newDiscardLog(), RetryEvery: time.Millisecond,
		WireGuard: func(ctx context.Context, p *Payload, log *slog.Logger) error {
			if tries++; tries < 3 {
				return errors.New("lookup vps.example.net: no such host")
			}
			close(up)
			return nil
		},
		Serve: func(ctx context.Context, c pxe.Config) error {
			c.Ready("http://10.0.0.2:8080")
			<-up // serving began before the tunnel was up
			cancel()
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := out.String()
	if n := strings.Count(got, "KILN-GATE-FAILED phase=wireguard: up: lookup vps.example.net: no such host\n"); n != 2 {
		t.Errorf("%d wireguard failures reported, want 2:\n%s", n, got)
	}
	if !strings.Contains(got, "wireguard: up after a retry\n") {
		t.Errorf("no recovery line:\n%s", got)
	}
	if i, j := strings.Index(got, "phase=wireguard"), strings.Index(got, "KILN-GATE-SERVING"); i > j {
		t.Errorf("the first wireguard failure came after serving:\n%s", got)
	}
}

func TestWireGuardSkipped(t *testing.T) {
	out, _ := runGate(t, fakeGate(t), newFakeSys(), Config{
		WireGuard: func(ctx context.Context, p *Payload, log *slog.Logger) error {
			if p.Profile.Name != "applab" || p.Gate.Name != "gate-1" {
				t.Errorf("payload %+v", p)
			}
			return fmt.Errorf("the gate has no wireguard block: %w", ErrSkipped)
		},
	})
	if !strings.Contains(out, "wireguard: the gate has no wireguard block: skipped\n") || strings.Contains(out, "FAILED") {
		t.Errorf("got:\n%s", out)
	}
}

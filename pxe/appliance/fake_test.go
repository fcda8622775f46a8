package appliance

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnlab/kiln/image/payload"
)

// fakeSys is a System that records what the phases ask of the kernel.
type fakeSys struct {
	mu      sync.Mutex
	now     time.Time
	sets    []time.Time
	mounted map[string]bool
	mounts  []string // "source fstype target flags"
	mknods  []string
	calls   map[string]int
	// fail makes the first n calls of a method fail.
	fail     map[string]int
	linkWait int // LinkByMAC finds nothing this many times
	links    map[string]bool
	addrs    []string
	routes   []string
	hostname string
}

func newFakeSys() *fakeSys {
	return &fakeSys{
		now:     time.Unix(3, 0).UTC(), // the Pi wakes up in 1970
		mounted: map[string]bool{}, calls: map[string]int{}, fail: map[string]int{}, links: map[string]bool{},
	}
}

// call counts a call and returns the injected failure, if any.
func (f *fakeSys) call(name string) error {
	f.calls[name]++
	if f.fail[name] > 0 {
		f.fail[name]--
		return fmt.Errorf("injected %s failure", name)
	}
	return nil
}

func (f *fakeSys) Mount(source, target, fstype string, flags uintptr, data string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("Mount"); err != nil {
		return err
	}
	f.mounted[target] = true
	f.mounts = append(f.mounts, fmt.Sprintf("%s %s %s %#x", source, fstype, target, flags))
	return nil
}

func (f *fakeSys) Mounted(target string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mounted[target], nil
}

func (f *fakeSys) Mknod(path string, major, minor uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mknods = append(f.mknods, fmt.Sprintf("%s %d:%d", filepath.Base(path), major, minor))
	return os.WriteFile(path, nil, 0o600)
}

func (f *fakeSys) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeSys) SetClock(t time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = t
	f.sets = append(f.sets, t)
	return nil
}

func (f *fakeSys) SinceBoot() time.Duration { return 3210 * time.Millisecond }

func (f *fakeSys) Sethostname(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hostname = name
	return nil
}

func (f *fakeSys) LinkByMAC(mac net.HardwareAddr) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("LinkByMAC"); err != nil {
		return "", err
	}
	if f.linkWait > 0 {
		f.linkWait--
		return "", fmt.Errorf("%s: %w", mac, ErrNoLink)
	}
	if mac.String() != "52:54:00:aa:00:01" {
		return "", fmt.Errorf("%s: %w", mac, ErrNoLink)
	}
	return "eth0", nil
}

func (f *fakeSys) LinkUp(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.links[name] = true
	return nil
}

func (f *fakeSys) ReplaceAddr(name string, p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addrs = append(f.addrs, name+" "+p.String())
	return nil
}

func (f *fakeSys) ReplaceDefaultRoute(name string, gw netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes = append(f.routes, "default via "+gw.String()+" dev "+name)
	return nil
}

// ListenPacket listens on loopback whatever the address: the tests have
// no 10.0.0.2.
func (f *fakeSys) ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error) {
	f.mu.Lock()
	f.calls["ListenPacket "+address]++
	f.mu.Unlock()
	var lc net.ListenConfig
	return lc.ListenPacket(ctx, "udp4", "127.0.0.1:0")
}

func (f *fakeSys) LoadModules(log *slog.Logger) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("LoadModules"); err != nil {
		return 0, err
	}
	return 7, nil
}

// Disk signature of the fake SD card; PARTUUIDs are "5eed0001-0N".
const testSig = 0x5eed0001

var testBuild = time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)

// fakeGate lays out a gate's root below a temp dir: /proc/cmdline, a
// sysfs with an MBR disk vda (no PARTUUID in its uevents, like Linux 6.1),
// /dev/vda holding the MBR (its partitions have no nodes yet), and the
// payload's files where the squashfs would be mounted.
func fakeGate(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	write := func(p, s string) {
		t.Helper()
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("proc/cmdline", fmt.Sprintf("console=ttyAMA0,115200 kiln.perm=PARTUUID=%08x-02 kiln.payload=PARTUUID=%08x-03 panic=10\n", testSig, testSig))
	dev := "sys/devices/platform/virtio/block/vda"
	write(dev+"/uevent", "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\nDISKSEQ=1\n")
	link(t, root, "sys/class/block/vda", dev)
	for n := 1; n <= 3; n++ {
		p := fmt.Sprintf("vda%d", n)
		write(dev+"/"+p+"/uevent", fmt.Sprintf("MAJOR=254\nMINOR=%d\nDEVNAME=%s\nDEVTYPE=partition\nDISKSEQ=1\nPARTN=%d\n", n, p, n))
		link(t, root, "sys/class/block/"+p, dev+"/"+p)
	}
	write("dev/vda", string(mbr(testSig)))

	prof, err := os.ReadFile("testdata/profile.yaml")
	if err != nil {
		t.Fatal(err)
	}
	write("payload/"+payload.ProfileFile, string(prof))
	info := payload.Info{Lab: "applab", Machine: "gate-1", BuildTime: testBuild, InterfaceMAC: "52:54:00:aa:00:01", Profile: payload.ProfileFile}
	if err := payload.WriteInfo(filepath.Join(root, "payload"), info); err != nil {
		t.Fatal(err)
	}
	return root
}

func link(t *testing.T, root, name, target string) {
	t.Helper()
	p := filepath.Join(root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(filepath.Dir(p), filepath.Join(root, target))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(rel, p); err != nil {
		t.Fatal(err)
	}
}

// mbr is a boot sector with a disk signature.
func mbr(sig uint32) []byte {
	b := make([]byte, 512)
	binary.LittleEndian.PutUint32(b[440:], sig)
	b[446+4] = 0x0c
	b[510], b[511] = 0x55, 0xaa
	return b
}

// syncBuffer is a bytes.Buffer safe for the appliance's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

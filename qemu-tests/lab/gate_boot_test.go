package lab_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/kilnlab/kiln/image/cache"
	"github.com/kilnlab/kiln/image/hosttool/hosttooltest"
	"github.com/kilnlab/kiln/qemu-tests/lab"
	"github.com/kilnlab/kiln/qemu-tests/lab/standin"
)

// The stand-in gate's place on the lab LAN: the bridge (the host's side)
// takes another address of the same /24.
const (
	standinAddr = "192.168.1.10/24"
	standinMAC  = "52:54:00:6b:00:01"
	bridgeAddr  = "192.168.1.2/24"
)

var serving = regexp.MustCompile(`KILN-GATE-SERVING addr=(\S+) http=(\S+) boot=([0-9.]+)`)

// TestGateImageBoot boots a gate-shaped SD image the way the lab boots
// gate-1.img: kernel, initramfs and cmdline read from its FAT boot
// partition, qemu-system-aarch64 -M virt, a private copy of the image as
// its disk, its NIC on the lab bridge. The image is a stand-in (the pinned
// arm64 kernel, a tiny Go init that plays the appliance), so this needs no
// gate build; the test then reads /status.json over the lab LAN.
func TestGateImageBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("QEMU test skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root (network namespaces, taps)")
	}
	hosttooltest.Need(t, "ip", "qemu-system-aarch64", "mkfs.vfat", "mcopy", "sfdisk", "dpkg-deb", "depmod", "go")
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	out := testOutput(t)
	log := slog.New(slog.NewTextHandler(t.Output(), nil))

	cdir, err := cache.DefaultDir()
	if err != nil {
		t.Fatal(err)
	}
	// Fetched when missing (verified against the lockfile; the cache's
	// writes are atomic, so a kiln build fetching it at the same time in
	// another test binary is harmless): on a fresh machine nothing else
	// has put it there yet.
	k, err := standin.Kernel(ctx, &cache.Cache{Dir: cdir}, true, filepath.Join(cdir, "bench"))
	if err != nil {
		t.Fatal(err)
	}
	build := filepath.Join(out, "build")
	os.MkdirAll(build, 0o755)
	initBin, initrd, img := filepath.Join(build, "init"), filepath.Join(build, "initrd.gz"), filepath.Join(build, "gate-1.img")
	if err := standin.BuildInit(ctx, initBin); err != nil {
		t.Fatal(err)
	}
	if err := standin.Initramfs(initrd, initBin, k, standin.GateModules(), log); err != nil {
		t.Fatal(err)
	}
	files, err := standin.GateFiles(build, k.Vmlinuz(), initrd, standinAddr, standinMAC)
	if err != nil {
		t.Fatal(err)
	}
	if err := standin.SDImage(ctx, img, files); err != nil {
		t.Fatal(err)
	}
	before := fileSum(t, img)

	n, err := lab.NewNetwork(ctx, lab.NetworkConfig{OutDir: out, GateAddr: bridgeAddr, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("lab state at failure:\n%s", n.Diagnose(40))
		}
		n.Close()
	}()
	cfg, err := lab.GateVMConfig(ctx, "gate-1", standinMAC, img, out)
	if err != nil {
		t.Fatal(err)
	}
	cfg.FailOn = append(lab.DeadEnds(), regexp.MustCompile(`KILN-STANDIN-FAILED`))
	vm, err := n.NewVM(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.Start(ctx); err != nil {
		t.Fatal(err)
	}
	line, err := vm.WaitFor(ctx, serving)
	if err != nil {
		t.Fatal(err)
	}
	m := serving.FindStringSubmatch(line)
	t.Logf("%s (kernel %s)", m[0], k.Version)
	if m[1] != "192.168.1.10" {
		t.Errorf("gate address %s, want the cmdline's 192.168.1.10", m[1])
	}

	st := getStatus(t, n, "192.168.1.10:8080")
	if st.Gate.KilnRSS <= 0 || st.Gate.MemUsed <= 0 || st.Gate.MemTotal < 512<<20 || st.Gate.Uptime <= 0 {
		t.Errorf("status.json gate = %+v, want positive figures and ~1 GiB of memory", st.Gate)
	}
	vm.Stop()
	if fileSum(t, img) != before {
		t.Error("the VM wrote to the built image, not to its copy")
	}
}

// status is the part of the gate's /status.json the lab reads.
type status struct {
	Gate struct {
		Uptime   float64 `json:"uptime_s"`
		KilnRSS  int64   `json:"kiln_rss_bytes"`
		MemUsed  int64   `json:"mem_used_bytes"`
		MemTotal int64   `json:"mem_total_bytes"`
	} `json:"gate"`
}

// getStatus GETs /status.json over the lab LAN.
func getStatus(t *testing.T, n *lab.Network, hostport string) status {
	t.Helper()
	var st status
	b, err := n.Get("http://" + hostport + "/status.json")
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	if err != nil {
		t.Fatalf("GET /status.json from the gate: %v", err)
	}
	return st
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// testOutput keeps serial logs under $KILN_TEST_OUTPUT/<test> when set,
// else in a temporary folder.
func testOutput(t *testing.T) string {
	t.Helper()
	root := os.Getenv("KILN_TEST_OUTPUT")
	if root == "" {
		return t.TempDir()
	}
	dir := filepath.Join(root, t.Name())
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true: "+format, args...)
	}
	t.Skipf(format, args...)
}

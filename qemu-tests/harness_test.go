package qemutests

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnlab/kiln/qemu-tests/lab"
)

// skipOrFail skips a test whose environment lacks something, except under
// CI=true, where a missing tool is a broken CI image.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true: "+format, args...)
	}
	t.Skipf(format, args...)
}

// requireLab checks for root, the host tools and firmware files the lab
// uses.
func requireLab(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("QEMU test skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root (network namespaces, taps)")
	}
	for _, tool := range []string{"ip", "qemu-system-x86_64", "dnsmasq", "tcpdump"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, "needs %s: %v", tool, err)
		}
	}
	for _, f := range []string{lab.OVMFCode, lab.OVMFVars, ipxeDir + "/undionly.kpxe", ipxeDir + "/ipxe.efi"} {
		if _, err := os.Stat(f); err != nil {
			skipOrFail(t, "needs %s (Debian packages ovmf, ipxe): %v", f, err)
		}
	}
}

// ipxeDir is where Debian's ipxe package puts its binaries.
const ipxeDir = "/usr/lib/ipxe"

// outputDir is the test's own, emptied output folder:
// $KILN_TEST_OUTPUT/<test> or test-output/<test> next to this package.
func outputDir(t *testing.T) string {
	t.Helper()
	root := os.Getenv("KILN_TEST_OUTPUT")
	if root == "" {
		root = "test-output"
	}
	dir, err := filepath.Abs(filepath.Join(root, filepath.FromSlash(t.Name())))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// testContext is t.Context() with a hard deadline: d, or earlier when
// `go test -timeout` ends first (minus time to clean up and report).
func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	deadline := time.Now().Add(d)
	if td, ok := t.Deadline(); ok && td.Add(-30*time.Second).Before(deadline) {
		deadline = td.Add(-30 * time.Second)
	}
	ctx, cancel := context.WithDeadline(t.Context(), deadline)
	t.Cleanup(cancel)
	return ctx
}

// newNetwork builds a lab network whose Close runs at cleanup, after a
// failure report with each serial log's tail and the pcap's path.
func newNetwork(t *testing.T, ctx context.Context, out string) *lab.Network {
	t.Helper()
	n, err := lab.NewNetwork(ctx, lab.NetworkConfig{
		OutDir: out,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
		Accel:  accel,
	})
	if err != nil {
		t.Fatalf("lab network: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("lab state at failure:\n%s", n.Diagnose(40))
		}
		if err := n.Close(); err != nil {
			t.Errorf("closing the lab: %v", err)
		}
	})
	return n
}

// goBuild builds a static Go command of this module into dir.
func goBuild(t *testing.T, ctx context.Context, pkg, out string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, strings.TrimSpace(string(b)))
	}
}

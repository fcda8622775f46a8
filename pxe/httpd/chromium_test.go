package httpd

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kilnlab/kiln/image/hosttool/hosttooltest"
)

// TestStatusPageChromium renders the status page in headless Chromium
// (Debian package chromium) and checks the DOM a browser builds from it:
// one row per machine, in plan order, with the right texts, and the
// hostile strings shown as text rather than run or rendered as markup.
func TestStatusPageChromium(t *testing.T) {
	hosttooltest.Need(t, "chromium")
	if testing.Short() {
		t.Skip("starts a browser")
	}
	f, toks := statusFixture(t)
	dom := dumpDOM(t, f.srv.URL+"/")
	checkRows(t, dom, wantRows)
	if n := strings.Count(dom, "data-refused="); n != 3 {
		t.Errorf("the DOM shows %d refused requests, want 3", n)
	}
	for _, bad := range []string{"<script", "<img"} {
		if strings.Contains(dom, bad) {
			t.Errorf("the browser's DOM has a %s element: escaping failed", bad)
		}
	}
	for _, tok := range toks {
		if strings.Contains(dom, tok) {
			t.Error("the page shows an install token")
		}
	}
}

// dumpDOM runs chromium --headless --dump-dom on url and returns the
// serialised DOM. Chromium runs in its own process group with HOME and
// its profile under a temp dir; the whole group is killed when it exits
// or the deadline passes, so no zygote or renderer outlives the test.
func dumpDOM(t *testing.T, url string) string {
	t.Helper()
	dir := t.TempDir()
	// A deadline, not an assertion: a wedged browser must not hang go test.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "chromium",
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--user-data-dir="+filepath.Join(dir, "profile"),
		"--no-first-run", "--no-default-browser-check", "--disable-extensions",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-default-apps", "--disable-breakpad", "--disable-crash-reporter",
		// Tests never reach the internet: anything not on loopback goes
		// to a proxy that is not there (loopback always bypasses it).
		"--proxy-server=127.0.0.1:9",
		"--dump-dom", url)
	cmd.Env = append(os.Environ(),
		"HOME="+dir, "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "XDG_CACHE_HOME="+filepath.Join(dir, "cache"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	killGroup := func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.Cancel = killGroup
	// Children that inherited stdout must not keep Wait waiting.
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if kerr := killGroup(); kerr != nil && !errors.Is(kerr, syscall.ESRCH) {
		t.Errorf("killing chromium's process group: %v", kerr)
	}
	killStrays(t, dir)
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, tail(stderr.String(), 4000))
	}
	if !strings.Contains(stdout.String(), "data-machine") {
		t.Fatalf("chromium dumped no status page:\n%s\nstderr:\n%s", tail(stdout.String(), 2000), tail(stderr.String(), 4000))
	}
	return stdout.String()
}

// killStrays kills what escaped the process group: chrome_crashpad_handler
// daemonises into a session of its own. Every such process names dir (its
// crash database lives under HOME), which this test alone uses.
func killStrays(t *testing.T, dir string) {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte(dir)) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			t.Errorf("killing chromium helper %d: %v", pid, err)
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

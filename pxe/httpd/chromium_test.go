package httpd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
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
// one row per machine, in plan order, with the right texts, first-boot
// phases and services, secrets hand-outs and refusals, the services
// table with its verdicts and times, and the hostile
// strings shown as text rather than run or rendered as markup. It keeps
// screenshots at a laptop's width and a phone's (the first screen, and the
// whole page) under test-output/ for people to look at, and checks them for
// what people would see first: nothing drawn in the page's margins (the
// header's machine counts once wrapped out of their box at 1280 px, and
// the table ran off a phone's screen).
func TestStatusPageChromium(t *testing.T) {
	hosttooltest.Need(t, "chromium")
	if testing.Short() {
		t.Skip("starts a browser")
	}
	f, toks := statusFixture(t)
	dom := dumpDOM(t, f.srv.URL+"/")
	checkRows(t, dom, wantRows)
	checkServices(t, dom, wantServices)
	if n := strings.Count(dom, "data-refused="); n != 5 {
		t.Errorf("the DOM shows %d refused requests, want 5", n)
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

	out := outputDir(t)
	for _, sz := range []struct {
		name, file    string
		width, height int
		// margin is how far from each side nothing may be drawn: the
		// page's own margin (2em, or 1em on a phone) less a little.
		margin int
	}{
		{"laptop", "status-1280.png", 1280, 900, 20},
		{"phone", "status-390.png", 390, 844, 8},
		// The whole page, in a window taller than it: the refused table
		// and the last machines are below the first screen, and must
		// fit the width too.
		{"laptop, whole page", "status-1280-full.png", 1280, 1800, 20},
		{"phone, whole page", "status-390-full.png", 390, 2600, 8},
	} {
		file := filepath.Join(out, sz.file)
		screenshot(t, f.srv.URL+"/", file, sz.width, sz.height)
		img := readPNG(t, file)
		if b := img.Bounds(); b.Dx() != sz.width || b.Dy() != sz.height {
			t.Errorf("%s: screenshot of %dx%d, want %dx%d", sz.name, b.Dx(), b.Dy(), sz.width, sz.height)
			continue
		}
		if x, y, ok := inkInMargins(img, sz.margin); ok {
			t.Errorf("%s (%s): something is drawn at (%d,%d), in the page's %d px margin: text out of its box or a table wider than the screen",
				sz.name, file, x, y, sz.margin)
		}
		t.Logf("%s: %s", sz.name, file)
	}
}

// outputDir is the test's own, emptied output folder, as in qemu-tests:
// $KILN_TEST_OUTPUT/<test> or test-output/<test> next to this package
// (git-ignored), kept after the test for people to look at.
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

func readPNG(t *testing.T, file string) image.Image {
	t.Helper()
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	img, err := png.Decode(fh)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return img
}

// inkInMargins finds a pixel that is not the page's white background
// within margin px of the left or right edge of img.
func inkInMargins(img image.Image, margin int) (x, y int, ok bool) {
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for _, xs := range [][2]int{{b.Min.X, b.Min.X + margin}, {b.Max.X - margin, b.Max.X}} {
			for x := xs[0]; x < xs[1]; x++ {
				r, g, bl, _ := img.At(x, y).RGBA()
				if r < 0xf000 || g < 0xf000 || bl < 0xf000 {
					return x, y, true
				}
			}
		}
	}
	return 0, 0, false
}

// dumpDOM runs chromium --headless --dump-dom on url and returns the
// serialised DOM.
func dumpDOM(t *testing.T, url string) string {
	t.Helper()
	dom := chromium(t, "--dump-dom", url)
	if !strings.Contains(dom, "data-machine") {
		t.Fatalf("chromium dumped no status page:\n%s", tail(dom, 2000))
	}
	return dom
}

// screenshot has chromium --headless write a PNG of url in a window of
// width x height (scroll bars hidden: they are not the page's).
func screenshot(t *testing.T, url, file string, width, height int) {
	t.Helper()
	chromium(t, "--hide-scrollbars", fmt.Sprintf("--window-size=%d,%d", width, height), "--screenshot="+file, url)
	if st, err := os.Stat(file); err != nil || st.Size() == 0 {
		t.Fatalf("chromium wrote no screenshot %s: %v", file, err)
	}
}

// chromium runs chromium --headless with args and returns its standard
// output. Chromium runs in its own process group with HOME and its
// profile under a temp dir; the whole group is killed when it exits or
// the deadline passes, so no zygote or renderer outlives the test.
func chromium(t *testing.T, args ...string) string {
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
		"--proxy-server=127.0.0.1:9")
	cmd.Args = append(cmd.Args, args...)
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

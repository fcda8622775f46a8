package httpd

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kilnlab/kiln/internal/golden"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/pxe/api"
	"github.com/kilnlab/kiln/pxe/internal/fakebundle"
	"github.com/kilnlab/kiln/pxe/state"
)

const (
	gateURL = "http://192.168.1.10:8080"
	macC1   = "52:54:00:00:01:01"
	macGate = "52:54:00:00:00:0a"
	macLost = "02:00:00:00:99:99"
)

func testPlan() *plan.Plan {
	return &plan.Plan{
		Lab:  "homelab",
		Gate: plan.Gate{Name: "gate-1", Address: "192.168.1.10"},
		Machines: []plan.Machine{
			{Name: "gate-1", Role: "gate", Board: "rpi4", Arch: "arm64", MAC: macGate, Address: "192.168.1.10/24"},
			{Name: "ceph-1", Role: "storage", Board: "pc", Arch: "amd64", Firmware: "uefi", MAC: macC1,
				Address: "192.168.1.11/24", Hostname: "ceph-1", RoleImage: "roles/storage.squashfs"},
			{Name: "ceph-2", Role: "storage", Board: "pc", Arch: "amd64", MAC: "52:54:00:00:01:02",
				Address: "192.168.1.12/24", Hostname: "ceph-2", RoleImage: "roles/storage.squashfs"},
		},
	}
}

// fakeBundle writes a tiny bundle with an escaping symlink beside it.
// ceph-2 has no machine images, to exercise an incomplete bundle.
func fakeBundle(t testing.TB) string {
	t.Helper()
	top := t.TempDir()
	dir := filepath.Join(top, "bundle")
	fakebundle.Write(t, dir)
	if err := os.WriteFile(filepath.Join(top, "secret"), []byte("outside"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../secret", filepath.Join(dir, "tftp", "escape")); err != nil {
		t.Fatal(err)
	}
	return dir
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	srv     *httptest.Server
	handler http.Handler
	states  *state.Store
	clock   *clock
	logs    *bytes.Buffer
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return newFixtureWith(t, nil)
}

// newFixtureWith lets a test change the Config (its plan, its /proc).
func newFixtureWith(t testing.TB, edit func(*Config)) *fixture {
	t.Helper()
	c := &clock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	states, err := state.Open(t.TempDir(), c.now)
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	cfg := Config{
		Plan: testPlan(), BundleDir: fakeBundle(t), States: states, GateURL: gateURL,
		Log: slog.New(slog.NewTextHandler(logs, nil)), Now: c.now,
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	h := s.Handler()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, handler: h, states: states, clock: c, logs: logs}
}

func (f *fixture) do(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func goldenScript(t *testing.T, name, got string) {
	t.Helper()
	golden.Check(t, filepath.Join("testdata", name), []byte(got))
}

var tokenRE = regexp.MustCompile(`kiln\.token=([0-9a-f]{32}) `)

// installScript fetches /ipxe/{mac}, checks it against the install golden
// and returns the token it carries.
func (f *fixture) installScript(t *testing.T, mac string) string {
	t.Helper()
	code, body := f.do(t, "GET", "/ipxe/"+mac, "")
	if code != 200 {
		t.Fatalf("GET /ipxe/%s = %d", mac, code)
	}
	m := tokenRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no token in script:\n%s", body)
	}
	goldenScript(t, "install-ceph-1.ipxe", strings.ReplaceAll(body, m[1], "TOKEN"))
	return m[1]
}

func TestBootScript(t *testing.T) {
	f := newFixture(t)
	code, body := f.do(t, "GET", "/boot.ipxe", "")
	if code != 200 {
		t.Fatalf("status %d", code)
	}
	goldenScript(t, "boot.ipxe", body)
}

func TestInstallLifecycle(t *testing.T) {
	f := newFixture(t)
	tok := f.installScript(t, macC1)

	// Wrong token, another machine's MAC, no token: 403.
	for _, path := range []string{
		"/api/v1/install/" + macC1 + "?token=00000000000000000000000000000000",
		"/api/v1/install/" + macC1,
		"/api/v1/install/52:54:00:00:01:02?token=" + tok,
		"/api/v1/install/" + macLost + "?token=" + tok,
		"/api/v1/install/" + macGate + "?token=" + tok,
	} {
		if code, _ := f.do(t, "GET", path, ""); code != http.StatusForbidden {
			t.Errorf("GET %s = %d, want 403", path, code)
		}
	}
	if strings.Contains(f.logs.String(), tok) {
		t.Error("the install token appears in the logs")
	}

	code, body := f.do(t, "GET", "/api/v1/install/"+macC1+"?token="+tok, "")
	if code != 200 {
		t.Fatalf("install manifest = %d %s", code, body)
	}
	var man api.InstallManifest
	if err := json.Unmarshal([]byte(body), &man); err != nil {
		t.Fatal(err)
	}
	if man.Machine.Name != "ceph-1" || man.Reinstall {
		t.Errorf("manifest machine %q, reinstall %v: want ceph-1's first install", man.Machine.Name, man.Reinstall)
	}
	paths := map[string]string{}
	for k, v := range man.Files {
		paths[k] = v.Path
		if v.Size == 0 || len(v.SHA256) != 64 {
			t.Errorf("file %s: %+v", k, v)
		}
	}
	if diff := cmp.Diff(map[string]string{
		"esp": "machines/ceph-1/esp.img", "root": "roles/storage.squashfs",
		"state": "machines/ceph-1/state.img", "gptmbr": "bios/gptmbr.bin",
	}, paths); diff != "" {
		t.Errorf("manifest files (-want +got):\n%s", diff)
	}
	// A retried manifest fetch during the install is fine.
	if code, _ := f.do(t, "GET", "/api/v1/install/"+macC1+"?token="+tok, ""); code != 200 {
		t.Errorf("second manifest fetch while installing = %d", code)
	}

	if code, _ := f.do(t, "POST", "/api/v1/progress/"+macC1+"?token="+tok, `{"phase":"write","message":"root","done":5,"total":10}`); code != 204 {
		t.Errorf("progress = %d", code)
	}
	if code, _ := f.do(t, "POST", "/api/v1/progress/"+macC1+"?token=bad", `{"phase":"x"}`); code != 403 {
		t.Errorf("progress with a bad token = %d", code)
	}
	if code, _ := f.do(t, "POST", "/api/v1/result/"+macC1+"?token="+tok, `{"ok":true}`); code != 204 {
		t.Errorf("result = %d", code)
	}
	rec, err := f.states.Get(macC1, "ceph-1")
	if err != nil || rec.State != state.Installed || rec.Progress.Phase != "write" {
		t.Fatalf("after result: %+v, %v", rec, err)
	}

	// Installed: the next netboot exits to the disk; the token is spent.
	code, body = f.do(t, "GET", "/ipxe/"+macC1, "")
	if code != 200 {
		t.Fatalf("GET /ipxe = %d", code)
	}
	goldenScript(t, "exit-installed.ipxe", body)
	if code, _ := f.do(t, "GET", "/api/v1/install/"+macC1+"?token="+tok, ""); code != 403 {
		t.Errorf("reused token = %d, want 403", code)
	}

	// A first-boot report on the plain port carries no identity: refused
	// (identity_test.go has the TLS port).
	if code, _ := f.do(t, "POST", "/api/v1/booted/"+macC1, `{"hostname":"ceph-1","address":"192.168.1.11/24"}`); code != 403 {
		t.Errorf("booted without identity = %d, want 403", code)
	}

	// Re-arm: install again, with a new token.
	if _, err := f.states.Rearm(macC1, "ceph-1"); err != nil {
		t.Fatal(err)
	}
	tok2 := f.installScript(t, macC1)
	if tok2 == tok {
		t.Error("re-armed install reuses the old token")
	}
	// The machine was installed before: its manifest says reinstall, and
	// the installer keeps its data disks.
	code, body = f.do(t, "GET", "/api/v1/install/"+macC1+"?token="+tok2, "")
	if err := json.Unmarshal([]byte(body), &man); code != 200 || err != nil || !man.Reinstall {
		t.Errorf("manifest after re-arm = %d, %v, reinstall %v: want a reinstall", code, err, man.Reinstall)
	}
}

func TestInstallFailed(t *testing.T) {
	f := newFixture(t)
	tok := f.installScript(t, macC1)
	if code, _ := f.do(t, "GET", "/api/v1/install/"+macC1+"?token="+tok, ""); code != 200 {
		t.Fatal(code)
	}
	if code, _ := f.do(t, "POST", "/api/v1/result/"+macC1+"?token="+tok, `{"ok":false,"error":"disk WD-KILN-CEPH1-B not found"}`); code != 204 {
		t.Fatal(code)
	}
	rec, _ := f.states.Get(macC1, "ceph-1")
	if rec.State != state.Failed || rec.Error != "disk WD-KILN-CEPH1-B not found" {
		t.Fatalf("record %+v", rec)
	}
	_, body := f.do(t, "GET", "/ipxe/"+macC1, "")
	goldenScript(t, "exit-failed.ipxe", body)
}

// TestInterruptedInstalls: a machine that netboots mid-install (a power
// cut) installs again with a new token, however long ago the install
// began (its disk cannot boot); after state.MaxAttempts installs in a row
// without a result it is Failed and sent to its disk with the reason.
func TestInterruptedInstalls(t *testing.T) {
	f := newFixture(t)
	tok := f.installScript(t, macC1)
	if code, _ := f.do(t, "GET", "/api/v1/install/"+macC1+"?token="+tok, ""); code != 200 {
		t.Fatal(code)
	}
	f.clock.add(time.Minute)
	tok2 := f.installScript(t, macC1)
	if tok2 == tok {
		t.Error("retry reuses the old token")
	}
	if code, _ := f.do(t, "GET", "/api/v1/install/"+macC1+"?token="+tok, ""); code != 403 {
		t.Errorf("old token after a retry = %d, want 403", code)
	}
	for i := 2; i <= state.MaxAttempts; i++ {
		if code, _ := f.do(t, "GET", "/api/v1/install/"+macC1+"?token="+tok2, ""); code != 200 {
			t.Fatalf("attempt %d: %d", i, code)
		}
		f.clock.add(2 * time.Hour) // a long outage changes nothing
		if i < state.MaxAttempts {
			tok2 = f.installScript(t, macC1)
		}
	}
	_, body := f.do(t, "GET", "/ipxe/"+macC1, "")
	goldenScript(t, "exit-attempts.ipxe", body)
	rec, _ := f.states.Get(macC1, "ceph-1")
	if rec.State != state.Failed || !strings.Contains(rec.Error, "5 installs in a row ended without a result") {
		t.Errorf("after %d interrupted installs: %s %q", state.MaxAttempts, rec.State, rec.Error)
	}
}

func TestNotBooted(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct{ mac, golden, log string }{
		{macLost, "exit-unknown.ipxe", "unknown machine"},
		{"not-a-mac", "exit-unknown.ipxe", "unknown machine"},
		{macGate, "exit-gate.ipxe", "never netbooted"},
	} {
		code, body := f.do(t, "GET", "/ipxe/"+tc.mac, "")
		if code != 200 {
			t.Errorf("%s: %d", tc.mac, code)
		}
		goldenScript(t, tc.golden, body)
		if !strings.Contains(f.logs.String(), tc.log) {
			t.Errorf("%s: no %q in logs", tc.mac, tc.log)
		}
	}
}

func TestIncompleteBundle(t *testing.T) {
	f := newFixture(t)
	code, body := f.do(t, "GET", "/ipxe/52:54:00:00:01:02", "")
	tok := tokenRE.FindStringSubmatch(body)
	if code != 200 || tok == nil {
		t.Fatalf("%d %s", code, body)
	}
	if code, _ := f.do(t, "GET", "/api/v1/install/52:54:00:00:01:02?token="+tok[1], ""); code != 500 {
		t.Errorf("manifest with missing bundle files = %d, want 500", code)
	}
	// Nothing was consumed: the machine is still in install.
	if rec, _ := f.states.Get("52:54:00:00:01:02", "ceph-2"); rec.State != state.Install {
		t.Errorf("state %s", rec.State)
	}
}

func TestFiles(t *testing.T) {
	f := newFixture(t)
	code, body := f.do(t, "GET", "/files/tftp/undionly.kpxe", "")
	if code != 200 || body != string(fakebundle.Content("tftp/undionly.kpxe")) {
		t.Errorf("undionly.kpxe: %d %q", code, body)
	}
	req, _ := http.NewRequest("GET", f.srv.URL+"/files/amd64/vmlinuz", nil)
	req.Header.Set("Range", "bytes=5-8")
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 206 || string(b) != "amd6" {
		t.Errorf("range: %d %q", resp.StatusCode, b)
	}
	for _, p := range []string{"/files/tftp/escape", "/files/tftp", "/files/missing", "/files/..%2fsecret", "/files/tftp/..%2f..%2fsecret", "/files/"} {
		code, body := f.do(t, "GET", p, "")
		if code == 200 || strings.Contains(body, "outside") {
			t.Errorf("GET %s = %d %q: want refusal", p, code, body)
		}
	}
}

func FuzzConfined(f *testing.F) {
	for _, s := range []string{"tftp/ipxe.efi", "../x", "/x", "a/./b", "a\x00b", "a//b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if !confined(name) {
			return
		}
		if !filepath.IsLocal(name) || filepath.Clean(name) != name {
			t.Fatalf("confined(%q) but not a clean local path", name)
		}
	})
}

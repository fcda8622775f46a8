package httpd

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kilnlab/kiln/pxe/state"
)

// ipxeCommands are the first words a line of kiln's iPXE scripts may
// start with: whatever a request carries, it never adds a command.
var ipxeCommands = map[string]bool{
	"#!ipxe": true, "#": true, "echo": true, "exit": true, "sleep": true, "set": true, "inc": true,
	"iseq": true, "goto": true, "dhcp": true, "chain": true, "kernel": true, "initrd": true, "boot": true,
}

var fuzzMethods = []string{"GET", "POST", "PUT", "HEAD", "DELETE"}

// FuzzHandler sends any request to the gate's whole HTTP handler, the
// iPXE scripts and the installer's and first boot's API included, one
// after another on one state directory. No request panics, none makes
// a 5xx (the only one a client can cause is a machine whose bundle is
// incomplete), a machine script is always iPXE made of kiln's own
// commands, and the state stays readable, each record in a state the
// state machine has.
func FuzzHandler(f *testing.F) {
	for _, s := range []struct {
		method uint8
		path   string
		body   string
	}{
		{0, "/boot.ipxe", ""},
		{0, "/ipxe/" + macC1, ""},
		{0, "/ipxe/52-54-00-00-01-01", ""},
		{0, "/ipxe/" + macLost, ""},
		{0, "/ipxe/52:54:00:00:01:01%0aexit", ""},
		{0, "/api/v1/install/" + macC1, ""},
		{1, "/api/v1/progress/" + macC1, `{"phase":"write-root","done":1,"total":2}`},
		{1, "/api/v1/result/" + macC1, `{"ok":true}`},
		{1, "/api/v1/booted/" + macC1, `{"hostname":"ceph-1"}`},
		{1, "/api/v1/phase/" + macC1, `[{"phase":"ceph","status":"done"}]`},
		{1, "/api/v1/health/" + macC1, `{"services":[{"name":"ceph","status":"ok"}]}`},
		{0, "/files/tftp/ipxe.efi", ""},
		{0, "/files/../secret", ""},
		{0, "/status.json", ""},
		{0, "/", ""},
	} {
		f.Add(s.method, s.path, []byte(s.body))
	}
	fx := newFixture(f)
	h := fx.handler
	f.Fuzz(func(t *testing.T, method uint8, path string, body []byte) {
		req := httptest.NewRequest(fuzzMethods[int(method)%len(fuzzMethods)], "/", bytes.NewReader(body))
		req.URL.Path, req.URL.RawPath, req.RequestURI = path, "", path
		req.Header.Set("Authorization", "Bearer "+strings.Repeat("0", 32))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 && !strings.Contains(rec.Body.String(), "bundle incomplete") {
			t.Fatalf("%s %q = %d %q", req.Method, path, rec.Code, rec.Body)
		}
		if strings.HasPrefix(path, "/ipxe/") && rec.Code == 200 {
			checkScript(t, rec.Body.String())
		}
		checkStates(t, fx.states)
	})
}

func checkScript(t *testing.T, script string) {
	t.Helper()
	if !strings.HasPrefix(script, "#!ipxe\n") {
		t.Fatalf("not an iPXE script:\n%s", script)
	}
	for _, line := range strings.Split(script, "\n") {
		word, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if word != "" && !strings.HasPrefix(word, ":") && !ipxeCommands[word] {
			t.Fatalf("line %q of the script starts with %q:\n%s", line, word, script)
		}
	}
}

func checkStates(t *testing.T, s *state.Store) {
	t.Helper()
	recs, err := s.List()
	if err != nil {
		t.Fatalf("state unreadable: %v", err)
	}
	for _, r := range recs {
		switch r.State {
		case state.Install, state.Installing, state.Installed, state.Failed:
		default:
			b, _ := json.Marshal(r)
			t.Fatalf("record in state %q: %s", r.State, b)
		}
	}
}

// Package gatetest is a stand-in gate for tests: it serves one machine's
// install manifest and bundle files over httptest on loopback and records
// what the installer reports.
package gatetest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/kilnlab/kiln/image/bundle"
	"github.com/kilnlab/kiln/installer/gateclient"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/pxe/api"
)

// Gate is a running stand-in gate.
type Gate struct {
	URL   string
	Token string

	mu       sync.Mutex
	manifest api.InstallManifest
	files    map[string][]byte
	progress []api.Progress
	results  []api.Result
	booted   []api.Booted
	phases   []api.Phase
	health   []api.Health
	refuse   int  // SetRefuse
	netboot  bool // SetNetboot
	// Corrupt, when set, is a bundle path served with its first byte
	// flipped (the manifest keeps the right hash).
	Corrupt string
	// Secrets is the machine's secret config, handed out sealed once
	// for the token (then 403, as the real gate does).
	Secrets      []byte
	secretsTaken int
}

// New serves m with files (bundle path -> content; manifest entries are
// filled in from them) until the test ends.
func New(t testing.TB, m plan.Machine, token string, files map[string]string, named map[string]string) *Gate {
	t.Helper()
	g := &Gate{Token: token, files: map[string][]byte{}}
	g.manifest = api.InstallManifest{Machine: m, Files: map[string]bundle.File{}}
	for p, c := range files {
		g.files[p] = []byte(c)
	}
	for key, p := range named {
		sum := sha256.Sum256(g.files[p])
		g.manifest.Files[key] = bundle.File{Path: p, Size: int64(len(g.files[p])), SHA256: hex.EncodeToString(sum[:])}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+api.PathInstall+"{mac}", g.install)
	mux.HandleFunc("GET "+api.PathFiles+"{path...}", g.file)
	mux.HandleFunc("POST "+api.PathSecrets+"{mac}", g.secrets)
	mux.HandleFunc("POST "+api.PathProgress+"{mac}", record(g, &g.progress, true))
	mux.HandleFunc("POST "+api.PathResult+"{mac}", record(g, &g.results, true))
	mux.HandleFunc("POST "+api.PathBooted+"{mac}", record(g, &g.booted, false))
	mux.HandleFunc("POST "+api.PathPhase+"{mac}", g.refusing(record(g, &g.phases, false)))
	mux.HandleFunc("POST "+api.PathHealth+"{mac}", g.refusing(g.healthReport))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	g.URL = srv.URL
	return g
}

func (g *Gate) allowed(r *http.Request) bool {
	return r.URL.Query().Get("token") == g.Token && strings.EqualFold(r.PathValue("mac"), g.manifest.Machine.MAC)
}

func (g *Gate) install(w http.ResponseWriter, r *http.Request) {
	if !g.allowed(r) {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	_ = json.NewEncoder(w).Encode(g.manifest)
}

func (g *Gate) secrets(w http.ResponseWriter, r *http.Request) {
	var req api.SecretsRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.allowed(r) || g.secretsTaken > 0 {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	resp, err := api.Seal(req, g.manifest.Machine.MAC, g.Secrets)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	g.secretsTaken++
	_ = json.NewEncoder(w).Encode(resp)
}

// Rearm lets the machine install again, as kiln gate reinstall does: its
// secrets can be had once more, and the manifest says whether this is a
// reinstall (the real gate's: the machine was installed before).
func (g *Gate) Rearm(reinstall bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.secretsTaken = 0
	g.manifest.Reinstall = reinstall
}

// TakeSecrets marks the secrets as handed out already (another host used
// the token first).
func (g *Gate) TakeSecrets() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.secretsTaken++
}

func (g *Gate) file(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	b, ok := g.files[r.PathValue("path")]
	corrupt := r.PathValue("path") == g.Corrupt
	g.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	if corrupt && len(b) > 0 {
		b = append([]byte{b[0] ^ 0xff}, b[1:]...)
	}
	_, _ = w.Write(b)
}

func record[T any](g *Gate, into *[]T, token bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if token && !g.allowed(r) {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		var v T
		if err := json.NewDecoder(r.Body).Decode(&v); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		g.mu.Lock()
		*into = append(*into, v)
		g.mu.Unlock()
	}
}

func (g *Gate) refusing(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		code := g.refuse
		g.mu.Unlock()
		if code != 0 {
			http.Error(w, http.StatusText(code), code)
			return
		}
		h(w, r)
	}
}

// healthReport records a health report and answers it as the real gate
// does: 204, or the netboot request of SetNetboot.
func (g *Gate) healthReport(w http.ResponseWriter, r *http.Request) {
	var h api.Health
	if err := json.NewDecoder(r.Body).Decode(&h); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	g.mu.Lock()
	g.health = append(g.health, h)
	netboot := g.netboot
	g.mu.Unlock()
	if !netboot {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	_ = json.NewEncoder(w).Encode(api.HealthAnswer{Netboot: true})
}

// SetNetboot makes the gate answer health reports as it does for a
// re-armed machine: its next boot must be a netboot.
func (g *Gate) SetNetboot(on bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.netboot = on
}

// SetRefuse makes the gate answer every phase and health report with
// HTTP status code (a gate that is unwell or refuses); 0 accepts them
// again.
func (g *Gate) SetRefuse(code int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refuse = code
}

// Phases returns the reported first-boot phases so far.
func (g *Gate) Phases() []api.Phase {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]api.Phase(nil), g.phases...)
}

// Health returns the health reports so far.
func (g *Gate) Health() []api.Health {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]api.Health(nil), g.health...)
}

// Progress returns the reported progress so far.
func (g *Gate) Progress() []api.Progress {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]api.Progress(nil), g.progress...)
}

// Results returns the reported results so far.
func (g *Gate) Results() []api.Result {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]api.Result(nil), g.results...)
}

// Booted returns the reported first boots so far.
func (g *Gate) Booted() []api.Booted {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]api.Booted(nil), g.booted...)
}

// Client returns a client of this gate for its machine.
func (g *Gate) Client() *gateclient.Client {
	return &gateclient.Client{Base: g.URL, MAC: g.manifest.Machine.MAC, Token: g.Token}
}

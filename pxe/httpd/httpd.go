// Package httpd owns the gate's HTTP side of netboot: the static
// /boot.ipxe every iPXE client is sent to, the per-machine /ipxe/{mac}
// script chosen by the machine's install state, the bundle files under
// /files/ (read-only, confined to the bundle by an os.Root), and the
// installer API (install manifest for a one-time token, progress, result,
// secrets), the reports of installed machines on the TLS port (first boot,
// its phases, services' health), and the read-only status page (/ and
// /status.json). It decides what a netboot does; pxe/state remembers it.
//
// The iPXE leg is plain HTTP (Debian's iPXE has no HTTPS), so the only
// credential on it is the one-time install token of a machine in state
// install, bound to its MAC and consumed by its result.
package httpd

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kilnlab/kiln/image/bundle"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/pxe/api"
	"github.com/kilnlab/kiln/pxe/state"
)

// maxBody bounds installer API request bodies.
const maxBody = 64 << 10

// Config is what the HTTP service needs.
type Config struct {
	Plan      *plan.Plan
	BundleDir string
	States    *state.Store
	// GateURL is how machines reach this service, e.g.
	// "http://192.168.1.10:8080" (no trailing slash).
	GateURL string
	Log     *slog.Logger
	Now     func() time.Time
	// ProcRoot is where the status page reads uptime and memory
	// ("/proc" when empty; tests point it at fixtures).
	ProcRoot string
	// StateFS says how full the file system of the machine states is
	// (used and total bytes); nil: statfs of States' folder. Tests fix it.
	StateFS func(dir string) (used, total uint64, err error)
	// Secrets holds each machine's secret config, handed to its
	// installer once per install; nil: none is handed out.
	Secrets MachineSecrets
	// ClientCAs is the lab CA: the certificates machines report with on
	// the TLS port must chain to it; nil refuses every report.
	ClientCAs *x509.CertPool
	// Vault unseals the storage nodes' Vaults with the lab's keys; nil
	// when the lab runs no Vault. VaultUnseal is the profile's unseal
	// mode (profiles.UnsealGate or UnsealManual).
	Vault       Unsealer
	VaultUnseal string
}

// Server serves the gate's HTTP API.
type Server struct {
	cfg   Config
	root  *os.Root
	files map[string]bundle.File
	byMAC map[string]*plan.Machine
	// refused keeps the last refused installer requests for the status
	// page.
	refused *refusals
}

// New opens the bundle and reads its manifest.json.
func New(cfg Config) (*Server, error) {
	if cfg.Plan == nil || cfg.States == nil || cfg.Log == nil {
		return nil, errors.New("httpd: Plan, States and Log are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.StateFS == nil {
		cfg.StateFS = fsUsage
	}
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	man, err := bundle.ReadManifest(cfg.BundleDir)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(cfg.BundleDir)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	s := &Server{cfg: cfg, root: root, files: man.ByPath(), byMAC: map[string]*plan.Machine{}, refused: &refusals{}}
	for i := range cfg.Plan.Machines {
		m := &cfg.Plan.Machines[i]
		mac, err := state.NormalizeMAC(m.MAC)
		if err != nil {
			root.Close()
			return nil, fmt.Errorf("plan machine %s: %w", m.Name, err)
		}
		s.byMAC[mac] = m
	}
	return s, nil
}

// Close releases the bundle.
func (s *Server) Close() error { return s.root.Close() }

// Netboot says whether kiln may netboot m, and why not: the gate itself
// and Raspberry Pi boards boot from their SD card, never from the gate.
func Netboot(p *plan.Plan, m *plan.Machine) (bool, string) {
	switch {
	case m.Name == p.Gate.Name:
		return false, "the gate itself"
	case m.Board == profiles.BoardRPi4:
		return false, "board " + profiles.BoardRPi4 + " boots from its SD card"
	}
	return true, ""
}

// Handler routes the API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boot.ipxe", s.bootScript)
	mux.HandleFunc("GET /ipxe/{mac}", s.machineScript)
	mux.HandleFunc("GET "+api.PathFiles+"{path...}", s.file)
	mux.HandleFunc("GET "+api.PathInstall+"{mac}", s.install)
	mux.HandleFunc("POST "+api.PathProgress+"{mac}", s.progress)
	mux.HandleFunc("POST "+api.PathResult+"{mac}", s.result)
	mux.HandleFunc("POST "+api.PathSecrets+"{mac}", s.secrets)
	// Reports of installed machines go to the TLS port (TLSHandler).
	mux.HandleFunc("POST "+api.PathBooted+"{mac}", s.unidentified)
	mux.HandleFunc("POST "+api.PathPhase+"{mac}", s.unidentified)
	mux.HandleFunc("POST "+api.PathHealth+"{mac}", s.unidentified)
	// The status page is read-only: other methods get 405 from the mux.
	mux.HandleFunc("GET /{$}", s.statusPage)
	mux.HandleFunc("GET /status.json", s.statusJSON)
	return mux
}

// machine resolves the {mac} of a request to a plan machine.
func (s *Server) machine(r *http.Request) (string, *plan.Machine, error) {
	mac, err := state.NormalizeMAC(r.PathValue("mac"))
	if err != nil {
		return "", nil, err
	}
	m, ok := s.byMAC[mac]
	if !ok {
		return mac, nil, errors.New("MAC not in the plan")
	}
	return mac, m, nil
}

func (s *Server) reqLog(r *http.Request) *slog.Logger {
	return s.cfg.Log.With("peer", r.RemoteAddr, "path", r.URL.Path)
}

// file serves a bundle file with http.ServeContent (Range, sizes).
func (s *Server) file(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("path")
	if !confined(name) {
		s.reqLog(r).Warn("http: bundle path refused")
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	f, err := s.root.Open(name)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			s.reqLog(r).Warn("http: bundle file refused", "err", err)
		}
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	defer cork(r)()
	http.ServeContent(w, r, name, st.ModTime(), f)
}

// confined is the lexical half of the /files/ confinement (os.Root does
// the symlink half): a clean relative path with no "..", NUL or "\".
func confined(name string) bool {
	if name == "" || strings.ContainsAny(name, "\x00\\") || !filepath.IsLocal(name) {
		return false
	}
	for _, e := range strings.Split(name, "/") {
		if e == "" || e == "." || e == ".." {
			return false
		}
	}
	return true
}

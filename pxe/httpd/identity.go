package httpd

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/pxe/api"
	"github.com/kilnlab/kiln/pxe/state"
)

// MachineSecrets gives a machine's secret Ignition config by name (the
// gate's share of the lab's secrets, image/secrets.GateStore).
type MachineSecrets interface {
	MachineSecrets(name string) ([]byte, error)
}

// secrets trades the install's token, once, for the machine's secrets,
// sealed to the key the installer sent (api.Seal): a second use of the
// token, another MAC's token, or a machine not installing is refused,
// logged and shown on the status page.
func (s *Server) secrets(w http.ResponseWriter, r *http.Request) {
	mac, m, log, ok := s.authed(w, r)
	if !ok {
		return
	}
	var req api.SecretsRequest
	if !readJSON(w, r, log, &req) {
		return
	}
	// The credential first: whoever lacks it learns nothing, not even
	// whether the gate holds secrets for the machine.
	token := r.URL.Query().Get("token")
	if err := s.cfg.States.Authorize(mac, m.Name, token); err != nil {
		s.stateErr(w, r, log, err)
		return
	}
	if s.cfg.Secrets == nil {
		log.Error("api: an installer asks for its secrets but the gate holds none (a bundle served without its gate secrets?)")
		http.Error(w, "the gate holds no secrets", http.StatusServiceUnavailable)
		return
	}
	ign, err := s.cfg.Secrets.MachineSecrets(m.Name)
	if err != nil {
		log.Error("api: machine secrets", "err", err)
		http.Error(w, "no secrets for this machine", http.StatusInternalServerError)
		return
	}
	// Seal before recording the hand-out: a malformed key must not use
	// up the install's one chance.
	resp, err := api.Seal(req, mac, ign)
	if err != nil {
		log.Warn("api: bad secrets request", "err", err)
		http.Error(w, "bad request body", http.StatusBadRequest)
		return
	}
	if _, err := s.cfg.States.HandOutSecrets(mac, m.Name, token, r.RemoteAddr); err != nil {
		s.stateErr(w, r, log, err)
		return
	}
	log.Info("api: secrets handed out, sealed")
	writeJSON(w, resp)
}

// identified resolves the machine of a report on the gate's TLS port and
// checks the client certificate the machine presented: it must chain to
// the lab CA, be meant for clients, and name the very machine whose MAC
// the path carries. Every refusal is logged and shown.
func (s *Server) identified(w http.ResponseWriter, r *http.Request) (string, *plan.Machine, *slog.Logger, bool) {
	log := s.reqLog(r)
	mac, m, err := s.machine(r)
	if err != nil {
		s.forbid(w, r, log.With("mac", r.PathValue("mac")), "unknown machine", err)
		return "", nil, nil, false
	}
	log = log.With("mac", mac, "machine", m.Name)
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		s.forbid(w, r, log, "report without the machine's certificate", nil)
		return "", nil, nil, false
	}
	leaf := r.TLS.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range r.TLS.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if s.cfg.ClientCAs == nil {
		s.forbid(w, r, log, "the gate has no lab CA to check reports with", nil)
		return "", nil, nil, false
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: s.cfg.ClientCAs, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: s.cfg.Now()}); err != nil {
		s.forbid(w, r, log, "certificate not from the lab CA", err)
		return "", nil, nil, false
	}
	if cn := leaf.Subject.CommonName; cn != m.Name {
		s.forbid(w, r, log, fmt.Sprintf("report for %s signed as %s", m.Name, cn), nil)
		return "", nil, nil, false
	}
	return mac, m, log, true
}

// unidentified refuses a report sent without TLS (the plain port): since
// machines have identities, any LAN host could otherwise mark any machine
// booted.
func (s *Server) unidentified(w http.ResponseWriter, r *http.Request) {
	log := s.reqLog(r).With("mac", r.PathValue("mac"))
	s.forbid(w, r, log, "report without the machine's identity (reports go to the gate's TLS port)", nil)
}

// booted records the role OS's first-boot report, sent with the
// machine's certificate.
func (s *Server) booted(w http.ResponseWriter, r *http.Request) {
	mac, m, log, ok := s.identified(w, r)
	if !ok {
		return
	}
	var b api.Booted
	if !readJSON(w, r, log, &b) {
		return
	}
	before, err := s.cfg.States.Get(mac, m.Name)
	if err != nil {
		log.Error("api: recording boot", "err", err)
		http.Error(w, "state unreadable", http.StatusInternalServerError)
		return
	}
	rec, err := s.cfg.States.MarkBooted(mac, m.Name, state.Booted{Hostname: b.Hostname, Address: b.Address})
	if err != nil {
		log.Error("api: recording boot", "err", err)
		http.Error(w, "state write failed", http.StatusInternalServerError)
		return
	}
	if before.State != rec.State {
		log.Warn("api: the installer's result never came; the machine's first boot says it is installed", "was", before.State)
	}
	log.Info("api: machine booted", "hostname", b.Hostname, "address", b.Address)
	w.WriteHeader(http.StatusNoContent)
}

// TLSHandler routes the gate's TLS port: the reports of installed
// machines (first boot, its phases, services' health), each identified by
// its certificate (Server.identified).
func (s *Server) TLSHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+api.PathBooted+"{mac}", s.booted)
	mux.HandleFunc("POST "+api.PathPhase+"{mac}", s.phase)
	mux.HandleFunc("POST "+api.PathHealth+"{mac}", s.health)
	mux.HandleFunc("POST "+api.PathVaultUnseal+"{mac}", s.vaultUnseal)
	return mux
}

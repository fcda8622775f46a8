package httpd

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/kilnlab/kiln/image/bundle"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/pxe/api"
	"github.com/kilnlab/kiln/pxe/state"
)

// ManifestFiles lists the bundle files m's installer writes.
func (s *Server) ManifestFiles(m *plan.Machine) (map[string]bundle.File, error) {
	want := map[string]string{
		api.FileESP:    bundle.ESP(m.Name),
		api.FileRoot:   m.RoleImage,
		api.FileState:  bundle.State(m.Name),
		api.FileGPTMBR: bundle.GPTMBR,
	}
	out := make(map[string]bundle.File, len(want))
	for key, path := range want {
		f, ok := s.files[path]
		if path == "" || !ok {
			return nil, fmt.Errorf("bundle manifest has no %s file %q for %s", key, path, m.Name)
		}
		out[key] = f
	}
	return out, nil
}

// forbid answers 403, logs why and keeps it for the status page: a
// refused credential is worth noticing (a LAN attacker racing the real
// machine shows up here).
func (s *Server) forbid(w http.ResponseWriter, r *http.Request, log *slog.Logger, why string, err error) {
	log.Warn("api: refused", "why", why, "err", err)
	s.refused.add(s.refusal(r, why, err))
	http.Error(w, "forbidden", http.StatusForbidden)
}

// authed resolves the machine of an installer API request; the token is
// checked by the state transition itself.
func (s *Server) authed(w http.ResponseWriter, r *http.Request) (string, *plan.Machine, *slog.Logger, bool) {
	log := s.reqLog(r)
	mac, m, err := s.machine(r)
	if err != nil {
		s.forbid(w, r, log.With("mac", r.PathValue("mac")), "unknown machine", err)
		return "", nil, nil, false
	}
	log = log.With("mac", mac, "machine", m.Name)
	if ok, why := Netboot(s.cfg.Plan, m); !ok {
		s.forbid(w, r, log, "machine is never netbooted: "+why, nil)
		return "", nil, nil, false
	}
	return mac, m, log, true
}

func (s *Server) install(w http.ResponseWriter, r *http.Request) {
	mac, m, log, ok := s.authed(w, r)
	if !ok {
		return
	}
	token := r.URL.Query().Get("token")
	if err := s.cfg.States.Authorize(mac, m.Name, token); err != nil {
		s.stateErr(w, r, log, err)
		return
	}
	files, err := s.ManifestFiles(m)
	if err != nil {
		log.Error("api: install manifest", "err", err)
		http.Error(w, "bundle incomplete", http.StatusInternalServerError)
		return
	}
	rec, err := s.cfg.States.BeginInstall(mac, m.Name, token)
	if err != nil {
		s.stateErr(w, r, log, err)
		return
	}
	reinstall := rec.Installs > 0
	log.Info("api: install manifest handed out", "reinstall", reinstall)
	writeJSON(w, api.InstallManifest{Machine: *m, Files: files, Reinstall: reinstall})
}

func (s *Server) progress(w http.ResponseWriter, r *http.Request) {
	mac, m, log, ok := s.authed(w, r)
	if !ok {
		return
	}
	var p api.Progress
	if !readJSON(w, r, log, &p) {
		return
	}
	if _, err := s.cfg.States.ReportProgress(mac, m.Name, r.URL.Query().Get("token"), state.Progress(p)); err != nil {
		s.stateErr(w, r, log, err)
		return
	}
	log.Info("api: progress", "phase", p.Phase, "message", p.Message, "done", p.Done, "total", p.Total)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) result(w http.ResponseWriter, r *http.Request) {
	mac, m, log, ok := s.authed(w, r)
	if !ok {
		return
	}
	var res api.Result
	if !readJSON(w, r, log, &res) {
		return
	}
	rec, err := s.cfg.States.Finish(mac, m.Name, r.URL.Query().Get("token"), res.OK, res.Error)
	if err != nil {
		s.stateErr(w, r, log, err)
		return
	}
	if res.OK {
		log.Info("api: install succeeded", "state", rec.State)
	} else {
		log.Error("api: install failed", "state", rec.State, "error", rec.Error)
	}
	w.WriteHeader(http.StatusNoContent)
}

// stateErr maps a refused state transition to 403, anything else to 500.
// The state's error is the whole reason (a wrong or used token, the
// machine's state), so it is the why, unprefixed, on a narrow page.
func (s *Server) stateErr(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	if errors.Is(err, state.ErrBadToken) || errors.Is(err, state.ErrWrongState) || errors.Is(err, state.ErrSecretsTaken) {
		s.forbid(w, r, log, err.Error(), nil)
		return
	}
	log.Error("api: state", "err", err)
	http.Error(w, "state write failed", http.StatusInternalServerError)
}

func readJSON(w http.ResponseWriter, r *http.Request, log *slog.Logger, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	if err := dec.Decode(v); err != nil {
		log.Warn("api: bad request body", "err", err)
		http.Error(w, "bad request body", http.StatusBadRequest)
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

package httpd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/kilnlab/kiln/pxe/api"
	"github.com/kilnlab/kiln/pxe/state"
)

// The reports of an installed machine's first boot (its phases) and of
// its services' health arrive on the TLS port from the machine itself
// (Server.identified), but a machine can be buggy or taken over: every
// field is checked here before it reaches the state or the page, and a
// report that does not fit the contract is refused whole (400, logged)
// rather than trimmed into something the machine did not say.

// errBadReport wraps every reason a report is refused.
var errBadReport = errors.New("bad report")

// decodePhase reads one api.Phase and checks it: a known phase status, a
// name (and task) that is a short printable word, free text of at most
// api.MaxText bytes, and an error exactly when the phase failed.
func decodePhase(r io.Reader) (api.Phase, error) {
	var p api.Phase
	if err := decodeOne(r, &p); err != nil {
		return api.Phase{}, err
	}
	if err := checkName("phase", p.Phase, true); err != nil {
		return api.Phase{}, err
	}
	if err := checkName("task", p.Task, false); err != nil {
		return api.Phase{}, err
	}
	switch p.Status {
	case api.PhaseRunning, api.PhaseDone:
		if p.Error != "" {
			return api.Phase{}, fmt.Errorf("%w: an error with status %q", errBadReport, p.Status)
		}
	case api.PhaseFailed:
		if p.Error == "" {
			return api.Phase{}, fmt.Errorf("%w: a failed phase without its error", errBadReport)
		}
	default:
		return api.Phase{}, fmt.Errorf("%w: phase status %q", errBadReport, clip(p.Status))
	}
	if err := checkText("message", p.Message); err != nil {
		return api.Phase{}, err
	}
	if err := checkText("error", p.Error); err != nil {
		return api.Phase{}, err
	}
	return p, nil
}

// decodeHealth reads one api.Health and checks it: at most
// api.MaxServices services, each named once, with a known status.
func decodeHealth(r io.Reader) (api.Health, error) {
	var h api.Health
	if err := decodeOne(r, &h); err != nil {
		return api.Health{}, err
	}
	if len(h.Services) > api.MaxServices {
		return api.Health{}, fmt.Errorf("%w: %d services, at most %d", errBadReport, len(h.Services), api.MaxServices)
	}
	seen := map[string]bool{}
	for _, sv := range h.Services {
		if err := checkName("service", sv.Name, true); err != nil {
			return api.Health{}, err
		}
		if seen[sv.Name] {
			return api.Health{}, fmt.Errorf("%w: service %q twice", errBadReport, sv.Name)
		}
		seen[sv.Name] = true
		switch sv.Status {
		case api.HealthOK, api.HealthWarn, api.HealthFailed, api.HealthStarting:
		default:
			return api.Health{}, fmt.Errorf("%w: service %q status %q", errBadReport, sv.Name, clip(sv.Status))
		}
		if err := checkText("detail", sv.Detail); err != nil {
			return api.Health{}, err
		}
	}
	return h, nil
}

// decodeOne decodes exactly one JSON value (the caller bounds r).
// Unknown fields are ignored, as on the installer's routes: a machine
// installed by a newer kiln may say more than this gate knows.
func decodeOne(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", errBadReport, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: data after the report", errBadReport)
	}
	return nil
}

// checkName: a phase, task or service name is what a role declares, a
// short word of printable characters; required says whether it may be
// empty.
func checkName(what, s string, required bool) error {
	switch {
	case s == "" && required:
		return fmt.Errorf("%w: no %s name", errBadReport, what)
	case len(s) > api.MaxName:
		return fmt.Errorf("%w: %s name of %d bytes, at most %d", errBadReport, what, len(s), api.MaxName)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s name is not UTF-8", errBadReport, what)
	case strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) >= 0:
		return fmt.Errorf("%w: %s name %q has spaces or control characters", errBadReport, what, clip(s))
	}
	return nil
}

// checkText: a message, error or detail is UTF-8 text of at most
// api.MaxText bytes; lines and tabs are fine (a command's output), other
// control characters are not (they would reach the gate's log and
// terminals).
func checkText(what, s string) error {
	switch {
	case len(s) > api.MaxText:
		return fmt.Errorf("%w: %s of %d bytes, at most %d", errBadReport, what, len(s), api.MaxText)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s is not UTF-8", errBadReport, what)
	case strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }) >= 0:
		return fmt.Errorf("%w: %s has control characters", errBadReport, what)
	}
	return nil
}

// badReport answers 400 and logs why: not a refused identity (the
// machine is who it says), but a report this gate will not record.
func badReport(w http.ResponseWriter, log *slog.Logger, err error) {
	log.Warn("api: report refused", "err", err)
	http.Error(w, "bad report", http.StatusBadRequest)
}

// phase records a first-boot phase report, sent with the machine's
// certificate.
func (s *Server) phase(w http.ResponseWriter, r *http.Request) {
	mac, m, log, ok := s.identified(w, r)
	if !ok {
		return
	}
	p, err := decodePhase(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		badReport(w, log, err)
		return
	}
	if _, err := s.cfg.States.ReportPhase(mac, m.Name, state.PhaseReport(p)); err != nil {
		if errors.Is(err, state.ErrTooManyPhases) {
			badReport(w, log, err)
			return
		}
		log.Error("api: recording a first-boot phase", "err", err)
		http.Error(w, "state write failed", http.StatusInternalServerError)
		return
	}
	level := slog.LevelInfo
	if p.Status == api.PhaseFailed {
		level = slog.LevelWarn
	}
	log.Log(r.Context(), level, "api: first-boot phase", "phase", p.Phase, "status", p.Status, "task", p.Task, "message", p.Message, "error", p.Error)
	w.WriteHeader(http.StatusNoContent)
}

// health records a machine's health report, sent with its certificate.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	mac, m, log, ok := s.identified(w, r)
	if !ok {
		return
	}
	h, err := decodeHealth(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		badReport(w, log, err)
		return
	}
	services := make([]state.Service, len(h.Services))
	var unwell []string
	for i, sv := range h.Services {
		services[i] = state.Service{Name: sv.Name, Status: sv.Status, Detail: sv.Detail}
		if sv.Status != api.HealthOK {
			unwell = append(unwell, sv.Name+"="+sv.Status)
		}
	}
	rec, err := s.cfg.States.ReportHealth(mac, m.Name, state.HealthReport{Services: services, NetbootNext: h.NetbootNext, Boot: h.Boot})
	if err != nil {
		log.Error("api: recording health", "err", err)
		http.Error(w, "state write failed", http.StatusInternalServerError)
		return
	}
	log.Info("api: health", "services", len(services), "not_ok", strings.Join(unwell, " "), "netboot_next", h.NetbootNext)
	if rec.State != state.Install || rec.Installs == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	// Re-armed after an install this gate saw through, and its OS runs: a
	// machine that boots its disk first must be told to netboot
	// (installer/efiboot). One this gate never installed is not: a gate
	// that lost its states does not send every machine to an install.
	if !h.NetbootNext {
		log.Info("api: re-armed; its next boot must be a netboot")
	}
	writeJSON(w, api.HealthAnswer{Netboot: true})
}

package httpd

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/pxe/api"
	"github.com/kilnlab/kiln/pxe/state"
)

// postTLS POSTs body to path+mac on the TLS port, presenting cert (none
// when nil).
func (f *idFixture) postTLS(t *testing.T, path, mac, body string, cert *tls.Certificate) int {
	t.Helper()
	cfg := &tls.Config{InsecureSkipVerify: true}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	resp, err := c.Post(f.tls.URL+path+mac, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestPhaseAndHealthReports: a machine reports its first-boot phases and
// its services' health on the TLS port with its own certificate, and the
// status shows them; the same reports without it, signed as another
// machine, or on the plain port are refused, logged and shown.
func TestPhaseAndHealthReports(t *testing.T) {
	f := newIDFixture(t)
	c1 := f.certs["ceph-1"].TLSCertificate()
	c2 := f.certs["ceph-2"].TLSCertificate()
	for _, body := range []string{
		`{"phase":"storage","status":"running"}`,
		`{"phase":"storage","status":"running","task":"grow-state","message":"task 1 of 1"}`,
		`{"phase":"storage","status":"failed","task":"grow-state","error":"resize2fs: exit status 1\nno such device"}`,
	} {
		if code := f.postTLS(t, api.PathPhase, macC1, body, &c1); code != 204 {
			t.Fatalf("phase report %s = %d, want 204", body, code)
		}
	}
	if code := f.postTLS(t, api.PathHealth, macC1, `{"services":[{"name":"systemd-networkd","status":"ok"},{"name":"k3s","status":"starting","detail":"waiting"}]}`, &c1); code != 204 {
		t.Fatalf("health report = %d, want 204", code)
	}
	st, err := f.srv.Status()
	if err != nil {
		t.Fatal(err)
	}
	ms := st.Machines[1]
	if ms.Name != "ceph-1" || len(ms.Phases) != 1 {
		t.Fatalf("ceph-1 status %+v", ms)
	}
	if p := ms.Phases[0]; p.Status != api.PhaseFailed || p.Task != "grow-state" || p.Error != "resize2fs: exit status 1\nno such device" || p.Attempts != 1 {
		t.Errorf("ceph-1's storage phase %+v", p)
	}
	if h := ms.Health; h == nil || len(h.Services) != 2 || h.Services[1] != (ServiceStatus{Name: "k3s", Status: "starting", Detail: "waiting", Since: h.At}) {
		t.Errorf("ceph-1's health %+v", h)
	}
	if !strings.Contains(f.logs.String(), `level=WARN msg="api: first-boot phase"`) {
		t.Error("a failed phase is not logged as a warning")
	}

	for _, path := range []string{api.PathPhase, api.PathHealth} {
		for _, tc := range []struct {
			name string
			cert *tls.Certificate
			why  string
		}{
			{"no certificate", nil, "without the machine's certificate"},
			{"ceph-2 reports as ceph-1", &c2, "report for ceph-1 signed as ceph-2"},
		} {
			before := len(f.srv.refused.newestFirst())
			if code := f.postTLS(t, path, macC1, `{"phase":"storage","status":"done","services":[]}`, tc.cert); code != 403 {
				t.Errorf("%s %s = %d, want 403", path, tc.name, code)
			}
			after := f.srv.refused.newestFirst()
			if len(after) != before+1 || !strings.Contains(after[0].Why, tc.why) {
				t.Errorf("%s %s: refusal not shown with %q: %+v", path, tc.name, tc.why, after)
			}
		}
		if code, _ := f.do(t, "POST", path+macC1, `{"phase":"storage","status":"done","services":[]}`); code != 403 {
			t.Errorf("%s on the plain port = %d, want 403", path, code)
		}
	}
	rec, err := f.states.Get(macC1, "ceph-1")
	if err != nil || rec.Phases[0].Status != state.PhaseFailed || len(rec.Health.Services) != 2 {
		t.Errorf("a refused report changed the record: %+v, %v", rec, err)
	}
}

// TestBadReports: a report outside the contract is refused whole with
// 400 and a log line, and changes nothing.
func TestBadReports(t *testing.T) {
	f := newIDFixture(t)
	c1 := f.certs["ceph-1"].TLSCertificate()
	var many []string
	for i := range api.MaxServices + 1 {
		many = append(many, fmt.Sprintf(`{"name":"s%d","status":"ok"}`, i))
	}
	for _, tc := range []struct {
		name, path, body, why string
	}{
		{"not JSON", api.PathPhase, `<html>`, "invalid character"},
		{"two reports", api.PathPhase, `{"phase":"a","status":"done"}{"phase":"b","status":"done"}`, "data after the report"},
		{"unknown status", api.PathPhase, `{"phase":"a","status":"skipped"}`, `phase status \"skipped\"`},
		{"no status", api.PathPhase, `{"phase":"a"}`, `phase status \"\"`},
		{"no phase", api.PathPhase, `{"status":"done"}`, "no phase name"},
		{"failed without error", api.PathPhase, `{"phase":"a","status":"failed"}`, "without its error"},
		{"error while running", api.PathPhase, `{"phase":"a","status":"running","error":"x"}`, "an error with status"},
		{"long name", api.PathPhase, `{"phase":"` + strings.Repeat("a", api.MaxName+1) + `","status":"done"}`, "at most 64"},
		{"name with a space", api.PathPhase, `{"phase":"a b","status":"done"}`, "spaces or control"},
		{"task with a newline", api.PathPhase, `{"phase":"a","task":"b\nc","status":"running"}`, "spaces or control"},
		{"escape in message", api.PathPhase, `{"phase":"a","status":"done","message":"\u001b[2J"}`, "control characters"},
		{"long error", api.PathPhase, `{"phase":"a","status":"failed","error":"` + strings.Repeat("e", api.MaxText+1) + `"}`, "at most 2048"},
		{"huge body", api.PathPhase, `{"phase":"a","status":"done","message":"` + strings.Repeat("m", maxBody) + `"}`, "request body too large"},
		{"unknown health", api.PathHealth, `{"services":[{"name":"k3s","status":"fine"}]}`, `status \"fine\"`},
		{"service twice", api.PathHealth, `{"services":[{"name":"k3s","status":"ok"},{"name":"k3s","status":"failed"}]}`, "twice"},
		{"service without name", api.PathHealth, `{"services":[{"status":"ok"}]}`, "no service name"},
		{"too many services", api.PathHealth, `{"services":[` + strings.Join(many, ",") + `]}`, "33 services, at most 32"},
		{"bell in a service name", api.PathHealth, `{"services":[{"name":"k3s\u0007","status":"ok"}]}`, "spaces or control"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.logs.Reset()
			if code := f.postTLS(t, tc.path, macC1, tc.body, &c1); code != 400 {
				t.Errorf("= %d, want 400", code)
			}
			if log := f.logs.String(); !strings.Contains(log, "api: report refused") || !strings.Contains(log, tc.why) {
				t.Errorf("log lacks the refusal and %q:\n%s", tc.why, log)
			}
		})
	}
	rec, err := f.states.Get(macC1, "ceph-1")
	if err != nil || rec.Phases != nil || rec.Health != nil {
		t.Errorf("a bad report was recorded: %+v, %v", rec, err)
	}

	// A machine that reports more phases than a record keeps.
	for i := range state.MaxPhases {
		if code := f.postTLS(t, api.PathPhase, macC1, fmt.Sprintf(`{"phase":"p%d","status":"done"}`, i), &c1); code != 204 {
			t.Fatalf("phase %d = %d", i, code)
		}
	}
	f.logs.Reset()
	if code := f.postTLS(t, api.PathPhase, macC1, `{"phase":"one-more","status":"done"}`, &c1); code != 400 || !strings.Contains(f.logs.String(), "too many first-boot phases") {
		t.Errorf("phase %d = %d, log:\n%s", state.MaxPhases+1, code, f.logs)
	}
}

// TestReportBoundsFit: what the contract lets a machine send, the state
// keeps whole.
func TestReportBoundsFit(t *testing.T) {
	if api.MaxName > state.MaxName || api.MaxText > state.MaxText || api.MaxServices > state.MaxServices {
		t.Errorf("api bounds (name %d, text %d, services %d) exceed the state's (%d, %d, %d)",
			api.MaxName, api.MaxText, api.MaxServices, state.MaxName, state.MaxText, state.MaxServices)
	}
}

// FuzzDecodeReports: whatever a machine sends, a report the gate accepts
// fits the contract (known statuses, bounded printable names, bounded
// UTF-8 text without control characters but lines and tabs) and means
// the same once re-encoded; a refused one says so with errBadReport.
func FuzzDecodeReports(f *testing.F) {
	for _, s := range []string{
		`{"phase":"storage","status":"running"}`,
		`{"phase":"storage","status":"running","task":"grow-state","message":"task 1 of 1"}`,
		`{"phase":"network","status":"failed","task":"wait-address","error":"never\nappeared"}`,
		`{"phase":"a","status":"done","message":"\u001b"}`,
		`{"phase":"a b","status":"done"}`,
		`{"services":[{"name":"k3s","status":"ok"},{"name":"ceph-osd@0","status":"warn","detail":"1 of 2 up"}]}`,
		`{"services":[{"name":"k3s","status":"ok"},{"name":"k3s","status":"ok"}]}`,
		`{"services":null}`,
		`{} {}`,
		"\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePhase(bytes.NewReader(b))
		if err != nil && !errors.Is(err, errBadReport) {
			t.Fatalf("decodePhase error %v does not wrap errBadReport", err)
		}
		if err == nil {
			checkFuzzName(t, p.Phase, true)
			checkFuzzName(t, p.Task, false)
			checkFuzzText(t, p.Message)
			checkFuzzText(t, p.Error)
			if (p.Status == api.PhaseFailed) != (p.Error != "") {
				t.Fatalf("status %q with error %q", p.Status, p.Error)
			}
			if p.Status != api.PhaseRunning && p.Status != api.PhaseDone && p.Status != api.PhaseFailed {
				t.Fatalf("accepted phase status %q", p.Status)
			}
			again, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			q, err := decodePhase(bytes.NewReader(again))
			if err != nil || q != p {
				t.Fatalf("re-encoded %s decodes to %+v, %v; want %+v", again, q, err, p)
			}
		}

		h, err := decodeHealth(bytes.NewReader(b))
		if err != nil && !errors.Is(err, errBadReport) {
			t.Fatalf("decodeHealth error %v does not wrap errBadReport", err)
		}
		if err != nil {
			return
		}
		if len(h.Services) > api.MaxServices {
			t.Fatalf("accepted %d services", len(h.Services))
		}
		seen := map[string]bool{}
		for _, sv := range h.Services {
			checkFuzzName(t, sv.Name, true)
			checkFuzzText(t, sv.Detail)
			if seen[sv.Name] {
				t.Fatalf("accepted service %q twice", sv.Name)
			}
			seen[sv.Name] = true
			switch sv.Status {
			case api.HealthOK, api.HealthWarn, api.HealthFailed, api.HealthStarting:
			default:
				t.Fatalf("accepted service status %q", sv.Status)
			}
		}
		again, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		h2, err := decodeHealth(bytes.NewReader(again))
		if err != nil || !cmp.Equal(h.Services, h2.Services, cmpEmpty) {
			t.Fatalf("re-encoded %s decodes to %+v, %v; want %+v", again, h2, err, h)
		}
	})
}

// cmpEmpty: no services and an empty list of them are the same report.
var cmpEmpty = cmp.Comparer(func(a, b []api.Service) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return cmp.Equal(a, b)
})

func checkFuzzName(t *testing.T, s string, required bool) {
	t.Helper()
	if (required && s == "") || len(s) > api.MaxName || !utf8.ValidString(s) || strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) >= 0 {
		t.Fatalf("accepted name %q", s)
	}
}

func checkFuzzText(t *testing.T, s string) {
	t.Helper()
	if len(s) > api.MaxText || !utf8.ValidString(s) || strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }) >= 0 {
		t.Fatalf("accepted text %q", s)
	}
}

// TestHealthAnswersNetboot: the health report of a machine re-armed after
// an install this gate saw is answered "netboot" until the machine says
// its next boot is one; the status page says what the reinstall waits
// for. A machine this gate never installed is not told.
func TestHealthAnswersNetboot(t *testing.T) {
	f := newIDFixture(t)
	c1 := f.certs["ceph-1"].TLSCertificate()
	post := func(body string) (int, api.HealthAnswer) {
		t.Helper()
		cfg := &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{c1}}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		resp, err := c.Post(f.tls.URL+api.PathHealth+macC1, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var a api.HealthAnswer
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode, a
	}
	status := func() MachineStatus {
		t.Helper()
		st, err := f.srv.Status()
		if err != nil {
			t.Fatal(err)
		}
		return st.Machines[1]
	}

	// Never installed by this gate (its state is the default, install).
	if code, _ := post(`{"services":[]}`); code != http.StatusNoContent {
		t.Errorf("a machine never installed: %d, want 204", code)
	}
	if ms := status(); ms.Reinstall != "" || ms.NetbootNext {
		t.Errorf("never installed: status %q, %v", ms.Reinstall, ms.NetbootNext)
	}
	// Installed, then re-armed by the operator.
	if _, err := f.states.Update(macC1, "ceph-1", func(r *state.Record) error {
		r.State, r.Installs = state.Installed, 1
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if code, _ := post(`{"services":[]}`); code != http.StatusNoContent {
		t.Errorf("installed: %d, want 204", code)
	}
	if _, err := f.states.Rearm(macC1, "ceph-1"); err != nil {
		t.Fatal(err)
	}
	if ms := status(); ms.NetbootNext || !strings.Contains(ms.Reinstall, "next health report") {
		t.Errorf("re-armed: status %q, %v", ms.Reinstall, ms.NetbootNext)
	}
	if code, a := post(`{"services":[]}`); code != http.StatusOK || !a.Netboot {
		t.Errorf("re-armed: %d %+v, want 200 netboot", code, a)
	}
	if code, a := post(`{"services":[],"netboot_next":true}`); code != http.StatusOK || !a.Netboot {
		t.Errorf("re-armed, its next boot a netboot: %d %+v", code, a)
	}
	if ms := status(); !ms.NetbootNext || !strings.Contains(ms.Reinstall, "its next power-on installs it") {
		t.Errorf("netboot next: status %q, %v", ms.Reinstall, ms.NetbootNext)
	}
	if !strings.Contains(f.logs.String(), "its next boot must be a netboot") {
		t.Error("the request to netboot is not logged")
	}
	// A boot no netboot began (it booted its disk) is its power-on.
	post(`{"services":[],"boot":"2026-01-02T03:04:05Z"}`)
	if ms := status(); !ms.DiskBoot || !ms.PowerOn.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("after a disk boot: power-on %v, disk boot %v", ms.PowerOn, ms.DiskBoot)
	}
}

package httpd

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/image/secrets"
	"github.com/kilnlab/kiln/pxe/api"
	"github.com/kilnlab/kiln/pxe/state"
)

const macC2 = "52:54:00:00:01:02"

// idFixture is a gate with both ports: plain (installer API, secrets)
// and TLS (reports), a lab CA and machine certificates, and another
// lab's CA for a forged identity.
type idFixture struct {
	*fixture
	srv   *Server
	tls   *httptest.Server
	certs map[string]secrets.MachineCert
	alien secrets.MachineCert
	ign   map[string][]byte
}

type memSecrets map[string][]byte

func (m memSecrets) MachineSecrets(name string) ([]byte, error) {
	if b, ok := m[name]; ok {
		return b, nil
	}
	return nil, secrets.ErrNoMachineSecrets
}

func newIDFixture(t *testing.T) *idFixture {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "lab")
	ca, err := secrets.LabCA(dir, "homelab")
	if err != nil {
		t.Fatal(err)
	}
	certs, err := secrets.MachineCerts(dir, ca, []secrets.Machine{{Hostname: "gate-1"}, {Hostname: "ceph-1"}, {Hostname: "ceph-2"}})
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other")
	oca, err := secrets.LabCA(other, "homelab")
	if err != nil {
		t.Fatal(err)
	}
	alien, err := secrets.MachineCerts(other, oca, []secrets.Machine{{Hostname: "ceph-1"}})
	if err != nil {
		t.Fatal(err)
	}
	ign := memSecrets{"ceph-1": []byte(`{"ignition":{"version":"3.5.0"},"storage":{"files":[{"path":"/etc/kiln/secrets/machine.key","contents":{"source":"data:,KEY-OF-CEPH-1"}}]}}`)}
	c := &clock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	states, err := state.Open(t.TempDir(), c.now)
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	s, err := New(Config{
		Plan: testPlan(), BundleDir: fakeBundle(t), States: states, GateURL: gateURL,
		Log: slog.New(slog.NewTextHandler(logs, nil)), Now: c.now, Secrets: ign, ClientCAs: ca.Pool(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	plain := httptest.NewServer(s.Handler())
	t.Cleanup(plain.Close)
	ts := httptest.NewUnstartedServer(s.TLSHandler())
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{certs["gate-1"].TLSCertificate()}, ClientAuth: tls.RequestClientCert}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return &idFixture{
		fixture: &fixture{srv: plain, states: states, clock: c, logs: logs},
		srv:     s, tls: ts, certs: certs, alien: alien["ceph-1"], ign: ign,
	}
}

// report POSTs a booted report to the TLS port, presenting cert (none
// when nil).
func (f *idFixture) report(t *testing.T, mac string, cert *tls.Certificate) int {
	t.Helper()
	cfg := &tls.Config{InsecureSkipVerify: true}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	resp, err := c.Post(f.tls.URL+api.PathBooted+mac, "application/json", strings.NewReader(`{"hostname":"ceph-1","address":"192.168.1.11/24"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (f *idFixture) token(t *testing.T, mac string) string {
	t.Helper()
	_, body := f.do(t, "GET", "/ipxe/"+mac, "")
	m := tokenRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no token for %s:\n%s", mac, body)
	}
	return m[1]
}

func (f *idFixture) askSecrets(t *testing.T, mac, token string) (int, []byte) {
	t.Helper()
	key, err := api.NewSecretsKey()
	if err != nil {
		t.Fatal(err)
	}
	req, _ := json.Marshal(api.SecretsRequest{PublicKey: key.PublicKey().Bytes()})
	code, body := f.do(t, "POST", api.PathSecrets+mac+"?token="+token, string(req))
	if code != 200 {
		return code, nil
	}
	var resp api.SecretsResponse
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		t.Fatal(err)
	}
	b, err := api.Open(key, mac, resp)
	if err != nil {
		t.Fatalf("the installer cannot open its secrets: %v", err)
	}
	if strings.Contains(body, "KEY-OF-CEPH-1") {
		t.Error("the secrets crossed the wire unsealed")
	}
	return code, b
}

// TestSecretsOnce: the token of an install buys its machine's secrets
// once; a second use, another machine's token, a machine not installing,
// and no token at all are refused, logged and on the status page.
func TestSecretsOnce(t *testing.T) {
	f := newIDFixture(t)
	tok := f.token(t, macC1)
	if code, _ := f.askSecrets(t, macC1, tok); code != 403 {
		t.Errorf("secrets before the manifest = %d, want 403", code)
	}
	if code, _ := f.do(t, "GET", api.PathInstall+macC1+"?token="+tok, ""); code != 200 {
		t.Fatalf("manifest = %d", code)
	}
	tok2 := f.token(t, macC2)
	if code, _ := f.do(t, "GET", api.PathInstall+macC2+"?token="+tok2, ""); code != 500 {
		// ceph-2's bundle is incomplete in the fake: it never installs.
		t.Logf("ceph-2 manifest = %d", code)
	}
	for _, tc := range []struct{ name, mac, token string }{
		{"no token", macC1, ""},
		{"wrong token", macC1, "00112233445566778899aabbccddeeff"},
		{"ceph-1's token on ceph-2's MAC", macC2, tok},
		{"unknown MAC", macLost, tok},
	} {
		if code, _ := f.askSecrets(t, tc.mac, tc.token); code != 403 {
			t.Errorf("%s: %d, want 403", tc.name, code)
		}
	}
	code, got := f.askSecrets(t, macC1, tok)
	if code != 200 || !bytes.Equal(got, f.ign["ceph-1"]) {
		t.Fatalf("secrets = %d %q, want ceph-1's", code, got)
	}
	if code, _ := f.askSecrets(t, macC1, tok); code != 403 {
		t.Errorf("second use of the token for secrets = %d, want 403", code)
	}
	rec, _ := f.states.Get(macC1, "ceph-1")
	if len(rec.Handouts) != 1 || rec.Handouts[0].At.IsZero() || rec.Handouts[0].Remote == "" {
		t.Errorf("the hand-out is not recorded: %+v", rec.Handouts)
	}
	st, err := f.srv.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, ms := range st.Machines {
		if ms.Name == "ceph-1" && (len(ms.Secrets) != 1 || ms.Secrets[0].To != "127.0.0.1") {
			t.Errorf("status: ceph-1's hand-out = %+v, want one to 127.0.0.1", ms.Secrets)
		}
	}
	var whys []string
	for _, r := range st.Refused {
		whys = append(whys, r.Path+": "+r.Why)
	}
	all := strings.Join(whys, "\n")
	for _, want := range []string{"secrets already handed out", "wrong or consumed install token", "not in a state", "unknown machine"} {
		if !strings.Contains(all, want) {
			t.Errorf("status page refusals lack %q:\n%s", want, all)
		}
	}
	if strings.Contains(f.logs.String(), "KEY-OF-CEPH-1") || strings.Contains(all, tok) {
		t.Error("a secret or the token shows in the logs or on the status page")
	}
	// The page shows it on ceph-1's line: the hand-out, and the latest
	// three of the four refusals naming ceph-1 (the one before the
	// manifest is in the refused table).
	_, page := f.do(t, "GET", "/", "")
	rows, err := pageRows(page)
	if err != nil {
		t.Fatal(err)
	}
	var line []string
	for _, r := range rows {
		if r.Name != "ceph-1" {
			continue
		}
		for _, it := range r.Items {
			line = append(line, it.Key+": "+it.Fields["secrets-to"]+it.Fields["refusal-what"]+" "+it.Fields["refusal-why"])
		}
		line = append(line, r.Fields["refused-more"])
	}
	if diff := cmp.Diff([]string{
		"secrets 0: 127.0.0.1 ",
		"refusal 0: secrets hand-out secrets already handed out for this install",
		"refusal 1: secrets hand-out wrong or consumed install token",
		"refusal 2: secrets hand-out wrong or consumed install token",
		"1 more",
	}, line); diff != "" {
		t.Errorf("ceph-1 on the status page (-want +got)\n%s", diff)
	}
}

// TestReportsNeedIdentity: a first-boot report counts only on the TLS
// port with the lab CA's certificate of the very machine it reports for.
func TestReportsNeedIdentity(t *testing.T) {
	f := newIDFixture(t)
	c1 := f.certs["ceph-1"].TLSCertificate()
	c2 := f.certs["ceph-2"].TLSCertificate()
	alien := f.alien.TLSCertificate()
	for _, tc := range []struct {
		name string
		mac  string
		cert *tls.Certificate
		want int
		why  string
	}{
		{"no certificate", macC1, nil, 403, "without the machine's certificate"},
		{"ceph-2 reports as ceph-1", macC1, &c2, 403, "report for ceph-1 signed as ceph-2"},
		{"another lab's CA", macC1, &alien, 403, "certificate not from the lab CA"},
		{"unknown MAC", macLost, &c1, 403, "unknown machine"},
		{"ceph-1 itself", macC1, &c1, 204, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.srv.refused.newestFirst()
			if got := f.report(t, tc.mac, tc.cert); got != tc.want {
				t.Fatalf("report = %d, want %d", got, tc.want)
			}
			after := f.srv.refused.newestFirst()
			if tc.want == 204 {
				if len(after) != len(before) {
					t.Errorf("a good report was recorded as refused: %+v", after[0])
				}
				return
			}
			if len(after) != len(before)+1 || !strings.Contains(after[0].Why, tc.why) {
				t.Errorf("refusal not shown with %q: %+v", tc.why, after)
			}
		})
	}
	rec, err := f.states.Get(macC1, "ceph-1")
	if err != nil || rec.Booted == nil || rec.Booted.Hostname != "ceph-1" {
		t.Errorf("ceph-1's own report not recorded: %+v, %v", rec.Booted, err)
	}
	if code, _ := f.do(t, "POST", api.PathBooted+macC1, `{"hostname":"ceph-1"}`); code != 403 {
		t.Errorf("a report on the plain port = %d, want 403", code)
	}
	if !strings.Contains(f.logs.String(), "report without the machine's identity") {
		t.Error("the plain-port report is not logged")
	}
}

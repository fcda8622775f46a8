package httpd

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/html"

	"github.com/kilnlab/kiln/internal/golden"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/pxe/state"
)

// hostile is what a LAN attacker (or a confused installer) could put in
// an error report, a progress message or a boot report.
const hostile = `</td></tr><script>alert("kiln")</script><img src=x onerror=alert(1)> & "quotes" 'too'`

const (
	macC3  = "52:54:00:00:01:03"
	macCo1 = "52:54:00:00:02:01"
)

// statusPlan is testPlan with a machine in every state.
func statusPlan() *plan.Plan {
	p := testPlan()
	p.Machines = append(p.Machines,
		plan.Machine{Name: "ceph-3", Role: "storage", Board: "pc", Arch: "amd64", Firmware: "uefi", MAC: macC3,
			Address: "192.168.1.13/24", Hostname: "ceph-3", RoleImage: "roles/storage.squashfs"},
		plan.Machine{Name: "compute-1", Role: "compute", Board: "pc", Arch: "amd64", Firmware: "bios", MAC: macCo1,
			Address: "192.168.1.21/24", Hostname: "compute-1", RoleImage: "roles/compute.squashfs"},
	)
	return p
}

// statusFixture serves statusPlan with:
// gate-1 never netbooted; ceph-1 installed and booted; ceph-2 in install
// with an outstanding token; ceph-3 installing, half way through its
// root; compute-1 failed with a hostile error. It returns the live tokens.
func statusFixture(t *testing.T) (*fixture, []string) {
	t.Helper()
	f := newFixtureWith(t, func(c *Config) {
		c.Plan = statusPlan()
		c.ProcRoot = filepath.Join("testdata", "proc")
	})
	st := f.states
	must := func(_ state.Record, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	arm := func(mac, name string) string {
		t.Helper()
		tok, err := st.ArmToken(mac, name)
		if err != nil {
			t.Fatal(err)
		}
		must(st.BeginInstall(mac, name, tok))
		return tok
	}

	tok := arm(macC1, "ceph-1")
	f.clock.add(time.Minute)
	must(st.ReportProgress(macC1, "ceph-1", tok, state.Progress{Phase: "done", Message: "installed"}))
	must(st.Finish(macC1, "ceph-1", tok, true, ""))
	f.clock.add(2 * time.Minute)
	must(st.MarkBooted(macC1, "ceph-1", state.Booted{Hostname: "ceph-1", Address: "192.168.1.11/24"}))

	tok = arm(macCo1, "compute-1")
	f.clock.add(30 * time.Second)
	must(st.ReportProgress(macCo1, "compute-1", tok, state.Progress{Phase: "check", Message: hostile}))
	must(st.Finish(macCo1, "compute-1", tok, false, hostile))
	must(st.MarkBooted(macCo1, "compute-1", state.Booted{Hostname: hostile, Address: "192.168.1.21/24"}))

	tokC3 := arm(macC3, "ceph-3")
	f.clock.add(time.Minute)
	must(st.ReportProgress(macC3, "ceph-3", tokC3, state.Progress{Phase: "write", Message: "root", Done: 512 << 20, Total: 1024 << 20}))

	tokC2, err := st.ArmToken("52:54:00:00:01:02", "ceph-2")
	if err != nil {
		t.Fatal(err)
	}
	f.clock.add(5 * time.Second)

	// Refused: ceph-2's live token on ceph-3's MAC (a LAN attacker
	// racing it), and a progress report from a MAC not in the plan.
	if code, _ := f.do(t, "GET", "/api/v1/install/"+macC3+"?token="+tokC2, ""); code != 403 {
		t.Fatalf("stolen token = %d, want 403", code)
	}
	if code, _ := f.do(t, "POST", "/api/v1/progress/"+macLost+"?token="+tokC3, `{"phase":"x"}`); code != 403 {
		t.Fatalf("unknown MAC = %d, want 403", code)
	}
	if code, _ := f.do(t, "POST", "/api/v1/result/%3Cscript%3Ealert(1)%3C%2Fscript%3E", `{"ok":true}`); code != 403 {
		t.Fatalf("hostile MAC = %d, want 403", code)
	}
	return f, []string{tokC2, tokC3}
}

func TestStatusPageGolden(t *testing.T) {
	f, _ := statusFixture(t)
	code, body := f.do(t, "GET", "/", "")
	if code != 200 {
		t.Fatalf("GET / = %d %s", code, body)
	}
	golden.Check(t, filepath.Join("testdata", "status.html"), []byte(body))
	code, body = f.do(t, "GET", "/status.json", "")
	if code != 200 {
		t.Fatalf("GET /status.json = %d %s", code, body)
	}
	golden.Check(t, filepath.Join("testdata", "status.json"), []byte(body))
}

// wantRows is what statusFixture must show, machine by machine.
var wantRows = []machineRow{
	{"gate-1", map[string]string{"state": "not netbooted: the gate itself", "mac": macGate, "firmware": "-"}},
	{"ceph-1", map[string]string{"state": "installed", "progress": "done installed", "percent": "", "error": "",
		"booted": "192.168.1.11/24 2026-11-01 12:03:00Z (1m35s ago)", "firmware": "uefi"}},
	{"ceph-2", map[string]string{"state": "install", "progress": "", "error": "", "booted": "", "firmware": "-"}},
	{"ceph-3", map[string]string{"state": "installing", "progress": "write root", "percent": "50%",
		"progress-at": "2026-11-01 12:04:30Z (5s ago)", "error": ""}},
	{"compute-1", map[string]string{"state": "failed", "progress": "check " + hostile, "error": hostile,
		"booted": hostile + " 192.168.1.21/24 2026-11-01 12:03:30Z (1m05s ago)", "firmware": "bios"}},
}

func TestStatusPageDOM(t *testing.T) {
	f, _ := statusFixture(t)
	_, body := f.do(t, "GET", "/", "")
	checkRows(t, body, wantRows)
	if strings.Contains(body, "<script") || strings.Contains(body, "<img") {
		t.Error("a hostile string reached the page unescaped")
	}
}

func TestStatusJSON(t *testing.T) {
	f, _ := statusFixture(t)
	_, body := f.do(t, "GET", "/status.json", "")
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	var names, states []string
	for _, m := range st.Machines {
		names, states = append(names, m.Name), append(states, m.State)
	}
	if diff := cmp.Diff([]string{"gate-1", "ceph-1", "ceph-2", "ceph-3", "compute-1"}, names); diff != "" {
		t.Errorf("machines not in plan order (-want +got)\n%s", diff)
	}
	if diff := cmp.Diff([]string{"", "installed", "install", "installing", "failed"}, states); diff != "" {
		t.Errorf("states (-want +got)\n%s", diff)
	}
	if p := st.Machines[3].Progress; p == nil || p.Percent != 50 || p.At.IsZero() {
		t.Errorf("ceph-3 progress %+v", p)
	}
	if st.Machines[4].Error != hostile {
		t.Errorf("compute-1 error %q", st.Machines[4].Error)
	}
	var refused []string
	for _, r := range st.Refused {
		refused = append(refused, r.Method+" "+r.Path+" "+r.Machine)
	}
	if diff := cmp.Diff([]string{
		"POST /api/v1/result/<script>alert(1)</script> ",
		"POST /api/v1/progress/" + macLost + " ", "GET /api/v1/install/" + macC3 + " ceph-3",
	}, refused); diff != "" {
		t.Errorf("refused, newest first (-want +got)\n%s", diff)
	}

	// The bench reads these keys by name: pin the shape of "gate".
	var raw struct {
		Gate map[string]any `json:"gate"`
	}
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"name": "gate-1", "address": "192.168.1.10", "uptime_s": 3725.42,
		"kiln_rss_bytes": float64(18432 << 10), "mem_used_bytes": float64((3884372 - 3701248) << 10),
		"mem_total_bytes": float64(3884372 << 10),
	}
	if diff := cmp.Diff(want, raw.Gate); diff != "" {
		t.Errorf("gate (-want +got)\n%s", diff)
	}
}

// TestStatusNoTokens: the page is plain HTTP on the lab network; an
// outstanding install token on it would let anyone race the machine.
func TestStatusNoTokens(t *testing.T) {
	f, toks := statusFixture(t)
	for _, path := range []string{"/", "/status.json"} {
		_, body := f.do(t, "GET", path, "")
		for _, tok := range toks {
			if strings.Contains(body, tok) {
				t.Errorf("GET %s shows an install token", path)
			}
		}
	}
}

func TestStatusReadOnly(t *testing.T) {
	f, _ := statusFixture(t)
	for _, path := range []string{"/", "/status.json"} {
		for _, method := range []string{"POST", "PUT", "DELETE", "PATCH", "OPTIONS"} {
			req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader("x"))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := f.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(resp.Header.Get("Allow"), "GET") {
				t.Errorf("%s %s = %d (Allow %q), want 405", method, path, resp.StatusCode, resp.Header.Get("Allow"))
			}
		}
		resp, err := f.srv.Client().Head(f.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("HEAD %s = %d", path, resp.StatusCode)
		}
	}
	resp, err := f.srv.Client().Get(f.srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}
	if code, _ := f.do(t, "GET", "/nothing-here", ""); code != 404 {
		t.Errorf("GET /nothing-here = %d, want 404", code)
	}
}

func TestPercentAndDuration(t *testing.T) {
	for _, tc := range []struct {
		done, total int64
		want        int
	}{{0, 0, -1}, {5, 0, -1}, {0, 10, 0}, {5, 10, 50}, {10, 10, 100}, {11, 10, 100}, {-1, 10, -1}, {1, 3, 33}} {
		if got := percent(tc.done, tc.total); got != tc.want {
			t.Errorf("percent(%d, %d) = %d, want %d", tc.done, tc.total, got, tc.want)
		}
	}
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"}, {0, "0s"}, {45 * time.Second, "45s"}, {12*time.Minute + 5*time.Second, "12m05s"},
		{3*time.Hour + 12*time.Minute, "3h12m"}, {52 * time.Hour, "2d04h"},
	} {
		if got := duration(tc.d); got != tc.want {
			t.Errorf("duration(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestRefusalsBounded(t *testing.T) {
	var rs refusals
	for i := range maxRefusals + 5 {
		rs.add(Refusal{Path: strconv.Itoa(i)})
	}
	got := rs.newestFirst()
	if len(got) != maxRefusals || got[0].Path != strconv.Itoa(maxRefusals+4) || got[maxRefusals-1].Path != "5" {
		t.Errorf("kept %d, newest %q, oldest %q", len(got), got[0].Path, got[len(got)-1].Path)
	}
	long := strings.Repeat("é", maxRefusalText) // 2 bytes each: the cut falls mid-rune
	if c := clip(long); len(c) > maxRefusalText+3 || !utf8.ValidString(c) {
		t.Errorf("clip: %d bytes, valid UTF-8 %v", len(c), utf8.ValidString(c))
	}
}

// machineRow is one <tr data-machine> of the page: its data-field texts.
type machineRow struct {
	Name   string
	Fields map[string]string
}

// checkRows parses doc (the server's HTML or Chromium's DOM) and checks
// it has exactly want's machines, in order, with want's field texts.
func checkRows(t *testing.T, doc string, want []machineRow) {
	t.Helper()
	got, err := pageRows(doc)
	if err != nil {
		t.Fatal(err)
	}
	var gotNames, wantNames []string
	for _, r := range got {
		gotNames = append(gotNames, r.Name)
	}
	for _, r := range want {
		wantNames = append(wantNames, r.Name)
	}
	if diff := cmp.Diff(wantNames, gotNames); diff != "" {
		t.Fatalf("machine rows (-want +got)\n%s", diff)
	}
	for i, w := range want {
		for field, text := range w.Fields {
			if g, ok := got[i].Fields[field]; !ok || g != text {
				t.Errorf("%s %s = %q (present %v), want %q", w.Name, field, g, ok, text)
			}
		}
	}
}

// pageRows finds every <tr data-machine> and the whitespace-normalised
// text of each data-field element inside it.
func pageRows(doc string) ([]machineRow, error) {
	root, err := html.Parse(strings.NewReader(doc))
	if err != nil {
		return nil, err
	}
	var rows []machineRow
	for n := range root.Descendants() {
		if n.Type != html.ElementNode || n.Data != "tr" {
			continue
		}
		name, ok := attr(n, "data-machine")
		if !ok {
			continue
		}
		r := machineRow{Name: name, Fields: map[string]string{}}
		for c := range n.Descendants() {
			if field, ok := attr(c, "data-field"); ok && c.Type == html.ElementNode {
				r.Fields[field] = ownText(c)
			}
		}
		rows = append(rows, r)
	}
	return rows, nil
}

func attr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

// ownText is n's text without that of nested elements that are fields of
// their own or small print (the name cell nests the address).
func ownText(n *html.Node) string {
	var b strings.Builder
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == html.TextNode {
			b.WriteString(c.Data)
		}
	}
	return strings.Join(strings.Fields(b.String()), " ")
}

// FuzzStatusPageEscapes: whatever an installer reports as its error,
// progress message or hostname, a browser's parse of the page shows it
// as that text in its cell, and adds no element.
func FuzzStatusPageEscapes(f *testing.F) {
	for _, s := range []string{hostile, "", "plain", "<!--", "]]>", "<plaintext>", "a\tb\nc", `"'><svg/onload=1>`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) || strings.ContainsAny(s, "\x00\r\f") {
			return // the HTML parser rewrites these; not an escaping question
		}
		st := Status{Machines: []MachineStatus{{
			Name: "m", Netboot: true, State: state.Failed, Error: s,
			Progress: &ProgressStatus{Phase: "p", Message: s, Percent: -1},
			Booted:   &BootedStatus{Hostname: s, Address: "a"},
		}}}
		var b strings.Builder
		if err := statusTmpl.Execute(&b, newPage(st)); err != nil {
			t.Fatal(err)
		}
		rows, err := pageRows(b.String())
		if err != nil || len(rows) != 1 {
			t.Fatalf("rows %v, %v", rows, err)
		}
		want := strings.Join(strings.Fields(s), " ")
		if got := rows[0].Fields["error"]; got != want {
			t.Errorf("error cell %q, want %q", got, want)
		}
		if got := rows[0].Fields["progress"]; got != strings.TrimSpace("p "+want) {
			t.Errorf("progress cell %q, want %q", got, "p "+want)
		}
	})
}

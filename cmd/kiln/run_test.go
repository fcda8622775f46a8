package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/pxe/ntp"
)

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		wantErr  string // substring; "" means success
		wantCode int
		stdout   string // substring of stdout
	}{
		{name: "help", args: nil, stdout: "usage: kiln COMMAND"},
		{name: "unknown command", args: []string{"frobnicate"}, wantErr: `unknown command "frobnicate"`, wantCode: 2},
		{name: "validate default", args: []string{"validate"}, stdout: "homelab.yaml: ok (5 machines)"},
		{name: "validate bad profile", args: []string{"validate", "../../profiles/testdata/bad-unknown-key.yaml"},
			wantErr: "bad-unknown-key.yaml:5:3: network.vlan: unknown field", wantCode: 1},
		{name: "validate with warnings", args: []string{"validate", "../../profiles/testdata/warn-two-nodes.yaml"},
			stdout: "warn-two-nodes.yaml: ok (3 machines, 3 warnings)"},
		{name: "validate missing file", args: []string{"validate", "no/such.yaml"}, wantErr: "no/such.yaml", wantCode: 1},
		{name: "validate two profiles", args: []string{"validate", "a.yaml", "b.yaml"}, wantErr: "at most one PROFILE", wantCode: 2},
		{name: "plan table", args: []string{"plan"}, stdout: "serial WD-KILN-CEPH1-A"},
		{name: "build with a bad image URL", args: []string{"build", "--image-url", "ftp://mirror/lab"}, wantErr: "want an http:// or https:// URL", wantCode: 2},
		{name: "schema", args: []string{"schema"}, stdout: `"$schema": "https://json-schema.org/draft/2020-12/schema"`},
		{name: "flags after the profile", args: []string{"plan", "../../profiles/homelab.yaml", "--json"}, stdout: `"lab": "homelab"`},
		{name: "flags after the profile, bad one", args: []string{"validate", "../../profiles/homelab.yaml", "--jsn"}, wantErr: "flag provided but not defined", wantCode: 2},
		{name: "-- ends the flags", args: []string{"validate", "--", "--json"}, wantErr: "--json", wantCode: 1},
		{name: "positional after flags after positional", args: []string{"gate", "reinstall", "ceph-9", "--state", t.TempDir()}, wantErr: `"ceph-9": no such machine`, wantCode: 2},
		{name: "bad flag", args: []string{"plan", "--jsn"}, wantErr: "flag provided but not defined", wantCode: 2},
		{name: "gate serve without bundle", args: []string{"gate", "serve"}, wantErr: "needs --bundle and --listen", wantCode: 2},
		{name: "gate machines", args: []string{"gate", "machines", "--state", t.TempDir()}, stdout: "FIRST BOOT  SERVICES"},
		{name: "gate reinstall unknown", args: []string{"gate", "reinstall", "--state", t.TempDir(), "ceph-9"}, wantErr: `"ceph-9": no such machine`, wantCode: 2},
		{name: "rehearse the gate", args: []string{"rehearse", "--machines", "gate-1"}, wantErr: "gate-1 is not an amd64 server", wantCode: 2},
		{name: "rehearse with a bad accelerator", args: []string{"rehearse", "--accel", "kvm:tcg"}, wantErr: "want auto, kvm or tcg", wantCode: 2},
		{name: "rehearse without a bundle", args: []string{"rehearse", "--bundle", t.TempDir()}, wantErr: "plan.json", wantCode: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tc.args, &stdout, &stderr)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("run(%q) = %v\nstderr: %s", tc.args, err, stderr.String())
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("run(%q) = %v, want an error containing %q", tc.args, err, tc.wantErr)
			case tc.wantErr != "" && exitCode(err) != tc.wantCode:
				t.Errorf("exit code %d, want %d", exitCode(err), tc.wantCode)
			}
			if !strings.Contains(stdout.String(), tc.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.stdout, stdout.String())
			}
		})
	}
}

// Warnings go to stderr, located, and leave the exit status alone.
func TestValidateWarnings(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"plan", "--json", "../../profiles/testdata/warn-one-node.yaml"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	want := "warning: ../../profiles/testdata/warn-one-node.yaml:15:5: machines[1].role: the only storage node: "
	if !strings.HasPrefix(stderr.String(), want) || strings.Count(stderr.String(), "warning: ") != 2 {
		t.Errorf("stderr = %q, want two warnings, the first starting %q", stderr.String(), want)
	}
	if !json.Valid(stdout.Bytes()) {
		t.Errorf("plan --json with warnings is not JSON:\n%s", stdout.String())
	}
}

// plan --json is what the gate serves the installer: it must decode into
// the plan types and name every machine of the default lab.
func TestPlanJSON(t *testing.T) {
	var stdout bytes.Buffer
	if err := run(context.Background(), []string{"plan", "--json"}, &stdout, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	var p plan.Plan
	if err := json.Unmarshal(stdout.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Machines) != 5 || p.Lab != "homelab" {
		t.Errorf("plan --json: lab %q with %d machines, want homelab with 5", p.Lab, len(p.Machines))
	}
}

// TestServeNTP: gate serve --ntp answers an SNTP client with this host's
// clock, as a local clock (stratum 10).
func TestServeNTP(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := serveNTP(ctx, netip.MustParseAddrPort("127.0.0.1:0"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	r, err := ntp.Query(ctx, addr.String())
	if err != nil {
		t.Fatal(err)
	}
	if r.Stratum != ntp.LocalStratum || r.Offset.Abs() > 50*time.Millisecond {
		t.Errorf("reply: stratum %d, offset %s; want stratum %d and this host's time", r.Stratum, r.Offset, ntp.LocalStratum)
	}
}

// TestParseFlags: flags before, between and after positional arguments;
// "--" ends them; a repeatable flag is counted once per use.
func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		out   string
		json  bool
		bases []string
		pos   []string
	}{
		{args: []string{"-o", "d", "p.yaml"}, out: "d", pos: []string{"p.yaml"}},
		{args: []string{"p.yaml", "-o", "d"}, out: "d", pos: []string{"p.yaml"}},
		{args: []string{"p.yaml", "--json", "q.yaml"}, json: true, pos: []string{"p.yaml", "q.yaml"}},
		{args: []string{"a", "--base", "x=1", "b", "--base=y=2"}, bases: []string{"x=1", "y=2"}, pos: []string{"a", "b"}},
		{args: []string{"a", "--", "-o", "b"}, pos: []string{"a", "-o", "b"}},
		{args: []string{"-", "--json"}, json: true, pos: []string{"-"}},
		{args: nil},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		out := fs.String("o", "", "")
		js := fs.Bool("json", false, "")
		var bases listFlag // appends: parsing twice would show
		fs.Var(&bases, "base", "")
		if err := parseFlags(fs, tc.args); err != nil {
			t.Errorf("parseFlags(%q): %v", tc.args, err)
			continue
		}
		got := []any{*out, *js, []string(bases), fs.Args()}
		want := []any{tc.out, tc.json, tc.bases, tc.pos}
		if d := cmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" {
			t.Errorf("parseFlags(%q) (-want +got):\n%s", tc.args, d)
		}
	}
}

// listFlag collects each use of a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// TestLogFormat: with --log-format json (before or after the command)
// everything on stderr is a JSON record, warnings with their place and
// the error that ends the run included; stdout keeps the results.
func TestLogFormat(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		err    bool
		levels []string // of the records on stderr, in order
	}{
		{"warnings, global flag", []string{"--log-format", "json", "plan", "--json", "../../profiles/testdata/warn-one-node.yaml"}, false, []string{"WARN", "WARN"}},
		{"an error, the command's flag", []string{"validate", "../../profiles/testdata/bad-unknown-key.yaml", "--log-format=json"}, true, []string{"ERROR"}},
		{"usage error", []string{"--log-format", "json", "validate", "a.yaml", "b.yaml"}, true, []string{"ERROR"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tc.args, &stdout, &stderr)
			if (err != nil) != tc.err {
				t.Fatalf("run(%q) = %v", tc.args, err)
			}
			var levels []string
			for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
				var rec struct {
					Level, Msg string
					File       string
					Line       int
				}
				if err := json.Unmarshal([]byte(l), &rec); err != nil {
					t.Fatalf("stderr line %q is not a JSON record: %v", l, err)
				}
				if rec.Level == "WARN" && (rec.File == "" || rec.Line == 0) {
					t.Errorf("warning %q has no place", l)
				}
				levels = append(levels, rec.Level)
			}
			if d := cmp.Diff(tc.levels, levels); d != "" {
				t.Errorf("levels (-want +got):\n%s", d)
			}
		})
	}
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"validate", "--log-format", "xml"}, &bytes.Buffer{}, &stderr)
	if err == nil || exitCode(err) != 2 || !strings.Contains(stderr.String(), `want text or json, got "xml"`) {
		t.Errorf("--log-format xml: %v, stderr %q", err, stderr.String())
	}
}

package gateclient_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/image/bundle"
	"github.com/kilnlab/kiln/installer/gateclient"
	"github.com/kilnlab/kiln/installer/gateclient/gatetest"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/pxe/api"
)

var machine = plan.Machine{Name: "ceph-1", MAC: "52:54:00:00:00:11", Hostname: "ceph-1"}

func newGate(t *testing.T) *gatetest.Gate {
	return gatetest.New(t, machine, "tok",
		map[string]string{"machines/ceph-1/esp.img": "ESP", "roles/storage.squashfs": "ROOT", "machines/ceph-1/state.img": "STATE", "bios/gptmbr.bin": "MBR"},
		map[string]string{"esp": "machines/ceph-1/esp.img", "root": "roles/storage.squashfs", "state": "machines/ceph-1/state.img", "gptmbr": "bios/gptmbr.bin"})
}

func TestManifestAndFiles(t *testing.T) {
	g := newGate(t)
	c := g.Client()
	ctx := context.Background()
	m, err := c.Manifest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.Machine.Name != "ceph-1" || m.Files["root"].Size != 4 {
		t.Errorf("Manifest() = %+v", m)
	}
	b, err := c.Fetch(ctx, m.Files["gptmbr"], 440)
	if err != nil || string(b) != "MBR" {
		t.Errorf("Fetch() = %q, %v", b, err)
	}
	rc, err := c.Open(ctx, m.Files["root"])
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "ROOT" {
		t.Errorf("Open() read %q", got)
	}

	g.Corrupt = "bios/gptmbr.bin"
	if _, err := c.Fetch(ctx, m.Files["gptmbr"], 440); !errors.Is(err, gateclient.ErrChecksum) {
		t.Errorf("Fetch(corrupt) = %v, want ErrChecksum", err)
	}
	if _, err := c.Fetch(ctx, m.Files["root"], 2); err == nil {
		t.Error("Fetch() over its limit succeeded")
	}
	wrong := m.Files["root"]
	wrong.Size = 99
	if _, err := c.Open(ctx, wrong); err == nil {
		t.Error("Open() accepted a size the gate does not send")
	}
	if _, err := c.Open(ctx, bundle.File{Path: "../etc/passwd", SHA256: strings.Repeat("0", 64)}); err == nil {
		t.Error("Open() accepted a path out of the bundle")
	}
}

func TestForbidden(t *testing.T) {
	g := newGate(t)
	c := g.Client()
	c.Token = "stolen"
	if _, err := c.Manifest(context.Background()); !errors.Is(err, gateclient.ErrForbidden) {
		t.Errorf("Manifest() = %v, want ErrForbidden", err)
	}
	if err := c.Progress(context.Background(), api.Progress{Phase: "x"}); !errors.Is(err, gateclient.ErrForbidden) {
		t.Errorf("Progress() = %v, want ErrForbidden", err)
	}
	if err := c.Progress(context.Background(), api.Progress{Phase: "x"}); strings.Contains(err.Error(), "stolen") {
		t.Errorf("error shows the token: %v", err)
	}
}

func TestReports(t *testing.T) {
	g := newGate(t)
	c := g.Client()
	ctx := context.Background()
	if err := c.Progress(ctx, api.Progress{Phase: "write", Done: 1, Total: 2}); err != nil {
		t.Fatal(err)
	}
	if err := c.Result(ctx, api.Result{OK: false, Error: "boom"}); err != nil {
		t.Fatal(err)
	}
	c.Token = ""
	if err := c.Booted(ctx, api.Booted{Hostname: "ceph-1", Address: "10.0.0.11/24"}); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]api.Progress{{Phase: "write", Done: 1, Total: 2}}, g.Progress()); d != "" {
		t.Error(d)
	}
	if d := cmp.Diff([]api.Result{{Error: "boom"}}, g.Results()); d != "" {
		t.Error(d)
	}
	if d := cmp.Diff([]api.Booted{{Hostname: "ceph-1", Address: "10.0.0.11/24"}}, g.Booted()); d != "" {
		t.Error(d)
	}

	// A failing command's output, long and with a terminal escape in
	// it, still makes a failure report the gate accepts: the end kept.
	out := "resize2fs: \x1b[1mbad\x1b[0m\n" + strings.Repeat("x", api.MaxText) + "\nno such device"
	if err := c.Phase(ctx, api.Phase{Phase: "storage", Status: api.PhaseFailed, Task: "grow-state", Error: out}); err != nil {
		t.Fatal(err)
	}
	ph := g.Phases()
	if len(ph) != 1 || len(ph[0].Error) != api.MaxText || !strings.HasPrefix(ph[0].Error, "...") || !strings.HasSuffix(ph[0].Error, "x\nno such device") {
		t.Errorf("phase reports = %+v", ph)
	}
	if a, err := c.Health(ctx, api.Health{}); err != nil || a.Netboot {
		t.Fatalf("Health() = %+v, %v", a, err)
	}
	if _, err := c.Health(ctx, api.Health{Services: []api.Service{{Name: "k3s", Status: api.HealthWarn, Detail: "\x00odd"}}}); err != nil {
		t.Fatal(err)
	}
	// A re-armed machine is told to netboot; its report says it will.
	g.SetNetboot(true)
	if a, err := c.Health(ctx, api.Health{Services: []api.Service{}, NetbootNext: true}); err != nil || !a.Netboot {
		t.Fatalf("Health() to a re-arming gate = %+v, %v", a, err)
	}
	want := []api.Health{{Services: []api.Service{}}, {Services: []api.Service{{Name: "k3s", Status: api.HealthWarn, Detail: "?odd"}}}, {Services: []api.Service{}, NetbootNext: true}}
	if d := cmp.Diff(want, g.Health()); d != "" {
		t.Errorf("health reports (-want +got):\n%s", d)
	}
	g.SetRefuse(http.StatusServiceUnavailable)
	if err := c.Phase(ctx, api.Phase{Phase: "storage", Status: api.PhaseDone}); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("Phase() to a refusing gate = %v", err)
	}
}

const goodManifest = `{"machine":{"name":"m","mac":"52:54:00:00:00:01"},"files":{
"esp":{"path":"machines/m/esp.img","size":1,"sha256":"0000000000000000000000000000000000000000000000000000000000000000"},
"root":{"path":"roles/r.squashfs","size":1,"sha256":"0000000000000000000000000000000000000000000000000000000000000000"},
"state":{"path":"machines/m/state.img","size":1,"sha256":"0000000000000000000000000000000000000000000000000000000000000000"},
"gptmbr":{"path":"bios/gptmbr.bin","size":1,"sha256":"0000000000000000000000000000000000000000000000000000000000000000"}}}`

func TestDecodeManifest(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"good", goodManifest, true},
		{"not json", "<html>", false},
		{"no machine name", strings.Replace(goodManifest, `"name":"m"`, `"name":""`, 1), false},
		{"missing file", strings.Replace(goodManifest, `"gptmbr"`, `"other"`, 1), false},
		{"absolute path", strings.Replace(goodManifest, `"roles/r.squashfs"`, `"/etc/shadow"`, 1), false},
		{"dotdot path", strings.Replace(goodManifest, `"roles/r.squashfs"`, `"../r"`, 1), false},
		{"unclean path", strings.Replace(goodManifest, `"roles/r.squashfs"`, `"roles/../../r"`, 1), false},
		{"short sha", strings.Replace(goodManifest, `"sha256":"00`, `"sha256":"`, 1), false},
		{"negative size", strings.Replace(goodManifest, `"size":1`, `"size":-1`, 1), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := gateclient.DecodeManifest(strings.NewReader(tc.in))
			if tc.ok != (err == nil) {
				t.Errorf("DecodeManifest() = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, gateclient.ErrBadManifest) {
				t.Errorf("error %v does not wrap ErrBadManifest", err)
			}
		})
	}
}

func FuzzDecodeManifest(f *testing.F) {
	f.Add([]byte(goodManifest))
	f.Add([]byte(`{"files":{"esp":{"path":".."}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := gateclient.DecodeManifest(bytes.NewReader(b))
		if err != nil {
			return
		}
		for k, f := range m.Files {
			if strings.HasPrefix(f.Path, "/") || strings.Contains("/"+f.Path+"/", "/../") {
				if k == "esp" || k == "root" || k == "state" || k == "gptmbr" {
					t.Fatalf("accepted path %q", f.Path)
				}
			}
		}
	})
}

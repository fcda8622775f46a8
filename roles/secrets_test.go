package roles

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v35 "github.com/coreos/ignition/v2/config/v3_5"

	"github.com/kilnlab/kiln/internal/golden"
	"github.com/kilnlab/kiln/profiles"
)

// fakeSecrets are recognisable stand-ins: the test looks for them.
func fakeSecrets(host string) Secrets {
	return Secrets{
		CACert:      []byte("-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"),
		MachineCert: []byte("-----BEGIN CERTIFICATE-----\n" + host + "\n-----END CERTIFICATE-----\n"),
		MachineKey:  []byte("-----BEGIN PRIVATE KEY-----\nSECRET-KEY-" + host + "\n-----END PRIVATE KEY-----\n"),
		Ceph: &CephSecrets{
			FSID: "4b494c4e-0000-4000-8000-00000000cef0",
			Mon:  "AQMONMONMON=", Admin: "AQADMINADMIN=", BootstrapOSD: "AQBOOTOSD=",
			Mgr: map[string]string{"ceph-1": "AQMGR1=", "ceph-2": "AQMGR2=", "ceph-3": "AQMGR3="},
		},
	}
}

// TestRenderSecrets pins ceph-1's and compute-1's secret configs, checks
// them with Ignition's parser, and applies ceph-1's: every secret lands
// root-only.
func TestRenderSecrets(t *testing.T) {
	p, err := profiles.Default()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ceph-1", "compute-1"} {
		t.Run(name, func(t *testing.T) {
			m := machineNamed(t, p, name)
			cfg, err := RenderSecrets(p, m, fakeSecrets(name))
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := json.MarshalIndent(cfg, "", "  ")
			if _, rpt, err := v35.Parse(raw); err != nil || len(rpt.Entries) > 0 {
				t.Fatalf("v3_5.Parse: %v\n%s", err, rpt)
			}
			golden.Check(t, filepath.Join("testdata", name+".secrets.ign"), append(raw, '\n'))
			dir := t.TempDir()
			if err := Apply(cfg, dir); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", name+".secrets.tree"), []byte(listTree(t, dir)))
			filepath.WalkDir(filepath.Join(dir, "etc/kiln/secrets"), func(path string, d os.DirEntry, err error) error {
				if err != nil {
					return err
				}
				fi, _ := d.Info()
				if fi.Mode().Perm()&0o077 != 0 {
					t.Errorf("%s: mode %v, want root-only", path, fi.Mode().Perm())
				}
				return nil
			})
		})
	}
	m := machineNamed(t, p, "ceph-1")
	s := fakeSecrets("ceph-1")
	s.Ceph = nil
	if _, err := RenderSecrets(p, m, s); err == nil {
		t.Error("a storage node's secrets rendered without the Ceph keys")
	}
	s = fakeSecrets("ceph-1")
	s.Ceph.Mgr = nil
	if _, err := RenderSecrets(p, m, s); err == nil || !strings.Contains(err.Error(), "no mgr key for ceph-1") {
		t.Errorf("no mgr key: %v", err)
	}
	if _, err := RenderSecrets(p, m, Secrets{}); err == nil {
		t.Error("rendered without a TLS identity")
	}
}

func TestSecretsRedacted(t *testing.T) {
	s := fakeSecrets("ceph-1")
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", "s", s, "c", s.Ceph, "cv", *s.Ceph)
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
		fmt.Fprintf(&b, f+" "+f+"\n", s, *s.Ceph)
	}
	for _, secret := range []string{"SECRET-KEY", "AQMONMON", "AQADMIN", "AQMGR1", "5345435245"} {
		if strings.Contains(b.String(), secret) {
			t.Errorf("output shows %q:\n%s", secret, b.String())
		}
	}
}

func machineNamed(t *testing.T, p *profiles.Profile, name string) *profiles.Machine {
	t.Helper()
	for i := range p.Machines {
		if p.Machines[i].Name == name {
			return &p.Machines[i]
		}
	}
	t.Fatalf("no machine %s", name)
	return nil
}

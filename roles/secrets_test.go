package roles

import (
	"encoding/base64"
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
			Mgr: map[string]string{"ceph-1": "AQMGR1=", "ceph-2": "AQMGR2=", "ceph-3": "AQMGR3=", "ceph-4": "AQMGR4="},
		},
		Consul:   fakeConsul(),
		K3sToken: "6b3510ce6b3510ce",
	}
}

// fakeConsul are Consul secrets Consul accepts (a 32-byte gossip key,
// UUIDs), recognisable: the secret IDs start 5ec7e7, the accessors acce55.
func fakeConsul() *ConsulSecrets {
	agent := map[string]ConsulToken{}
	for i := 1; i <= 4; i++ {
		agent[fmt.Sprintf("ceph-%d", i)] = ConsulToken{
			AccessorID: fmt.Sprintf("acce5500-0000-4000-8000-00000000000%d", i),
			SecretID:   fmt.Sprintf("5ec7e700-0000-4000-8000-00000000000%d", i),
		}
	}
	return &ConsulSecrets{
		GossipKey:  base64.StdEncoding.EncodeToString([]byte("GOSSIP-KEY-FOR-THE-TESTS-0000000")),
		Management: ConsulToken{SecretID: "5ec7e700-0000-4000-8000-0000000000ff"},
		Vault:      ConsulToken{AccessorID: "acce5500-0000-4000-8000-0000000000a0", SecretID: "5ec7e700-0000-4000-8000-0000000000a0"},
		Agent:      agent,
	}
}

// consulSecretValues are fakeConsul's secret values, and how they could
// show.
func consulSecretValues() []string {
	c := fakeConsul()
	v := []string{c.GossipKey, "R09TU0lQ", c.Management.SecretID, c.Vault.SecretID, "5ec7e7", "6b3510ce"}
	for _, t := range c.Agent {
		v = append(v, t.SecretID)
	}
	return v
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
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", "s", s, "c", s.Ceph, "cv", *s.Ceph,
		"consul", s.Consul, "cv", *s.Consul, "vault", s.Consul.Vault, "agents", s.Consul.Agent)
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
		fmt.Fprintf(&b, f+" "+f+" "+f+" "+f+" "+f+"\n", s, *s.Ceph, *s.Consul, s.Consul.Management, s.Consul.Agent)
	}
	for _, secret := range append([]string{"SECRET-KEY", "AQMONMON", "AQADMIN", "AQMGR1", "5345435245", "3565633765"}, consulSecretValues()...) {
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

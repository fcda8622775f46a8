package build

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coreos/ignition/v2/config/v3_5/types"

	"github.com/kilnlab/kiln/image/secrets"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/roles"
)

// TestMachineSecretsConsul stages the reference lab's secrets as kiln
// build does, into a fresh secrets directory, and checks the Consul part:
// the storage machines' certificates name what Consul checks, each storage
// machine's secret config carries the lab's Consul secrets (its own agent
// token, no other's), and no public config (what the gate serves to
// anyone) carries any of them.
func TestMachineSecretsConsul(t *testing.T) {
	p, err := profiles.Default()
	if err != nil {
		t.Fatal(err)
	}
	pl, err := plan.Compute(p)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "secrets")
	b := &builder{Options: Options{Profile: p, Plan: pl, Out: t.TempDir(), SecretsDir: dir}}
	if err := b.machineSecrets(context.Background()); err != nil {
		t.Fatal(err)
	}
	keys, err := secrets.Consul(dir, []string{"ceph-1", "ceph-2", "ceph-3"})
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]string{
		"gossip key": keys.Gossip.Base64(), "management token": keys.Management.SecretID(), "vault token": keys.Vault.SecretID(),
	}
	for h, tok := range keys.Agent {
		values[h+"'s agent token"] = tok.SecretID()
	}
	store := secrets.GateStore{Dir: b.gateSecretsDir()}
	for _, m := range b.machines() {
		pm := b.profileMachine(m.Name)
		public, err := roles.Render(p, pm)
		if err != nil {
			t.Fatal(err)
		}
		text := onDisk(t, public)
		for name, v := range values {
			if strings.Contains(text, v) {
				t.Errorf("%s's public config holds the %s", m.Name, name)
			}
		}
		raw, err := store.MachineSecrets(m.Name)
		if err != nil {
			t.Fatal(err)
		}
		var sec types.Config
		if err := json.Unmarshal(raw, &sec); err != nil {
			t.Fatal(err)
		}
		text = onDisk(t, sec)
		for name, v := range values {
			agent := strings.HasSuffix(name, "'s agent token")
			want := pm.Role == profiles.RoleStorage && (!agent || strings.HasPrefix(name, m.Name+"'s"))
			if got := strings.Contains(text, v); got != want {
				t.Errorf("%s's secret config holds the %s: %v, want %v", m.Name, name, got, want)
			}
		}
		checkCertNames(t, dir, m.Name, pm.Role == profiles.RoleStorage)
	}
}

// checkCertNames checks that a Consul server's certificate names
// server.homelab.consul, localhost and 127.0.0.1, and another's none of
// them.
func checkCertNames(t *testing.T, dir, host string, server bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, secrets.TLSDir, host+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM", host)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"server.homelab.consul", "localhost", "127.0.0.1"} {
		if err := c.VerifyHostname(name); (err == nil) != server {
			t.Errorf("%s: names %v %v; VerifyHostname(%s) = %v", host, c.DNSNames, c.IPAddresses, name, err)
		}
	}
}

// onDisk is a config as JSON followed by every file it writes, applied.
func onDisk(t *testing.T, cfg types.Config) string {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := roles.Apply(cfg, dir); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.Write(raw)
	err = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(path)
		b.Write(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

package roles

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/coreos/ignition/v2/config/v3_5/types"
	"github.com/google/go-cmp/cmp"
	"github.com/vincent-petithory/dataurl"

	"github.com/kilnlab/kiln/profiles"
)

// consulPaths are every file Consul and Vault add to a machine, public or
// secret.
var consulPaths = []string{
	ConsulConfigPath, ConsulVaultPolicyPath, ConsulAgentPolicyPath("ceph-1"), ConsulSecretsConfigPath,
	ConsulTokensPath, VaultConfigPath, VaultEnvPath,
}

// TestConsulIdentity pins what ceph-2's first boot learns of Consul and
// Vault from machine.json.
func TestConsulIdentity(t *testing.T) {
	p, err := profiles.Default()
	if err != nil {
		t.Fatal(err)
	}
	id := renderedIdentity(t, p, machineNamed(t, p, "ceph-2"))
	want := &ConsulNode{
		Datacenter: "homelab", Domain: "consul", BootstrapExpect: 3, HTTPSAddress: "127.0.0.1:8501",
		Servers: []ConsulServer{{"ceph-1", "192.168.1.11"}, {"ceph-2", "192.168.1.12"}, {"ceph-3", "192.168.1.13"}},
		Policies: []ConsulPolicy{
			{Name: "kiln-agent-ceph-2", Path: "/etc/kiln/consul/policy-agent-ceph-2.hcl", Token: "agent"},
			{Name: "kiln-vault", Path: "/etc/kiln/consul/policy-vault.hcl", Token: "vault"},
		},
	}
	if diff := cmp.Diff(want, id.Consul); diff != "" {
		t.Errorf("consul (-want +got):\n%s", diff)
	}
	wantVault := &VaultNode{Unseal: "gate", APIAddress: "https://192.168.1.12:8200", Peers: []VaultPeer{
		{"ceph-1", "https://192.168.1.11:8200"}, {"ceph-3", "https://192.168.1.13:8200"},
	}}
	if diff := cmp.Diff(wantVault, id.Vault); diff != "" {
		t.Errorf("vault (-want +got):\n%s", diff)
	}
	if ConsulHTTPSAddress != "127.0.0.1:"+strconv.Itoa(ConsulHTTPSPort) {
		t.Errorf("ConsulHTTPSAddress %s is not on ConsulHTTPSPort", ConsulHTTPSAddress)
	}
}

// TestPublicConfigHasNoSecrets: what Render makes, which the gate serves to
// anyone (the state image), holds none of the secrets' values, whatever
// the machine; and the secret config of a storage machine holds them.
func TestPublicConfigHasNoSecrets(t *testing.T) {
	p, err := profiles.Default()
	if err != nil {
		t.Fatal(err)
	}
	secretValues := append(consulSecretValues(), "SECRET-KEY")
	for i := range p.Machines {
		m := &p.Machines[i]
		cfg, err := Render(p, m)
		if err != nil {
			t.Fatal(err)
		}
		public := configText(t, cfg)
		for _, s := range secretValues {
			if strings.Contains(public, s) {
				t.Errorf("%s: the public config holds %q", m.Name, s)
			}
		}
	}
	cfg, err := RenderSecrets(p, machineNamed(t, p, "ceph-1"), fakeSecrets("ceph-1"))
	if err != nil {
		t.Fatal(err)
	}
	c := fakeConsul()
	secret := configText(t, cfg)
	for _, s := range []string{c.GossipKey, c.Management.SecretID, c.Vault.SecretID, c.Agent["ceph-1"].SecretID} {
		if !strings.Contains(secret, s) {
			t.Errorf("ceph-1's secret config lacks %q", s)
		}
	}
	if strings.Contains(secret, c.Agent["ceph-2"].SecretID) {
		t.Error("ceph-1's secret config holds ceph-2's agent token")
	}
}

// configText is a config as JSON followed by every file's and unit's
// contents, decoded.
func configText(t *testing.T, cfg types.Config) string {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.Write(raw)
	for _, f := range cfg.Storage.Files {
		u, err := dataurl.DecodeString(*f.Contents.Source)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(u.Data)
	}
	for _, u := range cfg.Systemd.Units {
		if u.Contents != nil {
			b.WriteString(*u.Contents)
		}
	}
	return b.String()
}

// TestServicesOff: a lab without services.consul, and the machines that
// are not Consul servers, get no Consul or Vault file, unit, secret or
// machine.json section.
func TestServicesOff(t *testing.T) {
	home, err := profiles.Default()
	if err != nil {
		t.Fatal(err)
	}
	bond := bonded(t)
	for _, tc := range []struct {
		p       *profiles.Profile
		machine string
	}{
		{bond, "ceph-1"}, {bond, "compute-1"}, {home, "compute-1"}, {home, "gate-1"},
	} {
		t.Run(tc.p.Name+"/"+tc.machine, func(t *testing.T) {
			m := machineNamed(t, tc.p, tc.machine)
			cfg, err := Render(tc.p, m)
			if err != nil {
				t.Fatal(err)
			}
			checkNoConsul(t, cfg)
			id := renderedIdentity(t, tc.p, m)
			if id.Consul != nil || id.Vault != nil {
				t.Errorf("machine.json has consul %v, vault %v", id.Consul, id.Vault)
			}
			if m.Role == profiles.RoleGate {
				return
			}
			s := fakeSecrets(tc.machine)
			cfg, err = RenderSecrets(tc.p, m, s)
			if err != nil {
				t.Fatal(err)
			}
			checkNoConsul(t, cfg)
			if tc.p == bond && m.Role == profiles.RoleStorage {
				s.Consul = nil
				if _, err := RenderSecrets(tc.p, m, s); err != nil {
					t.Errorf("a lab without Consul wants its secrets: %v", err)
				}
			}
		})
	}
}

func checkNoConsul(t *testing.T, cfg types.Config) {
	t.Helper()
	for _, f := range cfg.Storage.Files {
		if slices.Contains(consulPaths, f.Path) || strings.Contains(f.Path, "consul") || strings.Contains(f.Path, "vault") {
			t.Errorf("file %s", f.Path)
		}
	}
	for _, d := range cfg.Storage.Directories {
		if d.Path == ConsulSecretsDir || d.Path == VaultSecretsDir {
			t.Errorf("directory %s", d.Path)
		}
	}
	for _, u := range cfg.Systemd.Units {
		if u.Name == ConsulUnit || u.Name == VaultUnit {
			t.Errorf("unit %s", u.Name)
		}
	}
}

// TestConsulWithoutVault: a lab with Consul and no Vault gets no Vault
// file, policy, token or unit.
func TestConsulWithoutVault(t *testing.T) {
	p, err := profiles.Load("../profiles/testdata/warn-two-nodes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := machineNamed(t, p, "ceph-2")
	cfg, err := Render(p, m)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := RenderSecrets(p, m, fakeSecrets("ceph-2"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, c := range []types.Config{cfg, sec} {
		if err := Apply(c, dir); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{ConsulConfigPath, ConsulAgentPolicyPath("ceph-2"), ConsulSecretsConfigPath, ConsulTokensPath, unitDir + ConsulUnit} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	for _, f := range []string{ConsulVaultPolicyPath, VaultConfigPath, VaultEnvPath, VaultSecretsDir, unitDir + VaultUnit} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("%s is there", f)
		}
	}
	var tokens map[string]any
	b, _ := os.ReadFile(filepath.Join(dir, ConsulTokensPath))
	if err := json.Unmarshal(b, &tokens); err != nil || tokens["vault"] != nil || tokens["agent"] == nil {
		t.Errorf("tokens.json = %s, %v; want no vault token", b, err)
	}
	id := renderedIdentity(t, p, m)
	if id.Vault != nil || id.Consul == nil || len(id.Consul.Policies) != 1 || id.Consul.BootstrapExpect != 2 {
		t.Errorf("machine.json: vault %v, consul %+v", id.Vault, id.Consul)
	}
	conf, _ := os.ReadFile(filepath.Join(dir, ConsulConfigPath))
	if !strings.Contains(string(conf), `retry_join       = ["10.0.0.11"]`+"\n") || !strings.Contains(string(conf), `datacenter       = "duo"`) {
		t.Errorf("consul.hcl:\n%s", conf)
	}
}

// TestConsulSecretsRefused: a Consul server's secrets must be there and
// well-formed; the error names what is wrong, never the value.
func TestConsulSecretsRefused(t *testing.T) {
	p, err := profiles.Default()
	if err != nil {
		t.Fatal(err)
	}
	m := machineNamed(t, p, "ceph-1")
	for _, tc := range []struct {
		name   string
		change func(c *ConsulSecrets) *ConsulSecrets
		want   string
	}{
		{"none", func(*ConsulSecrets) *ConsulSecrets { return nil }, "a Consul server needs the Consul secrets"},
		{"no agent token", func(c *ConsulSecrets) *ConsulSecrets { delete(c.Agent, "ceph-1"); return c }, "no Consul agent token for ceph-1"},
		{"quote in gossip key", func(c *ConsulSecrets) *ConsulSecrets { c.GossipKey += `"` + "\n"; return c }, "the Consul gossip key is empty or malformed"},
		{"empty management token", func(c *ConsulSecrets) *ConsulSecrets { c.Management.SecretID = ""; return c }, "the Consul management token is empty or malformed"},
		{"agent accessor", func(c *ConsulSecrets) *ConsulSecrets {
			c.Agent["ceph-1"] = ConsulToken{AccessorID: "5ec7e7 x", SecretID: c.Agent["ceph-1"].SecretID}
			return c
		}, "the Consul agent token's accessor is empty or malformed"},
		{"vault token", func(c *ConsulSecrets) *ConsulSecrets { c.Vault.SecretID = "5ec7e7\nX=1"; return c }, "the Consul Vault's token is empty or malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := fakeSecrets("ceph-1")
			s.Consul = tc.change(fakeConsul())
			_, err := RenderSecrets(p, m, s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("RenderSecrets = %v, want an error saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "5ec7e7") || strings.Contains(err.Error(), "R09TU0lQ") {
				t.Errorf("the error shows a secret: %v", err)
			}
		})
	}
}

// TestConsulValidate runs `consul validate` (KILN_CONSUL_BIN: Consul 1.14
// as DESIGN.md §7 builds it) on the configuration each server loads,
// public and secret, for labs of one to four servers, and refuses any
// deprecation warning. It checks what the agent would, short of reading
// the certificate files (it opens none of them) and the data directory
// (checked only when it exists). Under CI=true a missing binary fails
// the test.
func TestConsulValidate(t *testing.T) {
	bin := os.Getenv("KILN_CONSUL_BIN")
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("KILN_CONSUL_BIN is not set: point it at a consul binary (DESIGN.md §7 builds 1.14.8)")
		}
		t.Skip("KILN_CONSUL_BIN is not set")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("KILN_CONSUL_BIN: %v", err)
	}
	for _, tc := range []struct{ profile, machine string }{
		{"", "ceph-1"}, {"", "ceph-3"},
		{"../profiles/testdata/warn-two-nodes.yaml", "ceph-1"},
		{"../profiles/testdata/warn-consul-four.yaml", "ceph-4"},
		{"one", "ceph-1"},
	} {
		name := "homelab"
		if tc.profile != "" {
			name = filepath.Base(tc.profile)
		}
		t.Run(name+"/"+tc.machine, func(t *testing.T) {
			p := validateProfile(t, tc.profile)
			m := machineNamed(t, p, tc.machine)
			dir := t.TempDir()
			for _, render := range []func() (types.Config, error){
				func() (types.Config, error) { return Render(p, m) },
				func() (types.Config, error) { return RenderSecrets(p, m, fakeSecrets(tc.machine)) },
			} {
				cfg, err := render()
				if err != nil {
					t.Fatal(err)
				}
				if err := Apply(cfg, dir); err != nil {
					t.Fatal(err)
				}
			}
			out, err := exec.Command(bin, "validate",
				filepath.Join(dir, ConsulConfigPath), filepath.Join(dir, ConsulSecretsConfigPath)).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "Configuration is valid!") {
				t.Fatalf("consul validate: %v\n%s", err, out)
			}
			// A key 1.14 calls deprecated may be gone from a later Consul.
			if strings.Contains(strings.ToLower(string(out)), "deprecated") {
				t.Errorf("consul validate warns of a deprecated key:\n%s", out)
			}
			t.Logf("consul validate:\n%s", out)
		})
	}
}

// validateProfile is the reference lab (""), a profile file, or "one": a
// lab of one storage machine.
func validateProfile(t *testing.T, name string) *profiles.Profile {
	t.Helper()
	var p *profiles.Profile
	var err error
	switch name {
	case "":
		p, err = profiles.Default()
	case "one":
		var b []byte
		if b, err = os.ReadFile("../profiles/testdata/warn-one-node.yaml"); err == nil {
			p, err = profiles.Parse("one.yaml", append(b, "services: {consul: {}, vault: {unseal: manual}}\n"...))
		}
	default:
		p, err = profiles.Load(name)
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// renderedIdentity is machine.json as Render writes it.
func renderedIdentity(t *testing.T, p *profiles.Profile, m *profiles.Machine) Identity {
	t.Helper()
	cfg, err := Render(p, m)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range cfg.Storage.Files {
		if f.Path != IdentityPath {
			continue
		}
		u, err := dataurl.DecodeString(*f.Contents.Source)
		if err != nil {
			t.Fatal(err)
		}
		var id Identity
		if err := json.Unmarshal(u.Data, &id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	t.Fatalf("%s: no machine.json", m.Name)
	return Identity{}
}

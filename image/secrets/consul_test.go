package secrets

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

// sameConsul compares ConsulKeys by value (their types hide their bytes
// from cmp).
var sameConsul = cmp.Options{
	cmp.Comparer(func(a, b GossipKey) bool { return a == b }),
	cmp.Comparer(func(a, b ConsulToken) bool { return a == b }),
}

var consulServers = []string{"ceph-1", "ceph-2", "ceph-3"}

func TestConsulGeneratesOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "kiln", "lab")
	k1, err := Consul(dir, consulServers)
	if err != nil {
		t.Fatal(err)
	}
	if k1.Gossip == (GossipKey{}) {
		t.Error("the gossip key is empty")
	}
	if g, err := base64.StdEncoding.DecodeString(k1.Gossip.Base64()); err != nil || len(g) != 32 {
		t.Errorf("gossip key: %d bytes, %v; want 32 as consul keygen makes", len(g), err)
	}
	if k1.Management.AccessorID() != "" {
		t.Error("the management token has an accessor ID, which Consul chooses")
	}
	var ids []string
	for name, tok := range map[string]ConsulToken{"vault": k1.Vault, "ceph-1": k1.Agent["ceph-1"], "ceph-2": k1.Agent["ceph-2"], "ceph-3": k1.Agent["ceph-3"]} {
		for _, id := range []string{tok.AccessorID(), tok.SecretID()} {
			if u, err := uuid.Parse(id); err != nil || u.Version() != 4 || u.String() != id {
				t.Errorf("%s: %q is not a random lowercase UUID", name, id)
			}
			ids = append(ids, id)
		}
	}
	ids = append(ids, k1.Management.SecretID())
	slices.Sort(ids)
	if len(slices.Compact(ids)) != 9 {
		t.Error("an ID repeats")
	}
	for _, f := range []string{ConsulFile, "consul-agent/ceph-1.json", "consul-agent/ceph-2.json", "consul-agent/ceph-3.json"} {
		checkModes(t, filepath.Dir(filepath.Join(dir, f)), filepath.Join(dir, f))
	}
	var agent tokenFile
	b, _ := os.ReadFile(filepath.Join(dir, ConsulAgentDir, "ceph-2.json"))
	if err := json.Unmarshal(b, &agent); err != nil || agent.AccessorID != k1.Agent["ceph-2"].AccessorID() || agent.SecretID != k1.Agent["ceph-2"].SecretID() {
		t.Errorf("consul-agent/ceph-2.json is not the token: %v", err)
	}
	b, _ = os.ReadFile(filepath.Join(dir, ConsulFile))
	for _, field := range []string{"gossip_key", "management_secret_id", "vault_token", "accessor_id", "secret_id"} {
		if !strings.Contains(string(b), `"`+field+`"`) {
			t.Errorf("consul.json lacks %s", field)
		}
	}

	ageFiles(t, dir)
	files := snapshot(t, dir)
	k2, err := Consul(dir, consulServers)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(k1, k2, sameConsul); diff != "" {
		t.Errorf("second call returned other secrets (-first +second):\n%s", diff)
	}
	if diff := cmp.Diff(files, snapshot(t, dir)); diff != "" {
		t.Errorf("second call touched the files:\n%s", diff)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("dir holds %d entries, want consul.json and consul-agent/ (a temporary file left behind?)", len(ents))
	}
}

// TestConsulServersChange: adding a server adds its token, removing one
// leaves every file alone.
func TestConsulServersChange(t *testing.T) {
	dir := privateDir(t)
	k1, err := Consul(dir, []string{"ceph-1", "ceph-2"})
	if err != nil {
		t.Fatal(err)
	}
	ageFiles(t, dir)
	files := snapshot(t, dir)

	k2, err := Consul(dir, []string{"ceph-2", "ceph-4"})
	if err != nil {
		t.Fatal(err)
	}
	if k2.Gossip != k1.Gossip || k2.Management != k1.Management || k2.Vault != k1.Vault {
		t.Error("the cluster's secrets changed")
	}
	if k2.Agent["ceph-2"] != k1.Agent["ceph-2"] {
		t.Error("ceph-2's token changed")
	}
	if _, ok := k2.Agent["ceph-1"]; ok {
		t.Error("a removed server's token is returned")
	}
	if k2.Agent["ceph-4"] == (ConsulToken{}) || k2.Agent["ceph-4"] == k1.Agent["ceph-1"] {
		t.Error("the new server has no new token")
	}
	after := snapshot(t, dir)
	if _, ok := after["consul-agent/ceph-4.json"]; !ok {
		t.Error("no file for the new server")
	}
	delete(after, "consul-agent/ceph-4.json")
	if diff := cmp.Diff(files, after); diff != "" {
		t.Errorf("existing files changed:\n%s", diff)
	}

	k3, err := Consul(dir, nil)
	if err != nil || k3.Gossip != k1.Gossip || len(k3.Agent) != 0 {
		t.Errorf("Consul(dir, nil) = %d agent tokens, gossip kept %v, %v", len(k3.Agent), k3.Gossip == k1.Gossip, err)
	}
}

func TestConsulBadHosts(t *testing.T) {
	for _, servers := range [][]string{{""}, {"../x"}, {"Ceph-1"}, {"ceph-1", "ceph-1"}} {
		dir := filepath.Join(t.TempDir(), "s")
		if _, err := Consul(dir, servers); err == nil {
			t.Errorf("Consul(%q) succeeded", servers)
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("Consul(%q) made the directory anyway", servers)
		}
	}
}

func TestConsulCorrupt(t *testing.T) {
	good, err := encodeConsul()
	if err != nil {
		t.Fatal(err)
	}
	agentGood, err := encodeAgentToken()
	if err != nil {
		t.Fatal(err)
	}
	var f consulFile
	var a tokenFile
	if err := json.Unmarshal(good, &f); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(agentGood, &a); err != nil {
		t.Fatal(err)
	}
	secrets := []string{f.Gossip, f.Management, f.Vault.SecretID, a.SecretID}
	sub := func(s, old, new string) string { return strings.Replace(s, old, new, 1) }
	const agentFile = "consul-agent/ceph-1.json"
	for _, tc := range []struct {
		name, file, content, want string
	}{
		{"not JSON", ConsulFile, "{", "unexpected EOF"},
		{"empty", ConsulFile, "", "EOF"},
		{"unknown field", ConsulFile, sub(string(good), `"gossip_key"`, `"encrypt"`), "unknown field"},
		{"no gossip key", ConsulFile, sub(string(good), f.Gossip, ""), "gossip_key is missing"},
		{"short gossip key", ConsulFile, sub(string(good), f.Gossip, base64.StdEncoding.EncodeToString(make([]byte, 16))), "gossip_key is 16 bytes, want 32"},
		{"gossip key not base64", ConsulFile, sub(string(good), f.Gossip, "!"+f.Gossip[1:]), "gossip_key is not standard base64"},
		{"no management token", ConsulFile, sub(string(good), f.Management, ""), "management_secret_id is missing"},
		{"upper-case management token", ConsulFile, sub(string(good), f.Management, strings.ToUpper(f.Management)), "management_secret_id is not a lowercase UUID"},
		{"reserved accessor", ConsulFile, sub(string(good), f.Vault.AccessorID, "00000000-0000-0000-0000-000000000002"), "vault_token's accessor_id is one Consul reserves"},
		{"vault secret is its accessor", ConsulFile, sub(string(good), f.Vault.SecretID, f.Vault.AccessorID), "accessor_id and secret_id are the same"},
		{"management is vault's", ConsulFile, sub(string(good), f.Management, f.Vault.SecretID), "repeats an ID of vault_token"},
		{"agent empty", agentFile, "", "EOF"},
		{"agent no secret", agentFile, sub(string(agentGood), a.SecretID, ""), "secret_id is missing"},
		{"agent braces", agentFile, sub(string(agentGood), a.SecretID, "{"+a.SecretID+"}"), "secret_id is not a lowercase UUID"},
		{"agent is vault's token", agentFile, sub(sub(string(agentGood), a.SecretID, f.Vault.SecretID), a.AccessorID, f.Vault.AccessorID), "repeats one in consul.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := privateDir(t)
			if err := os.Mkdir(filepath.Join(dir, ConsulAgentDir), DirMode); err != nil {
				t.Fatal(err)
			}
			if tc.file != ConsulFile {
				if err := os.WriteFile(filepath.Join(dir, ConsulFile), good, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(dir, tc.file)
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Consul(dir, []string{"ceph-1"})
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Consul = %v, want ErrCorrupt about %s containing %q", err, path, tc.want)
			}
			if !strings.Contains(err.Error(), "restore") {
				t.Errorf("the error gives no way out: %v", err)
			}
			for _, s := range secrets {
				if strings.Contains(err.Error(), s) {
					t.Error("the error shows a secret")
				}
			}
			if b, _ := os.ReadFile(path); string(b) != tc.content {
				t.Error("a damaged file was rewritten")
			}
		})
	}
}

// TestConsulRedacted: printing or logging the Consul secrets shows none of
// them, whatever the verb or the nesting.
func TestConsulRedacted(t *testing.T) {
	k, err := Consul(privateDir(t), []string{"ceph-1"})
	if err != nil {
		t.Fatal(err)
	}
	nested := struct {
		Gossip GossipKey
		Token  ConsulToken
		Keys   *ConsulKeys
	}{k.Gossip, k.Vault, &k}
	var out bytes.Buffer
	for _, v := range []any{k, &k, k.Gossip, k.Management, k.Vault, &k.Vault, k.Agent, nested} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%d", "%x", "%q"} {
			fmt.Fprintf(&out, verb+"\n", v)
		}
	}
	for _, h := range []slog.Handler{slog.NewTextHandler(&out, nil), slog.NewJSONHandler(&out, nil)} {
		slog.New(h).Info("secrets", "consul", k, "gossip", k.Gossip, "mgmt", k.Management, "vault", k.Vault, "agents", k.Agent, "nested", nested)
	}
	var secrets []string
	for _, tok := range []ConsulToken{k.Management, k.Vault, k.Agent["ceph-1"]} {
		secrets = append(secrets, tok.SecretID(), strings.ReplaceAll(tok.SecretID(), "-", ""), fmt.Sprint(tok.secret[:]))
	}
	secrets = append(secrets, k.Gossip.Base64(), fmt.Sprintf("%x", k.Gossip.b[:]), fmt.Sprint(k.Gossip.b[:]))
	s := out.String()
	for _, secret := range secrets {
		if strings.Contains(s, secret) {
			t.Fatalf("a secret shows in:\n%s", s)
		}
	}
	for want, got := range map[string]string{
		"secrets.GossipKey[secret]":   fmt.Sprint(k.Gossip),
		"secrets.ConsulToken[secret]": fmt.Sprintf("%+v", k.Vault),
		"secrets.ConsulKeys[secret]":  fmt.Sprintf("%#v", k),
	} {
		if diff := cmp.Diff(want, got); diff != "" {
			t.Error(diff)
		}
	}
}

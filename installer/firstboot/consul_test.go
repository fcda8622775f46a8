package firstboot

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/image/secrets"
	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/pxe/api"
	"github.com/kilnlab/kiln/roles"
)

// fakeConsul is the slice of Consul's HTTP API the consul phase and the
// health report use, behind mutual TLS with the lab CA as a real agent
// (verify_incoming) is: the leader, ACL policies and tokens (by name and
// accessor, created with the IDs given, refused without the management
// token), members, and a KV read that default-deny ACLs refuse.
type fakeConsul struct {
	mu         sync.Mutex
	mgmt       string
	leaderIn   int // status/leader answers "" this many times first
	policies   map[string]string
	tokens     map[string]roles.ConsulToken // by accessor
	tokenPols  map[string][]string
	creates    int
	anonRefuse bool
	wiped      []string // KV prefixes deleted (recurse)
}

func (f *fakeConsul) handler() http.Handler {
	mux := http.NewServeMux()
	mgmt := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if r.Header.Get("X-Consul-Token") != f.mgmt {
				http.Error(w, "Permission denied", http.StatusForbidden)
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("GET /v1/status/leader", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.leaderIn > 0 {
			f.leaderIn--
			fmt.Fprint(w, `""`)
			return
		}
		fmt.Fprint(w, `"192.168.1.11:8300"`)
	})
	mux.HandleFunc("GET /v1/acl/policy/name/{name}", mgmt(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := f.policies[r.PathValue("name")]; !ok {
			http.Error(w, "ACL not found", http.StatusForbidden)
			return
		}
		fmt.Fprint(w, `{}`)
	}))
	mux.HandleFunc("PUT /v1/acl/policy", mgmt(func(w http.ResponseWriter, r *http.Request) {
		var p struct{ Name, Rules string }
		json.NewDecoder(r.Body).Decode(&p)
		f.policies[p.Name] = p.Rules
		f.creates++
		fmt.Fprint(w, `{}`)
	}))
	mux.HandleFunc("GET /v1/acl/token/{acc}", mgmt(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := f.tokens[r.PathValue("acc")]; !ok {
			http.Error(w, "ACL not found", http.StatusForbidden)
			return
		}
		fmt.Fprint(w, `{}`)
	}))
	mux.HandleFunc("PUT /v1/acl/token", mgmt(func(w http.ResponseWriter, r *http.Request) {
		var t struct {
			AccessorID, SecretID string
			Policies             []struct{ Name string }
		}
		json.NewDecoder(r.Body).Decode(&t)
		f.tokens[t.AccessorID] = roles.ConsulToken{AccessorID: t.AccessorID, SecretID: t.SecretID}
		for _, p := range t.Policies {
			f.tokenPols[t.AccessorID] = append(f.tokenPols[t.AccessorID], p.Name)
		}
		f.creates++
		fmt.Fprint(w, `{}`)
	}))
	mux.HandleFunc("GET /v1/agent/members", mgmt(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `[{"Name":"ceph-1","Addr":"192.168.1.11","Status":1}]`)
	}))
	mux.HandleFunc("DELETE /v1/kv/{key...}", mgmt(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("recurse") == "true" {
			f.wiped = append(f.wiped, r.PathValue("key"))
		}
		fmt.Fprint(w, "true")
	}))
	mux.HandleFunc("GET /v1/kv/{key...}", func(w http.ResponseWriter, r *http.Request) {
		if f.anonRefuse && r.Header.Get("X-Consul-Token") == "" {
			http.Error(w, "Permission denied", http.StatusForbidden)
			return
		}
		http.NotFound(w, r)
	})
	return mux
}

// consulNode is ceph-1 of the reference lab with its services: its tree
// (identity, Consul's config and policies, its secrets) as roles renders
// and applies it, with a real TLS identity from a test lab CA, and a fake
// Consul agent on loopback that checks it.
func consulNode(t *testing.T) (*node, *fakeConsul, *[]string) {
	t.Helper()
	root := t.TempDir()
	p, err := profiles.Default()
	if err != nil {
		t.Fatal(err)
	}
	m := &p.Machines[1]
	cfg, err := roles.Render(p, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := roles.Apply(cfg, root); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "lab")
	ca, err := secrets.LabCA(dir, p.Name)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := secrets.MachineCerts(dir, ca, []secrets.Machine{{Hostname: m.Name, DNSNames: []string{"localhost"}, IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}})
	if err != nil {
		t.Fatal(err)
	}
	mgmt, agent, vault := "5ec7e7aa-0000-4000-8000-000000000001", roles.ConsulToken{AccessorID: "acce55aa-0000-4000-8000-000000000002", SecretID: "5ec7e7aa-0000-4000-8000-000000000002"}, roles.ConsulToken{AccessorID: "acce55aa-0000-4000-8000-000000000003", SecretID: "5ec7e7aa-0000-4000-8000-000000000003"}
	tokens, _ := json.Marshal(roles.ConsulTokens{Management: roles.ConsulToken{SecretID: mgmt}, Agent: agent, Vault: &vault})
	for path, data := range map[string][]byte{
		roles.CACertPath: ca.CertPEM(), roles.MachineCertPath: certs[m.Name].CertPEM(), roles.MachineKeyPath: certs[m.Name].KeyPEM(),
		roles.ConsulTokensPath: tokens,
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, path)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, path), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	fc := &fakeConsul{mgmt: mgmt, leaderIn: 2, policies: map[string]string{}, tokens: map[string]roles.ConsulToken{}, tokenPols: map[string][]string{}, anonRefuse: true}
	srv := httptest.NewUnstartedServer(fc.handler())
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{certs[m.Name].TLSCertificate()}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	id, err := LoadMachine(filepath.Join(root, roles.IdentityPath))
	if err != nil {
		t.Fatal(err)
	}
	id.Consul.HTTPSAddress = srv.Listener.Addr().String()
	env := &Env{Log: quiet(), Console: &bytes.Buffer{}, Machine: id, Storage: &Storage{Root: root, Poll: time.Millisecond}}
	var ran []string
	env.Storage.Command = func(ctx context.Context, name string, args ...string) ([]byte, error) {
		ran = append(ran, strings.Join(append([]string{name}, args...), " "))
		return nil, nil
	}
	return &node{env: env, Storage: env.Storage}, fc, &ran
}

// TestConsulPhase: the consul phase starts Consul, waits for a leader,
// and creates this node's agent token and Vault's, each with its policy,
// under the IDs the lab's secrets fix; run again (after a power cut), it
// creates nothing twice.
func TestConsulPhase(t *testing.T) {
	s, fc, ran := consulNode(t)
	r := Runner{Dir: t.TempDir(), Log: quiet()}
	phases := []Phase{{Name: "consul", Tasks: s.consulTasks()}}
	if err := r.Run(context.Background(), phases); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"systemctl enable --now consul.service"}, *ran); diff != "" {
		t.Errorf("ran (-want +got):\n%s", diff)
	}
	want := map[string][]string{
		"acce55aa-0000-4000-8000-000000000002": {"kiln-agent-ceph-1"},
		"acce55aa-0000-4000-8000-000000000003": {"kiln-vault"},
	}
	if diff := cmp.Diff(want, fc.tokenPols); diff != "" {
		t.Errorf("tokens and their policies (-want +got):\n%s", diff)
	}
	for name, rules := range fc.policies {
		if !strings.Contains(rules, "policy") {
			t.Errorf("policy %s has rules %q", name, rules)
		}
	}
	creates := fc.creates
	// A power cut after the ACL task's work but before its record: the
	// task runs again and finds everything there.
	os.Remove(filepath.Join(r.Dir, "consul.acl"))
	if err := r.Run(context.Background(), phases); err != nil {
		t.Fatal(err)
	}
	if fc.creates != creates {
		t.Errorf("a re-run created %d objects again", fc.creates-creates)
	}
}

// TestConsulHealth reads the consul CLI's tables and the anonymous check.
func TestConsulHealth(t *testing.T) {
	s, fc, _ := consulNode(t)
	done := t.TempDir()
	for _, task := range []string{"consul.member"} {
		(Runner{Dir: done}).record(task)
	}
	peers := "Node    ID     Address           State   Voter  RaftProtocol\nceph-1  1a2b   192.168.1.11:8300 leader  true   3\nceph-2  3c4d   192.168.1.12:8300 follower true 3\n"
	members := "Node    Address            Status  Type    Build   Protocol  DC       Partition  Segment\nceph-1  192.168.1.11:8301  alive   server  1.14.8  2         homelab  default    <all>\nceph-2  192.168.1.12:8301  failed  server  1.14.8  2         homelab  default    <all>\n"
	var envs []string
	s.Command = func(ctx context.Context, name string, args ...string) ([]byte, error) {
		if name != "env" {
			return nil, fmt.Errorf("ran %s without env", name)
		}
		envs = append(envs, strings.Join(args, " "))
		switch cmd := strings.Join(args[len(args)-3:], " "); {
		case strings.HasSuffix(cmd, "raft list-peers"):
			return []byte(peers), nil
		case strings.HasSuffix(cmd, "consul members"):
			return []byte(members), nil
		case strings.HasSuffix(cmd, "consul version"):
			return []byte("Consul v1.14.8\nRevision 1234\n"), nil
		}
		return nil, fmt.Errorf("unexpected %q", args)
	}
	got := s.consulHealth(context.Background(), done)
	want := api.Service{Name: "consul", Status: api.HealthWarn,
		Detail: "2 voters of 3 servers, 1 of 3 servers alive: leader ceph-1, 2 voters, 1 members alive, anonymous request refused (403), Consul v1.14.8"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("health (-want +got):\n%s", diff)
	}
	for _, e := range envs {
		if strings.Contains(e, fc.mgmt) {
			t.Errorf("the management token is on a command line: %s", e)
		}
		if !strings.Contains(e, "CONSUL_HTTP_TOKEN_FILE="+consulTokenFile) {
			t.Errorf("command without the token file: %s", e)
		}
	}
	if b, err := os.ReadFile(filepath.Join(s.Root, consulTokenFile)); err != nil || !bytes.Equal(b, []byte(fc.mgmt)) {
		t.Errorf("token file: %q, %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(s.Root, consulTokenFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode: %v, %v", fi.Mode(), err)
	}

	// ACLs that let anonymous requests through are a warning too.
	fc.anonRefuse = false
	if got := s.consulHealth(context.Background(), done); !strings.Contains(got.Detail, "anonymous request answered 404: ACLs do not deny") {
		t.Errorf("anonymous allowed: %+v", got)
	}
}

package firstboot

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/kilnlab/kiln/pxe/api"
	"github.com/kilnlab/kiln/roles"
)

// The health of Consul, Vault and k3s, each asked with the program's own
// status commands (what an operator would type), so that a row the
// rehearsal calls VERIFIED means the real program said so:
//
//	consul  `consul operator raft list-peers` (with the management token:
//	        a leader and every server a voter), `consul members` (every
//	        server alive), and an anonymous request refused (ACLs deny)
//	vault   `vault status`: initialised and unsealed, active or standby
//	k3s     `k3s --version`; a stand-in (its version says STAND-IN) is
//	        asked `k3s check`, real k3s `k3s kubectl get --raw /readyz`
//
// Each is "starting" until its first-boot phase has finished.

// consulTokenFile holds the management token for the consul CLI's
// CONSUL_HTTP_TOKEN_FILE: on /run (tmpfs, root only), so that the token
// is never on a command line or in an error message.
const consulTokenFile = "/run/kiln/secrets/consul-management.token"

// consulEnv is the environment the consul CLI needs to reach the local
// agent as the machine, with the management token.
func (s *node) consulEnv() ([]string, error) {
	t, err := s.consulTokens()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.path(filepath.Dir(consulTokenFile)), 0o700); err != nil {
		return nil, err
	}
	if err := s.writeFile(consulTokenFile, []byte(t.Management.SecretID), 0o600); err != nil {
		return nil, err
	}
	return []string{
		"CONSUL_HTTP_ADDR=https://" + s.env.Machine.Consul.HTTPSAddress,
		"CONSUL_CACERT=" + roles.CACertPath,
		"CONSUL_CLIENT_CERT=" + roles.MachineCertPath,
		"CONSUL_CLIENT_KEY=" + roles.MachineKeyPath,
		"CONSUL_HTTP_TOKEN_FILE=" + consulTokenFile,
	}, nil
}

// runEnv runs a program with extra environment variables through env(1),
// so that Command (and its fakes) see one program and its arguments; the
// variables must hold nothing secret (they show in errors).
func (s *node) runEnv(ctx context.Context, vars []string, name string, args ...string) ([]byte, error) {
	if len(vars) == 0 {
		return s.run(ctx, name, args...)
	}
	return s.run(ctx, "env", append(append(vars, name), args...)...)
}

// consulHealth is the consul service of a storage node's health report.
func (s *node) consulHealth(ctx context.Context, doneDir string) api.Service {
	sv := api.Service{Name: "consul"}
	if !(Runner{Dir: doneDir}).done("consul.member") {
		sv.Status, sv.Detail = api.HealthStarting, "the first boot's consul phase has not finished yet"
		return sv
	}
	env, err := s.consulEnv()
	if err != nil {
		sv.Status, sv.Detail = api.HealthFailed, err.Error()
		return sv
	}
	servers := len(s.env.Machine.Consul.Servers)
	var problems []string
	peers, err := s.runEnv(ctx, env, roles.ConsulBinary, "operator", "raft", "list-peers")
	if err != nil {
		sv.Status, sv.Detail = api.HealthFailed, "consul operator raft list-peers: "+err.Error()
		return sv
	}
	leader, voters := raftPeers(peers)
	if leader == "" {
		sv.Status, sv.Detail = api.HealthFailed, "no Raft leader: "+strings.TrimSpace(string(peers))
		return sv
	}
	if voters < servers {
		problems = append(problems, fmt.Sprintf("%d voters of %d servers", voters, servers))
	}
	members, err := s.runEnv(ctx, env, roles.ConsulBinary, "members")
	if err != nil {
		sv.Status, sv.Detail = api.HealthFailed, "consul members: "+err.Error()
		return sv
	}
	alive := aliveMembers(members)
	if alive < servers {
		problems = append(problems, fmt.Sprintf("%d of %d servers alive", alive, servers))
	}
	anon := s.consulAnonymous(ctx)
	if anon != "refused (403)" {
		problems = append(problems, "anonymous request "+anon)
	}
	version := s.firstLine(ctx, env, roles.ConsulBinary, "version")
	sv.Detail = fmt.Sprintf("leader %s, %d voters, %d members alive, anonymous request %s, %s", leader, voters, alive, anon, version)
	sv.Status = api.HealthOK
	if len(problems) > 0 {
		sv.Status, sv.Detail = api.HealthWarn, strings.Join(problems, ", ")+": "+sv.Detail
	}
	return sv
}

// raftPeers reads `consul operator raft list-peers`' table: the leader's
// node name and the number of voters.
func raftPeers(out []byte) (leader string, voters int) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// Node  ID  Address  State  Voter  RaftProtocol
		if len(f) < 5 || f[0] == "Node" {
			continue
		}
		if f[3] == "leader" {
			leader = f[0]
		}
		if f[4] == "true" {
			voters++
		}
	}
	return leader, voters
}

// aliveMembers counts the alive servers of `consul members`' table.
func aliveMembers(out []byte) int {
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// Node  Address  Status  Type  Build  Protocol  DC  Partition  Segment
		f := strings.Fields(sc.Text())
		if len(f) >= 4 && f[2] == "alive" && f[3] == "server" {
			n++
		}
	}
	return n
}

// consulAnonymous asks for a KV key without a token: with default-deny
// ACLs Consul must refuse it.
func (s *node) consulAnonymous(ctx context.Context) string {
	api, err := s.consul(true)
	if err != nil {
		return "not sent: " + err.Error()
	}
	err = api.do(ctx, http.MethodGet, "/v1/kv/kiln/anonymous-check", nil, nil)
	var ce *consulError
	switch {
	case errors.As(err, &ce) && ce.Status == http.StatusForbidden:
		return "refused (403)"
	case errors.Is(err, errConsulNotFound):
		return "answered 404: ACLs do not deny"
	case err != nil:
		return "failed: " + err.Error()
	}
	return "answered: ACLs do not deny"
}

// firstLine is a command's first output line ("?" when it fails).
func (s *node) firstLine(ctx context.Context, env []string, name string, args ...string) string {
	out, err := s.runEnv(ctx, env, name, args...)
	if err != nil {
		return "?"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// vaultStatus is the part of `vault status -format=json` kiln reads.
type vaultStatus struct {
	Initialized   bool   `json:"initialized"`
	Sealed        bool   `json:"sealed"`
	Version       string `json:"version"`
	HAEnabled     bool   `json:"ha_enabled"`
	IsSelf        bool   `json:"is_self"`
	LeaderAddress string `json:"leader_address"`
	StorageType   string `json:"storage_type"`
}

// vaultHealth is the vault service of a storage node's health report.
func (s *node) vaultHealth(ctx context.Context, doneDir string) api.Service {
	sv := api.Service{Name: "vault"}
	if !(Runner{Dir: doneDir}).done("vault.start") {
		sv.Status, sv.Detail = api.HealthStarting, "the first boot's vault phase has not finished yet"
		return sv
	}
	env := []string{"VAULT_ADDR=" + s.env.Machine.Vault.APIAddress, "VAULT_CACERT=" + roles.CACertPath}
	// `vault status` exits 2 when sealed, with the status on stdout.
	out, err := s.runEnv(ctx, env, roles.VaultBinary, "status", "-format=json")
	var st vaultStatus
	if jerr := json.Unmarshal(out, &st); jerr != nil {
		sv.Status, sv.Detail = api.HealthFailed, fmt.Sprintf("vault status: %v", errors.Join(err, jerr))
		return sv
	}
	switch {
	case !st.Initialized:
		sv.Status, sv.Detail = api.HealthFailed, "not initialised yet (the gate initialises it when the first storage node asks)"
	case st.Sealed:
		sv.Status, sv.Detail = api.HealthFailed, "sealed"
		if s.env.Machine.Vault.Unseal == "manual" {
			sv.Detail += " (unseal: manual; waiting for `kiln vault unseal`)"
		}
	default:
		role := "standby, active is " + st.LeaderAddress
		if st.IsSelf {
			role = "active"
		}
		sv.Status, sv.Detail = api.HealthOK, fmt.Sprintf("unsealed, %s, storage %s, Vault v%s", role, st.StorageType, st.Version)
		if b, err := s.readFile(vaultSelftestFile); err == nil {
			sv.Detail += "; gate's self-test: " + string(b)
		}
	}
	return sv
}

// k3sHealth is the k3s service of a compute node's health report.
func (s *node) k3sHealth(ctx context.Context, doneDir string) api.Service {
	sv := api.Service{Name: "k3s"}
	if !(Runner{Dir: doneDir}).done("k3s.start") {
		sv.Status, sv.Detail = api.HealthStarting, "the first boot's k3s phase has not finished yet"
		return sv
	}
	version := s.firstLine(ctx, nil, roles.K3sBinary, "--version")
	if strings.Contains(version, "STAND-IN") {
		out, err := s.run(ctx, roles.K3sBinary, "check")
		sv.Status, sv.Detail = api.HealthOK, "STAND-IN: "+version+": "+oneLine(out)
		if err != nil {
			sv.Status, sv.Detail = api.HealthFailed, "STAND-IN: "+version+": "+err.Error()
		}
		return sv
	}
	out, err := s.run(ctx, roles.K3sBinary, "kubectl", "get", "--raw", "/readyz")
	if err != nil {
		sv.Status, sv.Detail = api.HealthFailed, version+": "+err.Error()
		return sv
	}
	sv.Status, sv.Detail = api.HealthOK, version+": readyz "+oneLine(out)
	return sv
}

func oneLine(b []byte) string {
	return strings.Join(strings.Fields(string(b)), " ")
}

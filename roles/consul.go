package roles

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/coreos/ignition/v2/config/v3_5/types"

	"github.com/kilnlab/kiln/profiles"
)

// A storage machine's Consul server, when the lab runs Consul (seed 004):
// every storage machine is one, gossip-encrypted, TLS from the lab CA for
// everything (RPC, HTTPS, gRPC), ACLs on with default deny. Its public
// half is Render's: consul.hcl, the ACL policies first boot creates, the
// unit, and machine.json's "consul". Its secret half is RenderSecrets':
// the gossip key and the tokens, which consul.service loads from a second
// configuration file under SecretsDir, so that nothing the gate serves
// without a credential holds them.
//
// The files use only keys that both Consul 1.14 (built here, DESIGN.md §7)
// and the current 1.22 series accept: the tls stanza rather than the
// deprecated top-level verify_* keys, acl.tokens.initial_management rather
// than acl.tokens.master.
//
// The unit is written, not enabled: first boot enables and starts it once
// the machine's certificate and secrets are in place, and creates the ACL
// policies and tokens with the IDs made in the lab's secrets directory, so
// that a second first boot (or a second server) finds them there.

// Paths of Consul's files on a storage machine.
const (
	ConsulConfigPath = "/etc/consul.d/consul.hcl"
	// ConsulPolicyDir holds the ACL policies first boot creates
	// (ConsulNode.Policies).
	ConsulPolicyDir       = "/etc/kiln/consul"
	ConsulVaultPolicyPath = ConsulPolicyDir + "/policy-vault.hcl"
	ConsulSecretsDir      = SecretsDir + "/consul"
	// ConsulSecretsConfigPath is the configuration file of the gossip
	// key and the tokens, loaded after ConsulConfigPath.
	ConsulSecretsConfigPath = ConsulSecretsDir + "/secrets.hcl"
	// ConsulTokensPath is the tokens for first boot's ACL tasks
	// (ConsulTokens, as JSON).
	ConsulTokensPath = ConsulSecretsDir + "/tokens.json"
	ConsulDataDir    = "/var/lib/consul"
	ConsulBinary     = "/usr/local/bin/consul"
	ConsulUnit       = "consul.service"
)

// Consul's ports on a server. Plain HTTP and plain gRPC are off: the API
// is HTTPS alone, gRPC TLS alone (Consul 1.14 refuses TLS without a
// grpc_tls port).
const (
	ConsulHTTPSPort   = 8501
	ConsulDNSPort     = 8600
	ConsulGRPCTLSPort = 8503
)

// ConsulHTTPSAddress is where the local CLI, Vault and first boot reach
// the agent (ConsulHTTPSPort); the machine's certificate names 127.0.0.1
// for it.
const ConsulHTTPSAddress = "127.0.0.1:8501"

// ConsulAgentPolicyPath is host's agent policy.
func ConsulAgentPolicyPath(host string) string {
	return ConsulPolicyDir + "/policy-agent-" + host + ".hcl"
}

// ConsulNode is a Consul server's part of the cluster, for its first boot:
// machine.json's "consul". Nothing in it is secret.
type ConsulNode struct {
	Datacenter string `json:"datacenter"`
	Domain     string `json:"domain"`
	// Servers are the cluster's servers: every storage machine, in
	// profile order, this one included.
	Servers         []ConsulServer `json:"servers"`
	BootstrapExpect int            `json:"bootstrap_expect"`
	// HTTPSAddress is the local agent's API (ConsulHTTPSAddress); it
	// wants the machine's certificate as client certificate.
	HTTPSAddress string `json:"https_address"`
	// Policies are the ACL policies first boot creates, each linked to
	// the token of ConsulTokensPath it names.
	Policies []ConsulPolicy `json:"policies"`
}

// ConsulServer is one Consul server.
type ConsulServer struct {
	Name    string `json:"name"`    // the storage machine's name, the node name
	Address string `json:"address"` // its LAN address
}

// ConsulPolicy is one ACL policy as first boot creates it.
type ConsulPolicy struct {
	Name string `json:"name"` // e.g. kiln-agent-ceph-1
	Path string `json:"path"` // its rules, HCL
	// Token is the token of ConsulTokens the policy is linked to, by
	// its JSON name: ConsulAgentToken or ConsulVaultToken.
	Token string `json:"token"`
}

// The tokens ConsulPolicy.Token names.
const (
	ConsulAgentToken = "agent"
	ConsulVaultToken = "vault"
)

// ConsulSecrets are the Consul cluster's secrets as RenderSecrets needs
// them: the gossip key (base64) and the tokens. The initial management
// token has no AccessorID: Consul chooses it.
type ConsulSecrets struct {
	GossipKey  string
	Management ConsulToken
	Vault      ConsulToken
	Agent      map[string]ConsulToken // by host name
}

// ConsulToken is an ACL token's IDs. The secret ID is the token itself.
type ConsulToken struct {
	AccessorID string `json:"accessor_id,omitempty"`
	SecretID   string `json:"secret_id"`
}

// ConsulTokens is ConsulTokensPath: the tokens a server's first boot
// uses (management) and creates with fixed IDs (agent, vault). Vault is
// nil when the lab runs no Vault.
type ConsulTokens struct {
	Management ConsulToken  `json:"management"`
	Agent      ConsulToken  `json:"agent"`
	Vault      *ConsulToken `json:"vault,omitempty"`
}

// Neither shows a secret in fmt or slog output.
func (ConsulSecrets) String() string             { return "roles.ConsulSecrets" + redacted }
func (ConsulSecrets) GoString() string           { return "roles.ConsulSecrets" + redacted }
func (ConsulSecrets) LogValue() slog.Value       { return slog.StringValue(redacted) }
func (ConsulSecrets) Format(f fmt.State, _ rune) { io.WriteString(f, "roles.ConsulSecrets"+redacted) }
func (ConsulToken) String() string               { return "roles.ConsulToken" + redacted }
func (ConsulToken) GoString() string             { return "roles.ConsulToken" + redacted }
func (ConsulToken) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (ConsulToken) Format(f fmt.State, _ rune)   { io.WriteString(f, "roles.ConsulToken"+redacted) }

// consulNode is machine m's ConsulNode; nil unless the lab runs Consul and
// m is one of its servers.
func consulNode(p *profiles.Profile, m *profiles.Machine) *ConsulNode {
	servers := p.ConsulServers()
	if !isServer(servers, m) {
		return nil
	}
	c := p.Services.Consul
	n := &ConsulNode{
		Datacenter: c.Datacenter, Domain: c.Domain, BootstrapExpect: len(servers),
		HTTPSAddress: ConsulHTTPSAddress,
		Policies:     []ConsulPolicy{{Name: "kiln-agent-" + m.Name, Path: ConsulAgentPolicyPath(m.Name), Token: ConsulAgentToken}},
	}
	for _, s := range servers {
		n.Servers = append(n.Servers, ConsulServer{Name: s.Name, Address: s.Address})
	}
	if runsVault(p) {
		n.Policies = append(n.Policies, ConsulPolicy{Name: "kiln-vault", Path: ConsulVaultPolicyPath, Token: ConsulVaultToken})
	}
	return n
}

func isServer(servers []*profiles.Machine, m *profiles.Machine) bool {
	return slices.ContainsFunc(servers, func(s *profiles.Machine) bool { return s.Name == m.Name })
}

// addConsul adds a Consul server's public files and unit to cfg; n is its
// ConsulNode, nil for none.
func addConsul(cfg *types.Config, p *profiles.Profile, m *profiles.Machine, n *ConsulNode) {
	if n == nil {
		return
	}
	cfg.Storage.Files = append(cfg.Storage.Files,
		file(ConsulConfigPath, consulHCL(p, m, n)),
		file(ConsulAgentPolicyPath(m.Name), agentPolicy(m.Name)))
	if runsVault(p) {
		cfg.Storage.Files = append(cfg.Storage.Files, file(ConsulVaultPolicyPath, vaultPolicy()))
	}
	cfg.Systemd.Units = append(cfg.Systemd.Units, unit(ConsulUnit, consulUnit(p)))
}

// consulHCL is a server's consul.hcl.
func consulHCL(p *profiles.Profile, m *profiles.Machine, n *ConsulNode) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by kiln: the Consul server on %s of lab %s.\n", m.Name, p.Name)
	fmt.Fprintf(&b, "# The gossip key and the ACL tokens are in %s,\n# which %s loads after this file.\n", ConsulSecretsConfigPath, ConsulUnit)
	fmt.Fprintf(&b, "server           = true\nbootstrap_expect = %d\n", n.BootstrapExpect)
	fmt.Fprintf(&b, "datacenter       = %q\ndomain           = %q\nnode_name        = %q\n", n.Datacenter, n.Domain, m.Name)
	fmt.Fprintf(&b, "data_dir         = %q\n", ConsulDataDir)
	fmt.Fprintf(&b, "bind_addr        = %q\nadvertise_addr   = %q\n", m.Address, m.Address)
	b.WriteString("# The local CLI, Vault and first boot on 127.0.0.1, the lab on the LAN.\n")
	fmt.Fprintf(&b, "client_addr      = %q\n", "127.0.0.1 "+m.Address)
	var others []string
	for _, s := range n.Servers {
		if s.Name != m.Name {
			others = append(others, fmt.Sprintf("%q", s.Address))
		}
	}
	if len(others) == 0 {
		b.WriteString("# The only server: nothing to join.\n")
	} else {
		fmt.Fprintf(&b, "retry_join       = [%s]\n", strings.Join(others, ", "))
	}
	b.WriteString("# The lab may have no internet, and asks nobody about updates.\ndisable_update_check = true\n")
	fmt.Fprintf(&b, `
ports {
  http     = -1
  https    = %d
  dns      = %d
  grpc     = -1
  grpc_tls = %d
}

# The lab CA's certificates; every connection checks both ends, and servers
# also that their peers' certificates name server.%s.%s.
tls {
  defaults {
    ca_file         = %q
    cert_file       = %q
    key_file        = %q
    verify_incoming = true
    verify_outgoing = true
  }
  internal_rpc {
    verify_server_hostname = true
  }
}

acl {
  enabled                  = true
  default_policy           = "deny"
  enable_token_persistence = true
  down_policy              = "extend-cache"
}

encrypt_verify_incoming = true
encrypt_verify_outgoing = true
`, ConsulHTTPSPort, ConsulDNSPort, ConsulGRPCTLSPort, n.Datacenter, n.Domain, CACertPath, MachineCertPath, MachineKeyPath)
	return b.String()
}

// agentPolicy lets host's agent register its own node and read the
// catalogue (Consul's documented agent policy).
func agentPolicy(host string) string {
	return fmt.Sprintf("# Written by kiln: the policy of %s's Consul agent token.\n", host) +
		aclRules([][3]string{
			{"node", host, "write"},
			{"node_prefix", "", "read"},
			{"service_prefix", "", "read"},
		})
}

// vaultPolicy is HashiCorp's documented minimum for Vault's Consul
// storage and its service registration.
func vaultPolicy() string {
	return "# Written by kiln: the policy of Vault's Consul storage token.\n" +
		aclRules([][3]string{
			{"key_prefix", VaultConsulPath, "write"},
			{"service", VaultService, "write"},
			{"agent_prefix", "", "read"},
			{"session_prefix", "", "write"},
			{"node_prefix", "", "read"},
		})
}

// aclRules writes ACL rules: resource, name, policy.
func aclRules(rules [][3]string) string {
	var b strings.Builder
	for _, r := range rules {
		fmt.Fprintf(&b, "%s %q {\n  policy = %q\n}\n", r[0], r[1], r[2])
	}
	return b.String()
}

// consulUnit runs the server as root: the machine's key is root's alone
// (SecretsDir), and the Ignition subset kiln applies makes no users.
// Type=exec, not HashiCorp's Type=notify: Consul notifies only once it has
// joined another agent, which the only server of a lab never does and a
// first server does only when another is up; first boot waits for the
// cluster itself.
func consulUnit(p *profiles.Profile) string {
	return fmt.Sprintf(`# Written by kiln: the Consul server of lab %s. Not enabled here:
# kiln-firstboot enables and starts it once its certificate and secrets
# are in place.
[Unit]
Description=Consul server (kiln)
Documentation=https://developer.hashicorp.com/consul/docs
Wants=network-online.target
After=network-online.target
ConditionFileNotEmpty=%s

[Service]
Type=exec
ExecStart=%s agent -config-file=%s -config-file=%s
ExecReload=/bin/kill --signal HUP $MAINPID
Restart=on-failure
RestartSec=5
LimitNOFILE=65536
StateDirectory=consul
StateDirectoryMode=0700
%s`, p.Name, ConsulConfigPath, ConsulBinary, ConsulConfigPath, ConsulSecretsConfigPath, unitTail)
}

// unitTail ends Consul's and Vault's units: the sandbox of HashiCorp's
// units that a service run as root keeps, and the [Install] section
// first boot's `systemctl enable` follows.
const unitTail = `NoNewPrivileges=yes
ProtectSystem=full
ProtectHome=read-only
PrivateTmp=yes
PrivateDevices=yes

[Install]
WantedBy=multi-user.target
`

// addConsulSecrets adds a Consul server's secret files to cfg: nothing
// unless the lab runs Consul and m is a server.
func addConsulSecrets(cfg *types.Config, p *profiles.Profile, m *profiles.Machine, s *ConsulSecrets) error {
	if !isServer(p.ConsulServers(), m) {
		return nil
	}
	if s == nil {
		return errors.New("a Consul server needs the Consul secrets")
	}
	agent, ok := s.Agent[m.Name]
	if !ok {
		return fmt.Errorf("no Consul agent token for %s", m.Name)
	}
	tokens := ConsulTokens{Management: s.Management, Agent: agent}
	if runsVault(p) {
		tokens.Vault = &s.Vault
	}
	if err := checkConsulSecrets(s.GossipKey, tokens); err != nil {
		return err
	}
	raw, _ := json.MarshalIndent(tokens, "", "  ")
	cfg.Storage.Directories = append(cfg.Storage.Directories, privateDir(ConsulSecretsDir))
	cfg.Storage.Files = append(cfg.Storage.Files,
		privateFile(ConsulSecretsConfigPath, consulSecretsHCL(m.Name, s.GossipKey, tokens)),
		privateFile(ConsulTokensPath, string(raw)+"\n"))
	return nil
}

// secretRE is what a gossip key (base64) or a token's ID (a UUID) is made
// of: nothing that could end an HCL string or an environment line.
var secretRE = regexp.MustCompile(`^[A-Za-z0-9+/=-]+$`)

// checkConsulSecrets refuses empty or malformed values, naming them,
// never quoting them.
func checkConsulSecrets(gossip string, t ConsulTokens) error {
	values := map[string]string{
		"gossip key": gossip, "management token": t.Management.SecretID,
		"agent token": t.Agent.SecretID, "agent token's accessor": t.Agent.AccessorID,
	}
	if t.Vault != nil {
		values["Vault's token"], values["Vault's token's accessor"] = t.Vault.SecretID, t.Vault.AccessorID
	}
	for _, name := range slices.Sorted(maps.Keys(values)) {
		if !secretRE.MatchString(values[name]) {
			return fmt.Errorf("the Consul %s is empty or malformed", name)
		}
	}
	return nil
}

// consulSecretsHCL is the configuration file of a server's secrets.
func consulSecretsHCL(host, gossip string, t ConsulTokens) string {
	return fmt.Sprintf(`# Written by kiln: the Consul secrets of %s (root only).
encrypt = %q

acl {
  tokens {
    initial_management = %q
    agent              = %q
  }
}
`, host, gossip, t.Management.SecretID, t.Agent.SecretID)
}

func unit(name, contents string) types.Unit {
	return types.Unit{Name: name, Contents: &contents}
}

package roles

import (
	"errors"
	"fmt"

	"github.com/coreos/ignition/v2/config/v3_5/types"

	"github.com/kilnlab/kiln/profiles"
)

// A storage machine's Vault, when the lab runs Vault (seed 004): one
// beside every Consul server, on Consul's storage through the local agent
// over HTTPS, one active and the others standby. Its public half is
// Render's: vault.hcl, the unit, machine.json's "vault". Its secret half is
// the Consul token its storage uses, which RenderSecrets writes as an
// environment file for the unit: Vault's Consul storage (and its service
// registration) takes CONSUL_HTTP_TOKEN from the environment when its
// configuration has no token (physical/consul: api.DefaultConfig reads
// it, and only a "token" key overrides it), so vault.hcl stays public.
//
// Initialising and unsealing Vault are first boot's and the gate's work;
// the keys Vault makes are not the lab's secrets directory's.
//
// The file uses only keys that both Vault 1.13 (built here, DESIGN.md §7)
// and the current 1.21 series accept.

// Paths of Vault's files on a storage machine.
const (
	VaultConfigPath = "/etc/vault.d/vault.hcl"
	VaultSecretsDir = SecretsDir + "/vault"
	// VaultEnvPath is the unit's environment: CONSUL_HTTP_TOKEN.
	VaultEnvPath = VaultSecretsDir + "/consul.env"
	VaultBinary  = "/usr/local/bin/vault"
	VaultUnit    = "vault.service"
)

// Vault's ports: its API and its cluster port (request forwarding between
// the active Vault and the standbys).
const (
	VaultAPIPort     = 8200
	VaultClusterPort = 8201
)

// Vault's place in Consul: its keys' prefix and its service's name.
const (
	VaultConsulPath = "vault/"
	VaultService    = "vault"
)

// VaultNode is a storage machine's Vault, for its first boot:
// machine.json's "vault". Nothing in it is secret.
type VaultNode struct {
	// Unseal is profiles.UnsealGate or profiles.UnsealManual.
	Unseal string `json:"unseal"`
	// APIAddress is this Vault's API, e.g. https://192.168.1.11:8200.
	APIAddress string `json:"api_address"`
	// Peers are the other Vaults, in profile order.
	Peers []VaultPeer `json:"peers"`
}

// VaultPeer is another storage machine's Vault.
type VaultPeer struct {
	Name       string `json:"name"`
	APIAddress string `json:"api_address"`
}

func runsVault(p *profiles.Profile) bool {
	return p.Services != nil && p.Services.Vault != nil && p.Services.Consul != nil
}

// vaultNode is machine m's VaultNode; nil unless the lab runs Vault and
// m is a Consul server.
func vaultNode(p *profiles.Profile, m *profiles.Machine) *VaultNode {
	servers := p.ConsulServers()
	if !runsVault(p) || !isServer(servers, m) {
		return nil
	}
	n := &VaultNode{Unseal: p.Services.Vault.Unseal, APIAddress: vaultAPI(m.Address), Peers: []VaultPeer{}}
	for _, s := range servers {
		if s.Name != m.Name {
			n.Peers = append(n.Peers, VaultPeer{Name: s.Name, APIAddress: vaultAPI(s.Address)})
		}
	}
	return n
}

func vaultAPI(addr string) string { return fmt.Sprintf("https://%s:%d", addr, VaultAPIPort) }

// addVault adds a Vault's public files and unit to cfg; n is its
// VaultNode, nil for none.
func addVault(cfg *types.Config, p *profiles.Profile, m *profiles.Machine, n *VaultNode) {
	if n == nil {
		return
	}
	cfg.Storage.Files = append(cfg.Storage.Files, file(VaultConfigPath, vaultHCL(p, m, n)))
	cfg.Systemd.Units = append(cfg.Systemd.Units, unit(VaultUnit, vaultUnit(p)))
}

// vaultHCL is a Vault's vault.hcl. The listener takes every address, so
// that the local CLI reaches it on 127.0.0.1 as the lab does on the LAN;
// the machine's certificate names both.
func vaultHCL(p *profiles.Profile, m *profiles.Machine, n *VaultNode) string {
	return fmt.Sprintf(`# Written by kiln: Vault on %s of lab %s, on Consul's storage through
# the local Consul agent. Its Consul token is CONSUL_HTTP_TOKEN in
# %s, which %s loads.
storage "consul" {
  address       = %q
  scheme        = "https"
  path          = %q
  tls_ca_file   = %q
  tls_cert_file = %q
  tls_key_file  = %q
}

listener "tcp" {
  address         = "0.0.0.0:%d"
  cluster_address = "%s:%d"
  tls_cert_file   = %q
  tls_key_file    = %q
}

api_addr     = %q
cluster_addr = "https://%s:%d"
ui           = false
`, m.Name, p.Name, VaultEnvPath, VaultUnit,
		ConsulHTTPSAddress, VaultConsulPath, CACertPath, MachineCertPath, MachineKeyPath,
		VaultAPIPort, m.Address, VaultClusterPort, MachineCertPath, MachineKeyPath,
		n.APIAddress, m.Address, VaultClusterPort)
}

// vaultUnit follows HashiCorp's unit, as root like consulUnit. It wants
// Consul and starts after it, but does not require it: a restarted Vault
// comes up sealed, so a Consul restart must not stop or restart Vault,
// which rides out a storage outage by itself.
func vaultUnit(p *profiles.Profile) string {
	return fmt.Sprintf(`# Written by kiln: Vault of lab %s. Not enabled here: kiln-firstboot
# enables and starts it once Consul and Vault's token are in place.
[Unit]
Description=Vault (kiln)
Documentation=https://developer.hashicorp.com/vault/docs
Wants=network-online.target %s
After=network-online.target %s
ConditionFileNotEmpty=%s

[Service]
Type=notify
EnvironmentFile=%s
ExecStart=%s server -config=%s
# Vault says ready (sd_notify) only once its storage answers; on a loaded
# machine (three TCG VMs on two cores: more than 90 s) systemd's default
# start timeout killed it.
TimeoutStartSec=10min
ExecReload=/bin/kill --signal HUP $MAINPID
KillSignal=SIGINT
Restart=on-failure
RestartSec=5
TimeoutStopSec=30
LimitNOFILE=65536
LimitMEMLOCK=infinity
AmbientCapabilities=CAP_IPC_LOCK
CapabilityBoundingSet=CAP_SYSLOG CAP_IPC_LOCK
SecureBits=keep-caps
%s`, p.Name, ConsulUnit, ConsulUnit, VaultConfigPath, VaultEnvPath, VaultBinary, VaultConfigPath, unitTail)
}

// addVaultSecrets adds a Vault's Consul token to cfg: nothing unless the
// lab runs Vault and m is a Consul server. addConsulSecrets has checked
// the token.
func addVaultSecrets(cfg *types.Config, p *profiles.Profile, m *profiles.Machine, s *ConsulSecrets) error {
	if !runsVault(p) || !isServer(p.ConsulServers(), m) {
		return nil
	}
	if s == nil {
		return errors.New("a Vault needs the Consul secrets")
	}
	cfg.Storage.Directories = append(cfg.Storage.Directories, privateDir(VaultSecretsDir))
	cfg.Storage.Files = append(cfg.Storage.Files,
		privateFile(VaultEnvPath, "CONSUL_HTTP_TOKEN="+s.Vault.SecretID+"\n"))
	return nil
}

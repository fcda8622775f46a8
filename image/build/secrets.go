package build

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/kilnlab/kiln/image/secrets"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/roles"
)

// OutGateSecrets is the gate's share of the lab's secrets inside
// Options.Out (0700, files 0600): the very tree the gate image's payload
// carries as secrets/, kept beside the bundle for `kiln gate serve`. It is
// never inside the bundle, which the gate serves to anyone.
const OutGateSecrets = "gate-secrets"

// secretsDir is the lab's secrets directory.
func (b *builder) secretsDir() (string, error) {
	if b.SecretsDir != "" {
		return b.SecretsDir, nil
	}
	return secrets.DefaultDir(b.Plan.Lab)
}

// gateSecretsDir is where the gate's share is staged.
func (b *builder) gateSecretsDir() string { return filepath.Join(b.Out, OutGateSecrets) }

// machineSecrets stages the gate's share of the lab's secrets, made once
// in the lab's secrets directory: the lab CA's certificate, the gate's
// TLS identity, the WireGuard keys when there is a tunnel, and each
// netbooted machine's secret config (roles.RenderSecrets), which the gate
// hands to that machine's installer only.
func (b *builder) machineSecrets(ctx context.Context) error {
	dir, err := b.secretsDir()
	if err != nil {
		return err
	}
	out := b.gateSecretsDir()
	// Derived entirely from the lab's secrets: made afresh, so a machine
	// removed from the profile leaves nothing behind.
	if err := os.RemoveAll(out); err != nil {
		return err
	}
	ca, err := secrets.LabCA(dir, b.Plan.Lab)
	if err != nil {
		return err
	}
	certs, err := secrets.MachineCerts(dir, ca, certMachines(b.Plan, b.Profile))
	if err != nil {
		return err
	}
	var ceph *roles.CephSecrets
	if hosts := storageHosts(b.Profile); len(hosts) > 0 {
		keys, err := secrets.Ceph(dir, hosts)
		if err != nil {
			return err
		}
		ceph = cephSecrets(keys)
	}
	consul, err := b.consulSecrets(dir)
	if err != nil {
		return err
	}
	k3sToken := ""
	if len(b.Profile.K3sNodes()) > 0 {
		t, err := secrets.K3s(dir)
		if err != nil {
			return err
		}
		k3sToken = t.Hex()
	}
	if g, ok := b.gate(); ok {
		if err := secrets.WriteGateTLS(out, ca, certs[g.Name]); err != nil {
			return err
		}
	}
	for _, m := range b.machines() {
		pm := b.profileMachine(m.Name)
		if pm == nil {
			return fmt.Errorf("machine %s is in the plan but not the profile", m.Name)
		}
		c := certs[m.Name]
		cfg, err := roles.RenderSecrets(b.Profile, pm, roles.Secrets{
			CACert: ca.CertPEM(), MachineCert: c.CertPEM(), MachineKey: c.KeyPEM(), Ceph: ceph, Consul: consul,
			K3sToken: k3sToken,
		})
		if err != nil {
			return err
		}
		raw, err := json.Marshal(cfg)
		if err != nil {
			return err
		}
		if err := secrets.WriteMachineSecrets(out, m.Name, raw); err != nil {
			return err
		}
	}
	return b.gateWireGuardKeys(out, dir)
}

// gateWireGuardKeys adds the gate's WireGuard keys to out when the profile
// has a tunnel (generated once into the lab's secrets directory).
func (b *builder) gateWireGuardKeys(out, dir string) error {
	g, ok := b.gate()
	if !ok {
		return nil
	}
	pm := b.profileMachine(g.Name)
	if pm == nil || pm.WireGuard == nil {
		return nil
	}
	keys, err := secrets.WireGuard(dir)
	if err != nil {
		return err
	}
	return secrets.WriteGateKeys(out, keys.GateView())
}

// certMachines names every machine of the plan for its certificate: its
// host name and its LAN address. A Consul server's also names
// server.<datacenter>.<domain>, which Consul's verify_server_hostname
// checks between servers, and localhost and 127.0.0.1, where the local
// CLI and Vault reach the agent (and the CLI its Vault).
func certMachines(p *plan.Plan, prof *profiles.Profile) []secrets.Machine {
	servers := map[string]bool{}
	for _, m := range prof.ConsulServers() {
		servers[m.Name] = true
	}
	var out []secrets.Machine
	for _, m := range p.Machines {
		sm := secrets.Machine{Hostname: m.Name}
		if pfx, err := netip.ParsePrefix(m.Address); err == nil {
			sm.IPs = []netip.Addr{pfx.Addr()}
		} else if a, err := netip.ParseAddr(m.Address); err == nil {
			sm.IPs = []netip.Addr{a}
		}
		if servers[m.Name] {
			sm.DNSNames = []string{prof.Services.Consul.ServerName(), "localhost"}
			sm.IPs = append(sm.IPs, netip.AddrFrom4([4]byte{127, 0, 0, 1}))
		}
		out = append(out, sm)
	}
	return out
}

func storageHosts(p *profiles.Profile) []string {
	var out []string
	for _, m := range p.Machines {
		if m.Role == profiles.RoleStorage {
			out = append(out, m.Name)
		}
	}
	return out
}

func cephSecrets(k secrets.CephKeys) *roles.CephSecrets {
	mgr := make(map[string]string, len(k.Mgr))
	for h, key := range k.Mgr {
		mgr[h] = key.Base64()
	}
	return &roles.CephSecrets{
		FSID: k.FSID.String(), Mon: k.Mon.Base64(), Admin: k.Admin.Base64(),
		BootstrapOSD: k.BootstrapOSD.Base64(), Mgr: mgr,
	}
}

// consulSecrets loads the Consul cluster's secrets, made once in the lab's
// secrets directory; nil when the lab runs no Consul.
func (b *builder) consulSecrets(dir string) (*roles.ConsulSecrets, error) {
	var hosts []string
	for _, m := range b.Profile.ConsulServers() {
		hosts = append(hosts, m.Name)
	}
	if len(hosts) == 0 {
		return nil, nil
	}
	k, err := secrets.Consul(dir, hosts)
	if err != nil {
		return nil, err
	}
	agent := make(map[string]roles.ConsulToken, len(k.Agent))
	for h, t := range k.Agent {
		agent[h] = consulToken(t)
	}
	return &roles.ConsulSecrets{
		GossipKey: k.Gossip.Base64(), Management: consulToken(k.Management),
		Vault: consulToken(k.Vault), Agent: agent,
	}, nil
}

func consulToken(t secrets.ConsulToken) roles.ConsulToken {
	return roles.ConsulToken{AccessorID: t.AccessorID(), SecretID: t.SecretID()}
}

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
	certs, err := secrets.MachineCerts(dir, ca, certMachines(b.Plan))
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
			CACert: ca.CertPEM(), MachineCert: c.CertPEM(), MachineKey: c.KeyPEM(), Ceph: ceph,
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
// host name and its LAN address.
func certMachines(p *plan.Plan) []secrets.Machine {
	var out []secrets.Machine
	for _, m := range p.Machines {
		sm := secrets.Machine{Hostname: m.Name}
		if pfx, err := netip.ParsePrefix(m.Address); err == nil {
			sm.IPs = []netip.Addr{pfx.Addr()}
		} else if a, err := netip.ParseAddr(m.Address); err == nil {
			sm.IPs = []netip.Addr{a}
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

package plan

import "github.com/kilnlab/kiln/profiles"

// Services is the part of the lab's services the gate and the rehearsal
// act on: who runs what, and how Vault is unsealed. Versions are not here:
// they are the build's choice (the lock and the lab's artifact record),
// and a plan does not change when a file is imported.
type Services struct {
	Consul *Consul `json:"consul,omitempty"`
	Vault  *Vault  `json:"vault,omitempty"`
	K3s    *K3s    `json:"k3s,omitempty"`
}

// Consul is the lab's Consul cluster.
type Consul struct {
	Datacenter string   `json:"datacenter"`
	Domain     string   `json:"domain"`
	Servers    []string `json:"servers"` // machine names
}

// Vault is the lab's Vault.
type Vault struct {
	Unseal string   `json:"unseal"` // profiles.UnsealGate or UnsealManual
	Nodes  []string `json:"nodes"`  // machine names
}

// K3s is the compute machines' Kubernetes.
type K3s struct {
	Server string   `json:"server"`
	Agents []string `json:"agents,omitempty"`
	GitOps bool     `json:"gitops,omitempty"`
}

// Service names, as machines report their health and the rehearsal's
// table lists them.
const (
	ServiceCeph   = "ceph"
	ServiceConsul = "consul"
	ServiceVault  = "vault"
	ServiceK3s    = "k3s"
)

// services plans p's services; nil when it runs none beyond Ceph.
func services(p *profiles.Profile) *Services {
	s := p.Services
	if s == nil {
		return nil
	}
	out := &Services{}
	if s.Consul != nil {
		out.Consul = &Consul{Datacenter: s.Consul.Datacenter, Domain: s.Consul.Domain, Servers: names(p.ConsulServers())}
	}
	if s.Vault != nil {
		out.Vault = &Vault{Unseal: s.Vault.Unseal, Nodes: names(p.ConsulServers())}
	}
	if s.K3s != nil {
		if nodes := names(p.K3sNodes()); len(nodes) > 0 {
			out.K3s = &K3s{Server: nodes[0], GitOps: s.K3s.GitOps != nil}
			if len(nodes) > 1 {
				out.K3s.Agents = nodes[1:]
			}
		}
	}
	return out
}

// machineServices lists what machine m runs, in start order.
func machineServices(p *profiles.Profile, m profiles.Machine) []string {
	var out []string
	switch m.Role {
	case profiles.RoleStorage:
		out = append(out, ServiceCeph)
		if p.Services != nil && p.Services.Consul != nil {
			out = append(out, ServiceConsul)
		}
		if p.Services != nil && p.Services.Vault != nil {
			out = append(out, ServiceVault)
		}
	case profiles.RoleCompute:
		if p.Services != nil && p.Services.K3s != nil {
			out = append(out, ServiceK3s)
		}
	}
	return out
}

func names(ms []*profiles.Machine) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Name
	}
	return out
}

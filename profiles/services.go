package profiles

import (
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"regexp"
	"strings"
)

// The lab's services beyond Ceph, as far as a profile decides them (seed
// 004): a Consul server on every storage machine, a Vault beside each one
// on Consul's storage, and k3s on the compute machines, optionally
// bootstrapping ArgoCD from a git repository. Each block is optional; a
// block present turns its service on.
//
// Which machines run what follows from their roles, not from lists here,
// so that a machine's role stays the one place that says what it runs:
// Consul and Vault on every storage machine, k3s on every compute machine
// (the first one listed is the k3s server, the others join it as agents).

// Services are the lab's services beyond Ceph.
type Services struct {
	Consul *Consul `yaml:"consul" json:",omitempty"`
	Vault  *Vault  `yaml:"vault" json:",omitempty"`
	K3s    *K3s    `yaml:"k3s" json:",omitempty"`
}

// Consul is the lab's Consul cluster: one server per storage machine,
// bootstrap_expect their count, gossip-encrypted, TLS from the lab CA, ACLs
// on with default deny.
type Consul struct {
	// Datacenter is Consul's datacenter name; empty means the lab's name.
	Datacenter string `yaml:"datacenter"`
	// Domain is Consul's DNS domain (server certificates name
	// server.<datacenter>.<domain>); empty means "consul".
	Domain string `yaml:"domain"`
	// Version pins the Consul release; empty means the lock's pin (or the
	// version `kiln artifacts import --version` chose for this lab).
	Version string `yaml:"version"`
}

// Vault unseal modes.
const (
	// UnsealGate: the gate, which holds the unseal keys, unseals every
	// Vault that comes up sealed (after a reboot), with no human.
	UnsealGate = "gate"
	// UnsealManual: a sealed Vault stays sealed until `kiln vault unseal`.
	UnsealManual = "manual"
)

// Vault is the lab's Vault: one per storage machine, on Consul's storage
// through the local Consul agent, one active and the others standby.
type Vault struct {
	// Unseal is gate (the default: the gate unseals a Vault that comes up
	// sealed) or manual (it stays sealed until `kiln vault unseal`).
	Unseal  string `yaml:"unseal"`
	Version string `yaml:"version"` // as consul's version
}

// K3s is the compute machines' Kubernetes.
type K3s struct {
	Version string `yaml:"version"` // as consul's version
	// Disable lists k3s's packaged components not to deploy (k3s's
	// --disable).
	Disable []string `yaml:"disable"`
	// TLSSAN are extra names or addresses the API server's certificate
	// carries (k3s's --tls-san), beside the machine's name and address.
	TLSSAN []string `yaml:"tls_san"`
	// GitOps, when set, makes k3s deploy ArgoCD and a root Application
	// that deploys everything else from a git repository.
	GitOps *GitOps `yaml:"gitops" json:",omitempty"`
}

// GitOps is where the lab's applications are declared.
type GitOps struct {
	// Repo is the git repository's URL (https://, ssh:// or git@host:path).
	Repo string `yaml:"repo" jsonschema:"required"`
	// Path is the directory in the repository the root Application
	// deploys; empty means the repository's top.
	Path string `yaml:"path"`
	// Revision is the branch, tag or commit to follow; empty means HEAD.
	Revision string `yaml:"revision"`
}

// Defaults of the services' fields.
const (
	DefaultConsulDomain = "consul"
	DefaultRevision     = "HEAD"
)

// K3sComponents are what k3s deploys by itself and --disable accepts.
var K3sComponents = []string{"coredns", "servicelb", "traefik", "local-storage", "metrics-server", "runtimes"}

var (
	// dcRE is what Consul accepts as a datacenter name.
	dcRE = regexp.MustCompile(`^[a-z0-9_-]{1,63}$`)
	// versionRE: a release version as upstream tags it (1.22.6,
	// v1.33.6+k3s1, 1.14.8); a leading v is kept as written.
	versionRE = regexp.MustCompile(`^v?[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?$`)
	// scpRE is git's scp-like syntax, user@host:path.
	scpRE = regexp.MustCompile(`^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^/].*$`)
)

func applyServiceDefaults(p *Profile) {
	s := p.Services
	if s == nil {
		return
	}
	if c := s.Consul; c != nil {
		if c.Datacenter == "" {
			c.Datacenter = p.Name
		}
		if c.Domain == "" {
			c.Domain = DefaultConsulDomain
		}
	}
	if v := s.Vault; v != nil && v.Unseal == "" {
		v.Unseal = UnsealGate
	}
	if k := s.K3s; k != nil && k.GitOps != nil && k.GitOps.Revision == "" {
		k.GitOps.Revision = DefaultRevision
	}
}

// services checks the services block against the machines that will run
// them.
func (v *validator) services() {
	s := v.p.Services
	if s == nil {
		return
	}
	storage, compute := v.byRole(RoleStorage), v.byRole(RoleCompute)
	if c := s.Consul; c != nil {
		v.consul(c, storage)
	}
	if s.Vault != nil {
		v.oneOf("services.vault.unseal", s.Vault.Unseal, []string{UnsealGate, UnsealManual})
		v.version("services.vault.version", s.Vault.Version)
		if s.Consul == nil || len(storage) == 0 {
			v.ps.add("services.vault", "Vault stores its data in Consul, and this lab runs no Consul server: add services.consul and at least one storage machine")
		}
	}
	if k := s.K3s; k != nil {
		v.k3s(k, compute)
	}
}

// byRole lists the indexes of the machines with role.
func (v *validator) byRole(role string) []int {
	var out []int
	for i := range v.p.Machines {
		if v.p.Machines[i].Role == role {
			out = append(out, i)
		}
	}
	return out
}

// consul checks the datacenter and domain, and the quorum the storage
// machines give: Raft needs a strict majority of servers, so two servers
// need each other (like two Ceph monitors) and an even count tolerates no
// more failures than the odd count below it.
func (v *validator) consul(c *Consul, storage []int) {
	if !dcRE.MatchString(c.Datacenter) {
		v.ps.add("services.consul.datacenter", "%q is not a Consul datacenter name: use lowercase letters, digits, '-' and '_'", c.Datacenter)
	}
	if !v.dnsName(c.Domain) {
		v.ps.add("services.consul.domain", "%q is not a DNS domain such as consul", c.Domain)
	}
	v.version("services.consul.version", c.Version)
	switch n := len(storage); {
	case n == 0:
		v.ps.add("services.consul", "no storage machine to run a Consul server (one runs on every storage machine)")
	case n == 2:
		v.ps.warn(field("machines", storage[1])+".role",
			"one of two Consul servers (with %s): a Raft quorum of two needs both, so Consul (and Vault on it) stops when either machine is down; three survive the loss of one",
			v.p.Machines[storage[0]].Name)
	case n > 2 && n%2 == 0:
		v.ps.warn(field("machines", storage[n-1])+".role",
			"%d Consul servers: an even count survives no more losses than %d servers do, and its quorum is larger", n, n-1)
	}
}

func (v *validator) k3s(k *K3s, compute []int) {
	if len(compute) == 0 {
		v.ps.add("services.k3s", "no compute machine to run k3s (it runs on every compute machine)")
	}
	v.version("services.k3s.version", k.Version)
	for i, d := range k.Disable {
		v.oneOf(field("services.k3s.disable", i), d, K3sComponents)
	}
	for i, s := range k.TLSSAN {
		if _, err := netip.ParseAddr(s); err != nil && !v.dnsName(s) {
			v.ps.add(field("services.k3s.tls_san", i), "%q is neither an IP address nor a DNS name", s)
		}
	}
	if g := k.GitOps; g != nil {
		v.gitops(g)
	}
}

func (v *validator) gitops(g *GitOps) {
	if v.required("services.k3s.gitops.repo", g.Repo) && !gitURL(g.Repo) {
		v.ps.add("services.k3s.gitops.repo", "%q is not a git URL (https://host/repo.git, ssh://host/repo.git or git@host:repo.git)", g.Repo)
	}
	if g.Path != "" && (path.IsAbs(g.Path) || path.Clean(g.Path) != g.Path || strings.HasPrefix(g.Path, "..")) {
		v.ps.add("services.k3s.gitops.path", "%q is not a clean path inside the repository (no leading /, no ..)", g.Path)
	}
	if strings.ContainsAny(g.Revision, " \t\n~^:?*[\\") {
		v.ps.add("services.k3s.gitops.revision", "%q is not a git branch, tag or commit", g.Revision)
	}
}

// version checks a release version's spelling when one is given; whether
// the lock pins it is the build's question (the lock is not the profile's).
func (v *validator) version(f, s string) {
	if s != "" && !versionRE.MatchString(s) {
		v.ps.add(f, "%q is not a release version such as 1.22.6 or v1.33.6+k3s1", s)
	}
}

// dnsName reports whether s is a DNS name of RFC 1123 labels.
func (v *validator) dnsName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !labelRE.MatchString(l) {
			return false
		}
	}
	return true
}

func gitURL(s string) bool {
	if scpRE.MatchString(s) {
		return true
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Path == "" || u.Path == "/" {
		return false
	}
	switch u.Scheme {
	case "https", "http", "ssh", "git":
		return true
	}
	return false
}

// ConsulServers are the machines that run a Consul server: every storage
// machine, in profile order; nil when the lab runs no Consul.
func (p *Profile) ConsulServers() []*Machine {
	if p.Services == nil || p.Services.Consul == nil {
		return nil
	}
	return p.machinesWithRole(RoleStorage)
}

// K3sNodes are the machines that run k3s, the server first; nil when the
// lab runs no k3s.
func (p *Profile) K3sNodes() []*Machine {
	if p.Services == nil || p.Services.K3s == nil {
		return nil
	}
	return p.machinesWithRole(RoleCompute)
}

func (p *Profile) machinesWithRole(role string) []*Machine {
	var out []*Machine
	for i := range p.Machines {
		if p.Machines[i].Role == role {
			out = append(out, &p.Machines[i])
		}
	}
	return out
}

// ServerName is the name Consul's server certificates carry, which
// verify_server_hostname checks: server.<datacenter>.<domain>.
func (c *Consul) ServerName() string {
	return fmt.Sprintf("server.%s.%s", c.Datacenter, c.Domain)
}

package roles

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	v35 "github.com/coreos/ignition/v2/config/v3_5"
	"github.com/coreos/ignition/v2/config/v3_5/types"
	"github.com/vincent-petithory/dataurl"

	"github.com/kilnlab/kiln/profiles"
)

// GatePort is the gate's HTTP port (kiln-contracts.md, "Gate HTTP API").
const GatePort = 8080

// Paths of the files Render writes.
const (
	HostnamePath = "/etc/hostname"
	// NetworkPath configures the NIC that netboots, alone; a machine
	// whose profile lists interfaces has files per link in NetworkDir
	// instead (see Links).
	NetworkPath  = NetworkDir + "10-kiln.network"
	NetworkDir   = "/etc/systemd/network/"
	IdentityPath = "/etc/kiln/machine.json"
	HostsPath    = "/etc/hosts"
	ResolvPath   = "/etc/resolv.conf"
)

// Identity is /etc/kiln/machine.json: who the machine is, for its first-boot
// tasks. It holds no secrets (the state image is not secret).
type Identity struct {
	Lab     string   `json:"lab"`
	Name    string   `json:"name"`
	Role    string   `json:"role"`
	MAC     string   `json:"mac"`
	Address string   `json:"address"` // with prefix, e.g. 192.168.1.11/24
	Gateway string   `json:"gateway"`
	DNS     []string `json:"dns,omitempty"`
	NTP     []string `json:"ntp,omitempty"`
	Gate    string   `json:"gate"`     // the gate's address
	GateURL string   `json:"gate_url"` // its HTTP API, e.g. http://192.168.1.10:8080
	// ClusterAddress is the machine's address on the lab's cluster
	// network, with its prefix (e.g. 10.20.0.11/24), for Ceph's
	// cluster_network; empty when it is not on one.
	ClusterAddress string `json:"cluster_address,omitempty"`
	// Links are the machine's interfaces as its networkd files configure
	// them (Links), so that its first boot can check them from inside;
	// nil when the profile lists none.
	Links []Link `json:"links,omitempty"`
	// Ceph is a storage node's part of the Ceph cluster (its monitors,
	// its planned OSD devices); nil on other roles.
	Ceph *CephNode `json:"ceph,omitempty"`
	// Consul is a Consul server's part of the cluster, and Vault the
	// Vault beside it; nil unless the lab runs them and this is a
	// storage machine.
	Consul *ConsulNode `json:"consul,omitempty"`
	Vault  *VaultNode  `json:"vault,omitempty"`
	// K3s is a compute machine's part of k3s (k3s.go); nil unless the lab
	// runs k3s.
	K3s *K3sNode `json:"k3s,omitempty"`
}

// Render returns machine m's configuration as an Ignition v3.5 config,
// validated by Ignition's own parser. p must be a validated profile.
func Render(p *profiles.Profile, m *profiles.Machine) (types.Config, error) {
	role, err := Lookup(m.Role)
	if err != nil {
		return types.Config{}, fmt.Errorf("render %s: %w", m.Name, err)
	}
	id, err := identity(p, m)
	if err != nil {
		return types.Config{}, fmt.Errorf("render %s: %w", m.Name, err)
	}
	if m.Role == profiles.RoleStorage {
		id.Ceph = cephNode(p, m, role)
		id.Consul, id.Vault = consulNode(p, m), vaultNode(p, m)
	}
	id.K3s = K3sIdentity(p, m)
	idJSON, _ := json.MarshalIndent(id, "", "  ")
	cfg := types.Config{Ignition: types.Ignition{Version: types.MaxVersion.String()}}
	cfg.Storage.Files = []types.File{
		file(HostnamePath, m.Name+"\n"),
		file(HostsPath, hosts(p)),
	}
	if id.Links == nil {
		cfg.Storage.Files = append(cfg.Storage.Files, file(NetworkPath, networkd(id)))
	} else {
		for _, f := range networkdFiles(id, id.Links) {
			cfg.Storage.Files = append(cfg.Storage.Files, file(f.path, f.contents))
		}
	}
	cfg.Storage.Files = append(cfg.Storage.Files, file(IdentityPath, string(idJSON)+"\n"))
	if len(id.DNS) > 0 {
		cfg.Storage.Files = append(cfg.Storage.Files, file(ResolvPath, resolvConf(id.DNS)))
	}
	if id.Ceph != nil {
		conf, err := cephConf(p, m, id.Ceph)
		if err != nil {
			return types.Config{}, fmt.Errorf("render %s: %w", m.Name, err)
		}
		cfg.Storage.Files = append(cfg.Storage.Files, file(CephConfPath, conf))
	}
	addConsul(&cfg, p, m, id.Consul)
	addVault(&cfg, p, m, id.Vault)
	k3sFiles, k3sUnits, err := K3sFiles(p, m)
	if err != nil {
		return types.Config{}, fmt.Errorf("render %s: %w", m.Name, err)
	}
	cfg.Storage.Files = append(cfg.Storage.Files, k3sFiles...)
	cfg.Systemd.Units = append(cfg.Systemd.Units, k3sUnits...)
	if role.HasRootfs() {
		cfg.Storage.Links = networkdLinks()
	}
	if err := Validate(cfg); err != nil {
		return types.Config{}, fmt.Errorf("render %s: %w", m.Name, err)
	}
	return cfg, nil
}

// Validate checks cfg with Ignition's v3.5 parser (config.Parse would pick
// the experimental spec, DESIGN.md §8).
func Validate(cfg types.Config) error {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	if _, rpt, err := v35.Parse(raw); err != nil {
		return fmt.Errorf("invalid ignition config: %w: %s", err, strings.TrimSpace(rpt.String()))
	}
	return nil
}

func identity(p *profiles.Profile, m *profiles.Machine) (Identity, error) {
	prefix, err := netip.ParsePrefix(p.Network.CIDR)
	if err != nil {
		return Identity{}, fmt.Errorf("network.cidr: %w", err)
	}
	gate := ""
	for _, g := range p.Machines {
		if g.Role == profiles.RoleGate {
			gate = g.Address
		}
	}
	id := Identity{
		Lab: p.Name, Name: m.Name, Role: m.Role, MAC: strings.ToLower(m.MAC),
		Address: fmt.Sprintf("%s/%d", m.Address, prefix.Bits()),
		Gateway: p.Network.Gateway, DNS: p.Network.DNS, NTP: p.Network.NTP,
		Gate: gate, GateURL: fmt.Sprintf("http://%s:%d", gate, GatePort),
		Links: Links(p, m),
	}
	if in := m.Interfaces; in != nil && in.Cluster != nil && p.Network.Cluster != nil {
		cluster, err := netip.ParsePrefix(p.Network.Cluster.CIDR)
		if err != nil {
			return Identity{}, fmt.Errorf("network.cluster.cidr: %w", err)
		}
		id.ClusterAddress = fmt.Sprintf("%s/%d", in.Cluster.Address, cluster.Bits())
	}
	return id, nil
}

// networkd configures the NIC that netboots, matched by its MAC so that
// interface names never matter.
func networkd(id Identity) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by kiln: %s of lab %s, the NIC it netboots from.\n", id.Name, id.Lab)
	fmt.Fprintf(&b, "[Match]\nMACAddress=%s\n\n[Network]\nAddress=%s\nGateway=%s\n", id.MAC, id.Address, id.Gateway)
	writeDNSNTP(&b, id)
	return b.String()
}

// writeDNSNTP writes the LAN's DNS= and NTP= lines of a [Network] section.
func writeDNSNTP(b *strings.Builder, id Identity) {
	for _, d := range id.DNS {
		fmt.Fprintf(b, "DNS=%s\n", d)
	}
	// The gate serves time to the lab (it follows network.ntp itself
	// when it can reach it), so every machine agrees with every other
	// even offline; the profile's servers are the fallback.
	fmt.Fprintf(b, "NTP=%s\n", id.Gate)
	for _, n := range id.NTP {
		fmt.Fprintf(b, "NTP=%s\n", n)
	}
}

// hosts names every machine of the lab, so services find each other by
// name without depending on the ISP box's DNS.
func hosts(p *profiles.Profile) string {
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\n")
	fmt.Fprintf(&b, "# lab %s\n", p.Name)
	for _, m := range p.Machines {
		fmt.Fprintf(&b, "%s\t%s\n", m.Address, m.Name)
	}
	return b.String()
}

// resolvConf: bookworm's systemd-networkd hands DNS= only to
// systemd-resolved, which the base set leaves out; a static file is enough.
func resolvConf(dns []string) string {
	var b strings.Builder
	for _, d := range dns {
		fmt.Fprintf(&b, "nameserver %s\n", d)
	}
	return b.String()
}

// networkdLinks enable systemd-networkd as `systemctl enable` would (its
// [Install] section in bookworm's systemd 252), plus wait-online so that
// first-boot tasks can order themselves after network-online.target.
func networkdLinks() []types.Link {
	const lib = "/lib/systemd/system/"
	const etc = "/etc/systemd/system/"
	return []types.Link{
		link(etc+"multi-user.target.wants/systemd-networkd.service", lib+"systemd-networkd.service"),
		link(etc+"sockets.target.wants/systemd-networkd.socket", lib+"systemd-networkd.socket"),
		link(etc+"dbus-org.freedesktop.network1.service", lib+"systemd-networkd.service"),
		link(etc+"network-online.target.wants/systemd-networkd-wait-online.service", lib+"systemd-networkd-wait-online.service"),
	}
}

func file(path, contents string) types.File {
	src := "data:," + dataurl.EscapeString(contents)
	mode := 0o644
	return types.File{
		Node:          types.Node{Path: path},
		FileEmbedded1: types.FileEmbedded1{Contents: types.Resource{Source: &src}, Mode: &mode},
	}
}

func link(path, target string) types.Link {
	return types.Link{Node: types.Node{Path: path}, LinkEmbedded1: types.LinkEmbedded1{Target: &target}}
}

package roles

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"github.com/coreos/ignition/v2/config/v3_5/types"

	"github.com/kilnlab/kiln/profiles"
)

// Paths of the secret configuration. Everything under SecretsDir is
// root-only (0700 directories, 0600 files) on the state partition; the
// certificates are public.
const (
	SecretsDir      = "/etc/kiln/secrets"
	MachineKeyPath  = SecretsDir + "/machine.key"
	CACertPath      = "/etc/kiln/tls/ca.pem"
	MachineCertPath = "/etc/kiln/tls/machine.pem"
	CephSecretsDir  = SecretsDir + "/ceph"
)

// Secrets are one machine's share of the lab's secrets, as RenderSecrets
// needs them: PEM for the TLS identity, base64 cephx keys for Ceph.
type Secrets struct {
	CACert      []byte // the lab CA's certificate
	MachineCert []byte // this machine's, signed by the lab CA
	MachineKey  []byte // its private key
	// Ceph is the cluster's secrets, for the storage role only.
	Ceph *CephSecrets
	// Consul is the Consul cluster's secrets, for its servers (the
	// storage role) only; Vault's token is among them.
	Consul *ConsulSecrets
	// K3sToken is the k3s cluster's token, for the machines that run
	// k3s (the compute role) only.
	K3sToken string
}

// CephSecrets are the Ceph cluster's keys (cephx, base64) and its fsid.
type CephSecrets struct {
	FSID         string
	Mon          string            // mon.
	Admin        string            // client.admin
	BootstrapOSD string            // client.bootstrap-osd
	Mgr          map[string]string // mgr.HOST, by host name
}

const redacted = "[secret]"

// Neither shows a key in fmt or slog output.
func (Secrets) String() string                 { return "roles.Secrets" + redacted }
func (Secrets) GoString() string               { return "roles.Secrets" + redacted }
func (Secrets) LogValue() slog.Value           { return slog.StringValue(redacted) }
func (Secrets) Format(f fmt.State, _ rune)     { io.WriteString(f, "roles.Secrets"+redacted) }
func (CephSecrets) String() string             { return "roles.CephSecrets" + redacted }
func (CephSecrets) GoString() string           { return "roles.CephSecrets" + redacted }
func (CephSecrets) LogValue() slog.Value       { return slog.StringValue(redacted) }
func (CephSecrets) Format(f fmt.State, _ rune) { io.WriteString(f, "roles.CephSecrets"+redacted) }

// RenderSecrets returns machine m's secret configuration as an Ignition
// v3.5 config, validated by Ignition's parser: its TLS identity (the
// machine's key, certificate and the lab CA) and, for a storage node, the
// Ceph keyrings it bootstraps with and, when the lab runs them, Consul's
// gossip key and tokens and Vault's Consul token, and for a k3s node the
// cluster token. It never goes into an image: the gate hands it to m's
// installer once per install, sealed (pxe/api), and the installer applies
// it to the state partition.
func RenderSecrets(p *profiles.Profile, m *profiles.Machine, s Secrets) (types.Config, error) {
	if len(s.CACert) == 0 || len(s.MachineCert) == 0 || len(s.MachineKey) == 0 {
		return types.Config{}, fmt.Errorf("render secrets %s: the TLS identity is incomplete", m.Name)
	}
	cfg := types.Config{Ignition: types.Ignition{Version: types.MaxVersion.String()}}
	cfg.Storage.Directories = []types.Directory{privateDir(SecretsDir)}
	cfg.Storage.Files = []types.File{
		file(CACertPath, string(s.CACert)),
		file(MachineCertPath, string(s.MachineCert)),
		privateFile(MachineKeyPath, string(s.MachineKey)),
	}
	if m.Role == profiles.RoleStorage {
		if s.Ceph == nil {
			return types.Config{}, fmt.Errorf("render secrets %s: a storage node needs the Ceph keys", m.Name)
		}
		files, err := cephKeyrings(m.Name, *s.Ceph)
		if err != nil {
			return types.Config{}, fmt.Errorf("render secrets %s: %w", m.Name, err)
		}
		cfg.Storage.Directories = append(cfg.Storage.Directories, privateDir(CephSecretsDir))
		cfg.Storage.Files = append(cfg.Storage.Files, files...)
	}
	if err := addConsulSecrets(&cfg, p, m, s.Consul); err != nil {
		return types.Config{}, fmt.Errorf("render secrets %s: %w", m.Name, err)
	}
	if err := addVaultSecrets(&cfg, p, m, s.Consul); err != nil {
		return types.Config{}, fmt.Errorf("render secrets %s: %w", m.Name, err)
	}
	if K3sIdentity(p, m) != nil {
		files, err := K3sSecretFiles(m, s.K3sToken)
		if err != nil {
			return types.Config{}, fmt.Errorf("render secrets %s: %w", m.Name, err)
		}
		cfg.Storage.Directories = append(cfg.Storage.Directories, privateDir(K3sSecretsDir))
		cfg.Storage.Files = append(cfg.Storage.Files, files...)
	}
	if err := Validate(cfg); err != nil {
		return types.Config{}, fmt.Errorf("render secrets %s: %w", m.Name, err)
	}
	return cfg, nil
}

// cephKeyrings are the keyrings a storage node bootstraps Ceph with, in
// ceph-authtool's format, with the capabilities Ceph's manual deployment
// gives each entity (docs.ceph.com, "Manual Deployment").
func cephKeyrings(host string, c CephSecrets) ([]types.File, error) {
	mgr, ok := c.Mgr[host]
	if !ok {
		return nil, fmt.Errorf("no mgr key for %s", host)
	}
	for name, k := range map[string]string{"mon.": c.Mon, "client.admin": c.Admin, "client.bootstrap-osd": c.BootstrapOSD, "mgr." + host: mgr} {
		if k == "" || strings.ContainsAny(k, " \t\n[]\"") {
			return nil, fmt.Errorf("ceph key of %s is empty or malformed", name)
		}
	}
	rings := []struct{ file, entity, key string }{
		{"mon.keyring", "mon.", c.Mon},
		{"client.admin.keyring", "client.admin", c.Admin},
		{"client.bootstrap-osd.keyring", "client.bootstrap-osd", c.BootstrapOSD},
		{"mgr.keyring", "mgr." + host, mgr},
	}
	files := []types.File{privateFile(CephSecretsDir+"/fsid", c.FSID+"\n")}
	for _, r := range rings {
		files = append(files, privateFile(CephSecretsDir+"/"+r.file, keyring(r.entity, r.key)))
	}
	return files, nil
}

// cephCaps are each entity's capabilities, sorted as ceph-authtool writes.
func cephCaps(entity string) [][2]string {
	switch {
	case entity == "mon.":
		return [][2]string{{"mon", "allow *"}}
	case entity == "client.admin":
		return [][2]string{{"mds", "allow *"}, {"mgr", "allow *"}, {"mon", "allow *"}, {"osd", "allow *"}}
	case entity == "client.bootstrap-osd":
		return [][2]string{{"mgr", "allow r"}, {"mon", "profile bootstrap-osd"}}
	case strings.HasPrefix(entity, "mgr."):
		return [][2]string{{"mds", "allow *"}, {"mon", "allow profile mgr"}, {"osd", "allow *"}}
	}
	return nil
}

func keyring(entity, key string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s]\n\tkey = %s\n", entity, key)
	caps := cephCaps(entity)
	slices.SortFunc(caps, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	for _, c := range caps {
		fmt.Fprintf(&b, "\tcaps %s = %q\n", c[0], c[1])
	}
	return b.String()
}

func privateFile(path, contents string) types.File {
	f := file(path, contents)
	mode := 0o600
	f.Mode = &mode
	return f
}

func privateDir(path string) types.Directory {
	mode := 0o700
	return types.Directory{Node: types.Node{Path: path}, DirectoryEmbedded1: types.DirectoryEmbedded1{Mode: &mode}}
}

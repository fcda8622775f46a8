package secrets

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/google/uuid"
)

// Consul's files in the lab's secrets directory: the cluster's secrets,
// and a directory of one agent token per Consul server (HOST.json).
const (
	ConsulFile     = "consul.json"
	ConsulAgentDir = "consul-agent"
)

// gossipKeyLen is what `consul keygen` makes: 32 bytes, AES-256.
const gossipKeyLen = 32

// consulReservedPrefix starts the IDs Consul keeps for itself (the
// anonymous token, the global-management policy); it refuses tokens
// created with them (agent/structs/acl.go, ACLReservedPrefix).
const consulReservedPrefix = "00000000-0000-0000-0000-0000000000"

// GossipKey is Consul's gossip encryption key (`encrypt`).
type GossipKey struct{ b [gossipKeyLen]byte }

// ConsulToken is an ACL token made with fixed IDs, so that first boot can
// create it through Consul's API and find it again: its accessor ID (not
// secret, it names the token) and its secret ID (the token itself).
type ConsulToken struct{ accessor, secret uuid.UUID }

// ConsulKeys are the Consul cluster's secrets: the gossip key; the initial
// management token, which every server's configuration carries (its
// secret ID alone: Consul gives that token an accessor ID of its own
// choosing, so its AccessorID is empty); the token Vault's Consul storage
// uses; and one agent token per Consul server, by host name.
type ConsulKeys struct {
	Gossip     GossipKey
	Management ConsulToken
	Vault      ConsulToken
	Agent      map[string]ConsulToken
}

// None of them shows a secret in output, whatever the verb.
func (GossipKey) String() string               { return "secrets.GossipKey" + redacted }
func (GossipKey) GoString() string             { return "secrets.GossipKey" + redacted }
func (GossipKey) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (GossipKey) Format(f fmt.State, _ rune)   { io.WriteString(f, "secrets.GossipKey"+redacted) }
func (ConsulToken) String() string             { return "secrets.ConsulToken" + redacted }
func (ConsulToken) GoString() string           { return "secrets.ConsulToken" + redacted }
func (ConsulToken) LogValue() slog.Value       { return slog.StringValue(redacted) }
func (ConsulToken) Format(f fmt.State, _ rune) { io.WriteString(f, "secrets.ConsulToken"+redacted) }
func (ConsulKeys) String() string              { return "secrets.ConsulKeys" + redacted }
func (ConsulKeys) GoString() string            { return "secrets.ConsulKeys" + redacted }
func (ConsulKeys) LogValue() slog.Value        { return slog.StringValue(redacted) }
func (ConsulKeys) Format(f fmt.State, _ rune)  { io.WriteString(f, "secrets.ConsulKeys"+redacted) }

// Base64 is the key as Consul's `encrypt` holds it. It is the secret
// itself: write it only into files that are secret too.
func (k GossipKey) Base64() string { return base64.StdEncoding.EncodeToString(k.b[:]) }

// AccessorID names the token; it is not secret. It is empty for the
// initial management token, whose accessor Consul chooses.
func (t ConsulToken) AccessorID() string {
	if t.accessor == uuid.Nil {
		return ""
	}
	return t.accessor.String()
}

// SecretID is the token itself: write it only into files that are secret.
func (t ConsulToken) SecretID() string { return t.secret.String() }

func newGossipKey() GossipKey {
	var k GossipKey
	rand.Read(k.b[:]) // never fails (crypto/rand since Go 1.24)
	return k
}

func newConsulToken() (ConsulToken, error) {
	a, err := uuid.NewRandom()
	if err != nil {
		return ConsulToken{}, fmt.Errorf("secrets: %w", err)
	}
	s, err := uuid.NewRandom()
	if err != nil {
		return ConsulToken{}, fmt.Errorf("secrets: %w", err)
	}
	return ConsulToken{accessor: a, secret: s}, nil
}

// consulFile is consul.json.
type consulFile struct {
	Gossip     string    `json:"gossip_key"`
	Management string    `json:"management_secret_id"`
	Vault      tokenFile `json:"vault_token"`
}

// tokenFile is a token as consul.json and consul-agent/HOST.json hold it.
type tokenFile struct {
	AccessorID string `json:"accessor_id"`
	SecretID   string `json:"secret_id"`
}

const consulRemedy = "restore the file from a backup: a new gossip key or new tokens do not fit the running Consul cluster; remove it only if no storage machine is installed yet"

// Consul loads the lab's Consul secrets from dir, generating what is
// missing: consul.json the first time, and consul-agent/HOST.json for each
// host of servers (the Consul servers' host names) that has none. Existing
// files are only read, so a second call returns the same secrets; the
// files of hosts no longer in servers are left alone and not returned.
func Consul(dir string, servers []string) (ConsulKeys, error) {
	if err := checkHosts(servers); err != nil {
		return ConsulKeys{}, err
	}
	if err := ensureDir(dir); err != nil {
		return ConsulKeys{}, err
	}
	keys, err := once(filepath.Join(dir, ConsulFile), encodeConsul, loadConsul)
	if err != nil {
		return ConsulKeys{}, err
	}
	keys.Agent, err = perHost(dir, ConsulAgentDir, ".json", servers, encodeAgentToken, loadAgentToken)
	if err != nil {
		return ConsulKeys{}, err
	}
	return keys, checkDistinct(dir, keys, servers)
}

func encodeConsul() ([]byte, error) {
	mgmt, err := uuid.NewRandom()
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	vault, err := newConsulToken()
	if err != nil {
		return nil, err
	}
	return encodeJSON(consulFile{
		Gossip: newGossipKey().Base64(), Management: mgmt.String(), Vault: vault.file(),
	})
}

func encodeAgentToken() ([]byte, error) {
	t, err := newConsulToken()
	if err != nil {
		return nil, err
	}
	return encodeJSON(t.file())
}

func (t ConsulToken) file() tokenFile {
	return tokenFile{AccessorID: t.AccessorID(), SecretID: t.SecretID()}
}

func loadConsul(path string) (ConsulKeys, error) {
	var f consulFile
	if err := readJSON(path, &f, consulRemedy); err != nil {
		return ConsulKeys{}, err
	}
	var k ConsulKeys
	var err error
	if k.Gossip, err = parseGossipKey(f.Gossip); err != nil {
		return ConsulKeys{}, damaged(path, fmt.Errorf("gossip_key %v", err), consulRemedy)
	}
	if k.Management.secret, err = parseConsulID(f.Management); err != nil {
		return ConsulKeys{}, damaged(path, fmt.Errorf("management_secret_id %v", err), consulRemedy)
	}
	if k.Vault, err = f.Vault.parse(); err != nil {
		return ConsulKeys{}, damaged(path, fmt.Errorf("vault_token's %v", err), consulRemedy)
	}
	if k.Management.secret == k.Vault.accessor || k.Management.secret == k.Vault.secret {
		return ConsulKeys{}, damaged(path, errors.New("the management token repeats an ID of vault_token"), consulRemedy)
	}
	return k, nil
}

// loadAgentToken reads consul-agent/HOST.json.
func loadAgentToken(path, host string) (ConsulToken, error) {
	remedy := fmt.Sprintf("restore the file from a backup, or remove it to make a new agent token for %s, then reinstall %s (its first boot creates the token in Consul)", host, host)
	var f tokenFile
	if err := readJSON(path, &f, remedy); err != nil {
		return ConsulToken{}, err
	}
	t, err := f.parse()
	if err != nil {
		return ConsulToken{}, damaged(path, err, remedy)
	}
	return t, nil
}

// parseGossipKey decodes a base64 gossip key of 32 bytes. Its errors never
// quote s.
func parseGossipKey(s string) (GossipKey, error) {
	if s == "" {
		return GossipKey{}, errors.New("is missing")
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return GossipKey{}, errors.New("is not standard base64")
	}
	if len(b) != gossipKeyLen {
		return GossipKey{}, fmt.Errorf("is %d bytes, want %d", len(b), gossipKeyLen)
	}
	var k GossipKey
	copy(k.b[:], b)
	return k, nil
}

func (f tokenFile) parse() (ConsulToken, error) {
	a, err := parseConsulID(f.AccessorID)
	if err != nil {
		return ConsulToken{}, fmt.Errorf("accessor_id %v", err)
	}
	s, err := parseConsulID(f.SecretID)
	if err != nil {
		return ConsulToken{}, fmt.Errorf("secret_id %v", err)
	}
	if a == s {
		return ConsulToken{}, errors.New("accessor_id and secret_id are the same")
	}
	return ConsulToken{accessor: a, secret: s}, nil
}

// parseConsulID accepts a UUID as Consul writes it (lowercase, hyphens)
// outside Consul's reserved IDs. It need not be version 4: tokens Consul
// made itself are random bytes without version bits. Its errors never
// quote s.
func parseConsulID(s string) (uuid.UUID, error) {
	if s == "" {
		return uuid.UUID{}, errors.New("is missing")
	}
	id, err := uuid.Parse(s)
	if err != nil || id.String() != s {
		return uuid.UUID{}, errors.New("is not a lowercase UUID")
	}
	if strings.HasPrefix(s, consulReservedPrefix) {
		return uuid.UUID{}, errors.New("is one Consul reserves for itself")
	}
	return id, nil
}

// checkDistinct refuses an agent token sharing an ID with another token:
// Consul would refuse to create the second, or, worse, one secret would
// carry two tokens' rights. Only a hand-edited or copied file does this.
func checkDistinct(dir string, k ConsulKeys, servers []string) error {
	seen := map[uuid.UUID]string{}
	for _, id := range []uuid.UUID{k.Management.secret, k.Vault.accessor, k.Vault.secret} {
		seen[id] = ConsulFile
	}
	for _, h := range servers {
		path := filepath.Join(dir, ConsulAgentDir, h+".json")
		for _, id := range []uuid.UUID{k.Agent[h].accessor, k.Agent[h].secret} {
			if other, ok := seen[id]; ok {
				return damaged(path, fmt.Errorf("an ID of its token repeats one in %s", other),
					fmt.Sprintf("restore it from a backup, or remove it to make a new agent token for %s, then reinstall %s", h, h))
			}
			seen[id] = filepath.Join(ConsulAgentDir, h+".json")
		}
	}
	return nil
}

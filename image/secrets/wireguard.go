package secrets

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// WireGuardFile is the name of the WireGuard keys in the lab's secrets
// directory and in the payload's secrets/.
const WireGuardFile = "wireguard.json"

// ErrCorrupt is wrapped when a secrets file exists but cannot be used. kiln
// never regenerates it: new keys would silently cut the tunnel to a VPS
// configured with the old ones.
var ErrCorrupt = errors.New("secrets file is damaged")

const redacted = "[secret]"

// Keys are the tunnel's keys: the gate's pair, the VPS's pair (kiln
// generates it too, for `kiln gate wireguard-peer`) and a preshared key.
type Keys struct {
	GatePrivate, GatePublic wgtypes.Key
	PeerPrivate, PeerPublic wgtypes.Key
	Preshared               wgtypes.Key
}

// GateKeys are what the gate needs, and all the gate image carries.
type GateKeys struct {
	GatePrivate wgtypes.Key
	PeerPublic  wgtypes.Key
	Preshared   wgtypes.Key
}

// The key sets never show in output: wgtypes.Key's String is its base64.
func (Keys) String() string           { return "secrets.Keys" + redacted }
func (Keys) GoString() string         { return "secrets.Keys" + redacted }
func (Keys) LogValue() slog.Value     { return slog.StringValue(redacted) }
func (GateKeys) String() string       { return "secrets.GateKeys" + redacted }
func (GateKeys) GoString() string     { return "secrets.GateKeys" + redacted }
func (GateKeys) LogValue() slog.Value { return slog.StringValue(redacted) }

// GateView returns the gate's share of k.
func (k Keys) GateView() GateKeys {
	return GateKeys{GatePrivate: k.GatePrivate, PeerPublic: k.PeerPublic, Preshared: k.Preshared}
}

// keysFile is wireguard.json in the lab's secrets directory.
type keysFile struct {
	GatePrivate string `json:"gate_private_key"`
	GatePublic  string `json:"gate_public_key"`
	PeerPrivate string `json:"peer_private_key"`
	PeerPublic  string `json:"peer_public_key"`
	Preshared   string `json:"preshared_key"`
}

// gateFile is wireguard.json in the payload's secrets/.
type gateFile struct {
	GatePrivate string `json:"gate_private_key"`
	PeerPublic  string `json:"peer_public_key"`
	Preshared   string `json:"preshared_key"`
}

// WireGuard loads the lab's WireGuard keys from dir, generating them the
// first time (dir is created 0700 if missing). A second call returns the
// same keys and leaves the file untouched.
func WireGuard(dir string) (Keys, error) {
	if err := ensureDir(dir); err != nil {
		return Keys{}, err
	}
	path := filepath.Join(dir, WireGuardFile)
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		k, err := generate()
		if err != nil {
			return Keys{}, err
		}
		data, err := encode(k)
		if err != nil {
			return Keys{}, err
		}
		if created, err := createOnce(path, data); err != nil || created {
			return k, err
		}
		// Another kiln created it meanwhile: theirs wins.
	}
	return loadKeys(path)
}

func generate() (Keys, error) {
	var k Keys
	var err error
	if k.GatePrivate, err = wgtypes.GeneratePrivateKey(); err != nil {
		return Keys{}, fmt.Errorf("secrets: %w", err)
	}
	if k.PeerPrivate, err = wgtypes.GeneratePrivateKey(); err != nil {
		return Keys{}, fmt.Errorf("secrets: %w", err)
	}
	if k.Preshared, err = wgtypes.GenerateKey(); err != nil {
		return Keys{}, fmt.Errorf("secrets: %w", err)
	}
	k.GatePublic, k.PeerPublic = k.GatePrivate.PublicKey(), k.PeerPrivate.PublicKey()
	return k, nil
}

func encode(k Keys) ([]byte, error) {
	b, err := json.MarshalIndent(keysFile{
		GatePrivate: k.GatePrivate.String(), GatePublic: k.GatePublic.String(),
		PeerPrivate: k.PeerPrivate.String(), PeerPublic: k.PeerPublic.String(),
		Preshared: k.Preshared.String(),
	}, "", "  ")
	return append(b, '\n'), err
}

func loadKeys(path string) (Keys, error) {
	b, err := readPrivate(path)
	if err != nil {
		return Keys{}, err
	}
	var f keysFile
	if err := strictJSON(b, &f); err != nil {
		return Keys{}, corrupt(path, err)
	}
	var k Keys
	p := keyParser{path: path}
	k.GatePrivate = p.parse("gate_private_key", f.GatePrivate)
	k.GatePublic = p.parse("gate_public_key", f.GatePublic)
	k.PeerPrivate = p.parse("peer_private_key", f.PeerPrivate)
	k.PeerPublic = p.parse("peer_public_key", f.PeerPublic)
	k.Preshared = p.parse("preshared_key", f.Preshared)
	if p.err != nil {
		return Keys{}, p.err
	}
	if k.GatePrivate.PublicKey() != k.GatePublic || k.PeerPrivate.PublicKey() != k.PeerPublic {
		return Keys{}, corrupt(path, errors.New("a public key does not belong to its private key"))
	}
	return k, nil
}

// WriteGateKeys writes the gate's share of the keys as dir/wireguard.json
// (dir 0700, file 0600), replacing any file there: kiln build stages the
// payload's secrets/ with it.
func WriteGateKeys(dir string, g GateKeys) error {
	if err := ensureDir(dir); err != nil {
		return err
	}
	b, err := json.MarshalIndent(gateFile{
		GatePrivate: g.GatePrivate.String(), PeerPublic: g.PeerPublic.String(), Preshared: g.Preshared.String(),
	}, "", "  ")
	if err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	return replace(filepath.Join(dir, WireGuardFile), append(b, '\n'))
}

// LoadGateKeys reads the gate's keys written by WriteGateKeys (on the gate:
// /payload/secrets/wireguard.json); like every secrets file it must not be
// open to group or others.
func LoadGateKeys(path string) (GateKeys, error) {
	b, err := readPrivate(path)
	if err != nil {
		return GateKeys{}, err
	}
	var f gateFile
	if err := strictJSON(b, &f); err != nil {
		return GateKeys{}, corrupt(path, err)
	}
	p := keyParser{path: path}
	g := GateKeys{
		GatePrivate: p.parse("gate_private_key", f.GatePrivate),
		PeerPublic:  p.parse("peer_public_key", f.PeerPublic),
		Preshared:   p.parse("preshared_key", f.Preshared),
	}
	return g, p.err
}

func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// keyParser parses a file's keys, keeping the first problem. Its errors
// name the field, never the value.
type keyParser struct {
	path string
	err  error
}

func (p *keyParser) parse(field, s string) wgtypes.Key {
	if p.err != nil {
		return wgtypes.Key{}
	}
	if s == "" {
		p.err = corrupt(p.path, fmt.Errorf("%s is missing", field))
		return wgtypes.Key{}
	}
	k, err := wgtypes.ParseKey(s)
	if err != nil {
		p.err = corrupt(p.path, fmt.Errorf("%s is not a base64 WireGuard key", field))
	}
	return k
}

func corrupt(path string, err error) error {
	return damaged(path, err, "restore the file from a backup, or remove it to make new keys and reconfigure the VPS")
}

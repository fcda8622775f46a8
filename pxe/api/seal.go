package api

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// PathSecrets is where an installer trades its one-time install token,
// once, for its machine's secrets: POST PathSecrets{mac}?token=, body
// SecretsRequest, answer SecretsResponse.
const PathSecrets = "/api/v1/secrets/"

// The secrets cross the LAN over plain HTTP (Debian's iPXE has no HTTPS,
// and the installer has nothing yet to trust a gate certificate with), so
// they are sealed to a key the installer made for this one request: X25519
// with a fresh gate key per answer, HKDF-SHA256 bound to the MAC, and
// AES-256-GCM. A LAN host that only listens learns nothing; one that races
// the real installer with a stolen token gets the secrets, but then the
// real machine's request is refused and its install stops loudly, and the
// gate shows both requests.

// SecretsRequest is POST PathSecrets{mac}'s body: the installer's X25519
// public key for this request.
type SecretsRequest struct {
	PublicKey []byte `json:"public_key"`
}

// SecretsResponse is its answer: the gate's one-time X25519 public key,
// the GCM nonce, and the sealed secrets (the machine's secret Ignition
// config).
type SecretsResponse struct {
	PublicKey []byte `json:"public_key"`
	Nonce     []byte `json:"nonce"`
	Sealed    []byte `json:"sealed"`
}

// ErrSealed is returned when sealed secrets cannot be opened.
var ErrSealed = errors.New("sealed secrets do not open")

// NewSecretsKey makes the installer's one-request key.
func NewSecretsKey() (*ecdh.PrivateKey, error) { return ecdh.X25519().GenerateKey(rand.Reader) }

// Seal seals secrets for the machine with MAC mac to the installer's
// public key.
func Seal(req SecretsRequest, mac string, secrets []byte) (SecretsResponse, error) {
	peer, err := ecdh.X25519().NewPublicKey(req.PublicKey)
	if err != nil {
		return SecretsResponse{}, fmt.Errorf("installer public key: %w", err)
	}
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return SecretsResponse{}, err
	}
	aead, err := secretsAEAD(eph, peer, mac)
	if err != nil {
		return SecretsResponse{}, err
	}
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	return SecretsResponse{
		PublicKey: eph.PublicKey().Bytes(),
		Nonce:     nonce,
		Sealed:    aead.Seal(nil, nonce, secrets, []byte(mac)),
	}, nil
}

// Open opens resp with the installer's key; mac must be the one the gate
// sealed for.
func Open(key *ecdh.PrivateKey, mac string, resp SecretsResponse) ([]byte, error) {
	peer, err := ecdh.X25519().NewPublicKey(resp.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: gate public key: %w", ErrSealed, err)
	}
	aead, err := secretsAEAD(key, peer, mac)
	if err != nil {
		return nil, err
	}
	if len(resp.Nonce) != aead.NonceSize() {
		return nil, fmt.Errorf("%w: nonce of %d bytes", ErrSealed, len(resp.Nonce))
	}
	b, err := aead.Open(nil, resp.Nonce, resp.Sealed, []byte(mac))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSealed, err)
	}
	return b, nil
}

func secretsAEAD(priv *ecdh.PrivateKey, peer *ecdh.PublicKey, mac string) (cipher.AEAD, error) {
	shared, err := priv.ECDH(peer)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSealed, err)
	}
	key, err := hkdf.Key(sha256.New, shared, nil, "kiln install secrets v1 "+mac, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

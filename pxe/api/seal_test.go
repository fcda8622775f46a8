package api_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/kilnlab/kiln/pxe/api"
)

func TestSealOpen(t *testing.T) {
	const mac = "52:54:00:00:01:01"
	secret := []byte(`{"ignition":{"version":"3.5.0"},"storage":{"files":[{"path":"/etc/kiln/secrets/machine.key"}]}}`)
	key, err := api.NewSecretsKey()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := api.Seal(api.SecretsRequest{PublicKey: key.PublicKey().Bytes()}, mac, secret)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(resp.Sealed, []byte("machine.key")) {
		t.Fatal("the sealed secrets hold the plain text")
	}
	got, err := api.Open(key, mac, resp)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v; want the secrets back", got, err)
	}

	other, _ := api.NewSecretsKey()
	tampered := resp
	tampered.Sealed = append([]byte(nil), resp.Sealed...)
	tampered.Sealed[0] ^= 1
	for name, open := range map[string]func() ([]byte, error){
		"another key": func() ([]byte, error) { return api.Open(other, mac, resp) },
		"another MAC": func() ([]byte, error) { return api.Open(key, "52:54:00:00:01:02", resp) },
		"tampered":    func() ([]byte, error) { return api.Open(key, mac, tampered) },
		"short nonce": func() ([]byte, error) {
			return api.Open(key, mac, api.SecretsResponse{PublicKey: resp.PublicKey, Nonce: resp.Nonce[:4], Sealed: resp.Sealed})
		},
		"bad gate key": func() ([]byte, error) {
			return api.Open(key, mac, api.SecretsResponse{PublicKey: []byte{1, 2}, Nonce: resp.Nonce, Sealed: resp.Sealed})
		},
	} {
		if b, err := open(); !errors.Is(err, api.ErrSealed) || b != nil {
			t.Errorf("%s: Open = %q, %v; want ErrSealed", name, b, err)
		}
	}
	if _, err := api.Seal(api.SecretsRequest{PublicKey: []byte("short")}, mac, secret); err == nil {
		t.Error("Seal accepted a malformed installer key")
	}
}

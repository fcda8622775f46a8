package httpd

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/pxe/api"
	"github.com/kilnlab/kiln/pxe/vault"
)

// fakeUnsealer records the Vaults the gate was asked to unseal.
type fakeUnsealer struct {
	mu    sync.Mutex
	addrs []string
	err   error
}

func (u *fakeUnsealer) Unseal(_ context.Context, addr string) (vault.SealStatus, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.addrs = append(u.addrs, addr)
	if u.err != nil {
		return vault.SealStatus{Sealed: true}, u.err
	}
	return vault.SealStatus{Initialized: true}, nil
}

func (u *fakeUnsealer) Selftest(_ context.Context, addr, name string) ([]string, error) {
	return []string{name}, nil
}

func (f *idFixture) askUnseal(t *testing.T, mac string, cert *tls.Certificate) (int, api.VaultUnseal) {
	t.Helper()
	cfg := &tls.Config{InsecureSkipVerify: true}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	resp, err := c.Post(f.tls.URL+api.PathVaultUnseal+mac, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got api.VaultUnseal
	if resp.StatusCode != http.StatusForbidden {
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
			t.Fatalf("answer: %v", err)
		}
	}
	return resp.StatusCode, got
}

// TestVaultUnseal: a storage node, with its own certificate, gets its
// Vault unsealed at the address the plan gives it; anyone else is refused
// and shown; in manual mode the gate only says the Vault waits.
func TestVaultUnseal(t *testing.T) {
	f := newIDFixture(t)
	u := &fakeUnsealer{}
	f.srv.cfg.Vault, f.srv.cfg.VaultUnseal = u, profiles.UnsealGate
	c1 := f.certs["ceph-1"].TLSCertificate()
	c2 := f.certs["ceph-2"].TLSCertificate()
	gate := f.certs["gate-1"].TLSCertificate()

	if code, got := f.askUnseal(t, macC1, &c1); code != 200 || got.Sealed || got.Selftest != "wrote kiln-selftest/ceph-1 through this Vault, read back ceph-1" {
		t.Fatalf("ceph-1 = %d %+v, want 200 unsealed, with the self-test", code, got)
	}
	if code, _ := f.askUnseal(t, macC1, &c2); code != 403 {
		t.Errorf("ceph-2 asking for ceph-1 = %d, want 403", code)
	}
	if code, _ := f.askUnseal(t, macC1, nil); code != 403 {
		t.Errorf("no certificate = %d, want 403", code)
	}
	if code, _ := f.askUnseal(t, macGate, &gate); code != 403 {
		t.Errorf("the gate (no Vault) = %d, want 403", code)
	}
	if r := f.srv.refused.newestFirst(); len(r) == 0 || !strings.Contains(r[0].Why, "runs no Vault") {
		t.Errorf("refusal not shown: %+v", r)
	}
	if diff := cmp.Diff([]string{"https://192.168.1.11:8200"}, u.addrs); diff != "" {
		t.Errorf("vaults unsealed (-want +got):\n%s", diff)
	}

	u.err = errors.New("vault is initialised, but the gate holds no unseal key for it")
	if code, got := f.askUnseal(t, macC2, &c2); code != 502 || !got.Sealed || !strings.Contains(got.Message, "no unseal key") {
		t.Errorf("failed unseal = %d %+v, want 502 sealed with the reason", code, got)
	}

	// After a failed first init: the node asked wipes, the others restart.
	for err, action := range map[error]string{
		fmt.Errorf("https://192.168.1.12:8200: %w", vault.ErrResetStorage): api.VaultResetStorage,
		fmt.Errorf("https://192.168.1.12:8200: %w", vault.ErrResetPending): api.VaultRestart,
	} {
		u.err = err
		if code, got := f.askUnseal(t, macC2, &c2); code != 200 || !got.Sealed || got.Action != action || got.Message != err.Error() {
			t.Errorf("%v = %d %+v, want 200 sealed with action %s", err, code, got, action)
		}
	}

	f.srv.cfg.VaultUnseal = profiles.UnsealManual
	u.addrs = nil
	if code, got := f.askUnseal(t, macC1, &c1); code != 200 || !got.Sealed || !strings.Contains(got.Message, "kiln vault unseal") {
		t.Errorf("manual = %d %+v, want 200 sealed, waiting for kiln vault unseal", code, got)
	}
	if len(u.addrs) != 0 {
		t.Errorf("manual mode unsealed %v", u.addrs)
	}
}

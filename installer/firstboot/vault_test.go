package firstboot

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/kilnlab/kiln/installer/gateclient"
	"github.com/kilnlab/kiln/pxe/api"
	"github.com/kilnlab/kiln/roles"
)

// TestVaultUnseal: the node's Vault starts sealed; the unseal task asks
// the gate, which unseals it and runs its self-test. A self-test that
// fails (a Vault just unsealed does not know its active node yet) is
// asked for again, a bounded number of times; the console says the last
// answer either way, and a Vault already unsealed is left alone.
func TestVaultUnseal(t *testing.T) {
	for _, tc := range []struct {
		name      string
		sealed    bool
		failFirst int  // self-test answers that fail before one passes
		loseFirst bool // the gate unseals, but its first answer never comes
		wantAsks  int
		wantLine  string
	}{
		{"passes at once", true, 0, false, 1, `selftest="wrote kiln-selftest/ceph-1`},
		{"passes on the third ask", true, 2, false, 3, `selftest="wrote kiln-selftest/ceph-1`},
		{"never passes", true, 99, false, vaultSelftestTries, `selftest="failed: local node not active`},
		{"unsealed already: the gate's self-test still", false, 0, false, 1, `selftest="wrote kiln-selftest/ceph-1`},
		{"the gate's answer lost", true, 0, true, 2, `selftest="wrote kiln-selftest/ceph-1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, _ := consulNode(t)
			var mu sync.Mutex
			sealed, asks := tc.sealed, 0
			vault := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				defer mu.Unlock()
				json.NewEncoder(w).Encode(vaultSeal{Initialized: true, Sealed: sealed, Version: "1.13.2"})
			}))
			cert, err := tls.LoadX509KeyPair(s.path(roles.MachineCertPath), s.path(roles.MachineKeyPath))
			if err != nil {
				t.Fatal(err)
			}
			vault.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
			vault.StartTLS()
			t.Cleanup(vault.Close)
			s.env.Machine.Vault.APIAddress = vault.URL
			gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, api.PathVaultUnseal) {
					http.NotFound(w, r)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				sealed, asks = false, asks+1
				if tc.loseFirst && asks == 1 {
					panic(http.ErrAbortHandler) // unsealed, the connection cut
				}
				ans := api.VaultUnseal{Selftest: "wrote kiln-selftest/ceph-1 through this Vault, read back ceph-1"}
				if asks <= tc.failFirst {
					ans = api.VaultUnseal{SelftestError: "local node not active but active cluster node not found"}
				}
				json.NewEncoder(w).Encode(ans)
			}))
			t.Cleanup(gate.Close)
			s.env.HTTP = &gateclient.Client{Base: gate.URL, MAC: "52:54:00:00:00:11"}
			if err := s.unsealVault(context.Background()); err != nil {
				t.Fatal(err)
			}
			if asks != tc.wantAsks {
				t.Errorf("asked the gate %d times, want %d", asks, tc.wantAsks)
			}
			if console := s.env.Console.(*bytes.Buffer).String(); !strings.Contains(console, tc.wantLine) {
				t.Errorf("console %q, want a line with %q", console, tc.wantLine)
			}
		})
	}
}

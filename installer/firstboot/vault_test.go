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
	"time"

	"github.com/google/go-cmp/cmp"

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
			localVault(t, s, func() vaultSeal {
				mu.Lock()
				defer mu.Unlock()
				return vaultSeal{Initialized: true, Sealed: sealed, Version: "1.13.2"}
			})
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
			// A failed self-test is asked again only after the pause.
			s.VaultSelftestPause = 20 * time.Millisecond
			start := time.Now()
			if err := s.unsealVault(context.Background()); err != nil {
				t.Fatal(err)
			}
			if pauses := min(tc.failFirst, tc.wantAsks-1); time.Since(start) < time.Duration(pauses)*s.VaultSelftestPause {
				t.Errorf("%d asks after failed self-tests in %s: no pause between them", pauses, time.Since(start))
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

// TestVaultTornInit: the node lost its power while the gate initialised
// its Vault, which now answers every seal status with a 500. The node
// asks the gate anyway, which has it reset; then it is unsealed.
func TestVaultTornInit(t *testing.T) {
	s, fc, ran := consulNode(t)
	var mu sync.Mutex
	torn, sealed, asks := true, true, 0
	localVaultHandler(t, s, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if torn {
			http.Error(w, `{"errors":["core: barrier reports initialized but no seal configuration found"]}`, http.StatusInternalServerError)
			return
		}
		json.NewEncoder(w).Encode(vaultSeal{Initialized: true, Sealed: sealed})
	})
	resettingGate(t, s, &mu, &sealed, &asks, "init cut short", api.VaultResetStorage)
	s.env.Storage.Command = func(ctx context.Context, name string, args ...string) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		*ran = append(*ran, strings.Join(append([]string{name}, args...), " "))
		torn = false // the wipe and the restart: a Vault not initialised
		return nil, nil
	}
	if err := s.unsealVault(context.Background()); err != nil {
		t.Fatal(err)
	}
	if asks != 2 {
		t.Errorf("asked the gate %d times, want 2", asks)
	}
	if diff := cmp.Diff([]string{roles.VaultConsulPath}, fc.wiped); diff != "" {
		t.Errorf("wiped (-want +got):\n%s", diff)
	}
	if console := s.env.Console.(*bytes.Buffer).String(); !strings.Contains(console, "reset: init cut short") {
		t.Errorf("console %q, want the reset", console)
	}
}

// TestVaultReset: after the lab's first Vault init failed, the gate has
// the node it asked wipe Vault's storage prefix (as the management token,
// through the local agent) and restart its Vault, and another node only
// restart its Vault; both ask again and end unsealed.
func TestVaultReset(t *testing.T) {
	for _, tc := range []struct {
		action   string
		wantWipe []string
		wantRan  []string
		wantLine string
	}{
		{api.VaultResetStorage, []string{roles.VaultConsulPath}, []string{"systemctl stop vault.service", "systemctl restart vault.service"}, "KILN-VAULT host=ceph-1 reset: init failed; wiped Vault's storage (Consul KV vault/)"},
		{api.VaultRestart, nil, []string{"systemctl restart vault.service"}, "KILN-VAULT host=ceph-1 restart: init failed"},
	} {
		t.Run(tc.action, func(t *testing.T) {
			s, fc, ran := consulNode(t)
			var mu sync.Mutex
			sealed, asks := true, 0
			localVault(t, s, func() vaultSeal {
				mu.Lock()
				defer mu.Unlock()
				return vaultSeal{Initialized: true, Sealed: sealed}
			})
			resettingGate(t, s, &mu, &sealed, &asks, "init failed", tc.action)
			if err := s.unsealVault(context.Background()); err != nil {
				t.Fatal(err)
			}
			if asks != 2 {
				t.Errorf("asked the gate %d times, want 2", asks)
			}
			if diff := cmp.Diff(tc.wantWipe, fc.wiped); diff != "" {
				t.Errorf("wiped (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantRan, *ran); diff != "" {
				t.Errorf("commands (-want +got):\n%s", diff)
			}
			console := s.env.Console.(*bytes.Buffer).String()
			if !strings.Contains(console, tc.wantLine) || !strings.Contains(console, "KILN-VAULT host=ceph-1 unsealed") {
				t.Errorf("console %q, want %q and the unseal", console, tc.wantLine)
			}
		})
	}
}

// localVault serves the node's Vault seal status, as status says, over
// TLS with the machine's certificate, and points the node at it.
func localVault(t *testing.T, s *node, status func() vaultSeal) {
	t.Helper()
	localVaultHandler(t, s, func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(status())
	})
}

// localVaultHandler is localVault with the seal status answered by h.
func localVaultHandler(t *testing.T, s *node, h http.HandlerFunc) {
	t.Helper()
	vault := httptest.NewUnstartedServer(h)
	cert, err := tls.LoadX509KeyPair(s.path(roles.MachineCertPath), s.path(roles.MachineKeyPath))
	if err != nil {
		t.Fatal(err)
	}
	vault.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	vault.StartTLS()
	t.Cleanup(vault.Close)
	s.env.Machine.Vault.APIAddress = vault.URL
}

// resettingGate is s's gate: its first answer to an unseal request is
// action (the node resets its Vault), its next ones unseal it (sealed
// false) with a self-test done. asks counts the requests, under mu.
func resettingGate(t *testing.T, s *node, mu *sync.Mutex, sealed *bool, asks *int, message, action string) {
	gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		*asks++
		ans := api.VaultUnseal{Sealed: true, Message: message, Action: action}
		if *asks > 1 {
			*sealed, ans = false, api.VaultUnseal{Selftest: "wrote kiln-selftest/ceph-1 through this Vault, read back ceph-1"}
		}
		json.NewEncoder(w).Encode(ans)
	}))
	t.Cleanup(gate.Close)
	s.env.HTTP = &gateclient.Client{Base: gate.URL, MAC: "52:54:00:00:00:11"}
}

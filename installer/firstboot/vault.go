package firstboot

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/pxe/api"
	"github.com/kilnlab/kiln/roles"
)

// The vault phase of a storage node: start Vault (on Consul's storage,
// through the local agent), then, at every boot, have it unsealed. A
// Vault starts sealed; the node cannot unseal it, because the unseal key
// never rests on its disk: it asks the gate, with its certificate, and the
// gate (which initialised the lab's Vault the first time a node asked, and
// keeps the key) unseals it. With unseal: manual the gate only notes that
// the Vault waits for `kiln vault unseal`, and the phase goes on: a sealed
// Vault is the operator's choice, shown as such by the health report.

// VaultUnsealTimeout bounds the unseal task: Vault must answer and Consul
// must have a leader before the gate's unseal can succeed.
const VaultUnsealTimeout = 15 * time.Minute

// vaultTasks are the vault phase's tasks; none when the machine runs no
// Vault.
func (s *node) vaultTasks() []Task {
	if s.env.Machine.Vault == nil {
		return nil
	}
	return []Task{
		{Name: "start", Run: s.systemctlStart(roles.VaultUnit)},
		// At every boot: a Vault always starts sealed.
		{Name: "unseal", Run: s.unsealVault, EveryBoot: true},
	}
}

// vaultSeal is the part of sys/seal-status the node reads.
type vaultSeal struct {
	Initialized bool   `json:"initialized"`
	Sealed      bool   `json:"sealed"`
	Version     string `json:"version"`
}

// vaultSealStatus asks the local Vault (no token needed).
// errVaultStatus: Vault answered its seal status with an error.
var errVaultStatus = errors.New("vault's seal status failed")

func (s *node) vaultSealStatus(ctx context.Context) (vaultSeal, error) {
	var st vaultSeal
	caPEM, err := s.readFile(roles.CACertPath)
	if err != nil {
		return st, fmt.Errorf("the lab CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return st, errors.New("the lab CA file holds no certificate")
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.env.Machine.Vault.APIAddress+"/v1/sys/seal-status", nil)
	if err != nil {
		return st, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return st, fmt.Errorf("%w: %s %s", errVaultStatus, resp.Status, bytes.TrimSpace(b))
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// unsealVault waits until the local Vault is unsealed and the gate has
// said so, with its self-test: it asks the gate until an answer comes.
// The gate's unseal of an unsealed Vault is a no-op plus the self-test,
// so asking again is safe, and needed: under load an answer can be lost
// (the request timed out while the gate initialised or unsealed), and a
// Vault found unsealed then has no self-test to report.
func (s *node) unsealVault(ctx context.Context) error {
	if s.env.HTTP == nil {
		return fmt.Errorf("cannot ask the gate to unseal Vault: %w", s.env.HTTPErr)
	}
	host := s.env.Machine.Name
	manual := s.env.Machine.Vault.Unseal == profiles.UnsealManual
	waiting, asked := false, 0
	var ans api.VaultUnseal
	var next time.Time // no ask before, after a failed self-test
	err := s.wait(ctx, or(s.VaultTimeout, VaultUnsealTimeout), func(ctx context.Context) (bool, error) {
		if time.Now().Before(next) {
			return false, nil
		}
		st, err := s.vaultSealStatus(ctx)
		if errors.Is(err, errVaultStatus) {
			// Vault answers but cannot say whether it is sealed: after a
			// sys/init cut short (this node lost its power while the gate
			// initialised it) it never will. The gate knows whether that
			// init was its own, and then has it reset.
			if a, aerr := s.env.HTTP.VaultUnseal(ctx); aerr == nil && a.Action != "" {
				return false, s.resetVault(ctx, a)
			}
			return false, err
		}
		if err != nil {
			return false, fmt.Errorf("vault does not answer: %w", err)
		}
		// Unsealed, and the gate answered with its self-test through:
		// done. A self-test that failed (a Vault just unsealed may not
		// know its cluster's active node yet) is asked again, a few
		// times, then reported.
		if !st.Sealed && asked > 0 && (ans.SelftestError == "" || asked >= vaultSelftestTries) {
			return true, nil
		}
		a, err := s.env.HTTP.VaultUnseal(ctx)
		if err != nil {
			return false, err
		}
		if a.Action != "" {
			return false, s.resetVault(ctx, a)
		}
		ans, asked = a, asked+1
		if ans.Sealed && manual {
			waiting = true
			return true, nil
		}
		if ans.SelftestError != "" {
			next = time.Now().Add(or(s.VaultSelftestPause, vaultSelftestPause))
		}
		return !ans.Sealed && (ans.SelftestError == "" || asked >= vaultSelftestTries), nil
	})
	switch {
	case err != nil:
		fmt.Fprintf(s.env.Console, "KILN-VAULT host=%s sealed: %v\n", host, err)
		return err
	case waiting:
		fmt.Fprintf(s.env.Console, "KILN-VAULT host=%s sealed: unseal is manual, waiting for `kiln vault unseal`\n", host)
	default:
		selftest := ans.Selftest
		if ans.SelftestError != "" {
			selftest = "failed: " + ans.SelftestError
		}
		fmt.Fprintf(s.env.Console, "KILN-VAULT host=%s unsealed selftest=%q\n", host, selftest)
		// For the health report, until the next boot.
		if selftest != "" {
			return s.writeFile(vaultSelftestFile, []byte(selftest), 0o644)
		}
	}
	return nil
}

// resetVault does what the gate asks after the lab's first Vault init
// failed once Vault had initialised its storage (pxe/vault.AttemptFile):
// the node whose Vault was asked wipes Vault's storage prefix in Consul
// (what the failed init wrote, which no one can ever unseal) and every
// node restarts its Vault, which caches that its storage is initialised.
// Each is safe to repeat; the gate asks for the wipe only while it holds
// no keys, so a Vault it initialised is never wiped.
func (s *node) resetVault(ctx context.Context, ans api.VaultUnseal) error {
	host := s.env.Machine.Name
	if ans.Action == api.VaultResetStorage {
		if _, err := s.run(ctx, "systemctl", "stop", roles.VaultUnit); err != nil {
			return fmt.Errorf("vault reset: %w", err)
		}
		c, err := s.consul(false)
		if err != nil {
			return fmt.Errorf("vault reset: %w", err)
		}
		if err := c.do(ctx, http.MethodDelete, "/v1/kv/"+roles.VaultConsulPath+"?recurse=true", nil, nil); err != nil && !errors.Is(err, errConsulNotFound) {
			return fmt.Errorf("vault reset: wiping Vault's storage: %w", err)
		}
		fmt.Fprintf(s.env.Console, "KILN-VAULT host=%s reset: %s; wiped Vault's storage (Consul KV %s), restarting Vault\n", host, ans.Message, roles.VaultConsulPath)
	} else {
		fmt.Fprintf(s.env.Console, "KILN-VAULT host=%s restart: %s\n", host, ans.Message)
	}
	if _, err := s.run(ctx, "systemctl", "restart", roles.VaultUnit); err != nil {
		return fmt.Errorf("vault reset: %w", err)
	}
	return nil
}

// vaultSelftestTries is how many times first boot asks the gate for its
// self-test before it reports the failure, vaultSelftestPause apart: a
// Vault just unsealed has no active node until Consul's lock is taken,
// and a Consul whose servers all start at once may lose its leader a
// few times in the first minutes (seen under TCG: "Raft leader not found
// in server lookup mapping" for over a minute), so the tries span about
// five minutes.
const (
	vaultSelftestTries = 8
	vaultSelftestPause = 30 * time.Second
)

// vaultSelftestFile keeps what the gate's self-test said at this boot's
// unseal (on /run: a boot starts afresh).
const vaultSelftestFile = "/run/kiln/vault-selftest"

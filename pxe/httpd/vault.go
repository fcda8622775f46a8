package httpd

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/pxe/api"
	"github.com/kilnlab/kiln/pxe/vault"
)

// Unsealer unseals the Vault at an address with the lab's keys, and
// proves it serves the lab's data (vault.Keeper.Selftest); *vault.Keeper
// is one, tests fake it.
type Unsealer interface {
	Unseal(ctx context.Context, addr string) (vault.SealStatus, error)
	Selftest(ctx context.Context, addr, name string) ([]string, error)
}

// vaultUnseal answers a storage node that found its Vault sealed (after a
// reboot, or before the lab's Vault was ever initialised). The gate acts
// on the Vault at the address the plan gives that machine, never at one
// the request names: the certificate says who asks, the plan says where
// its Vault is. With unseal: manual the gate only answers that the Vault
// waits for `kiln vault unseal`.
func (s *Server) vaultUnseal(w http.ResponseWriter, r *http.Request) {
	_, m, log, ok := s.identified(w, r)
	if !ok {
		return
	}
	if s.cfg.Vault == nil || m.Role != profiles.RoleStorage {
		s.forbid(w, r, log, "unseal asked by a machine that runs no Vault of this lab", nil)
		return
	}
	if s.cfg.VaultUnseal == profiles.UnsealManual {
		log.Info("api: vault sealed; unseal is manual", "hint", "kiln vault unseal")
		writeJSON(w, api.VaultUnseal{Sealed: true, Message: "unseal: manual; the Vault waits for `kiln vault unseal`"})
		return
	}
	addr, err := machineVault(m)
	if err != nil {
		badReport(w, log, err)
		return
	}
	st, err := s.cfg.Vault.Unseal(r.Context(), addr)
	if action := resetAction(err); action != "" {
		log.Warn("api: vault: the lab's first init failed; the node resets", "vault", addr, "action", action, "err", err)
		writeJSON(w, api.VaultUnseal{Sealed: true, Message: err.Error(), Action: action})
		return
	}
	if err != nil {
		log.Error("api: vault unseal", "vault", addr, "err", err)
		w.WriteHeader(http.StatusBadGateway)
		writeJSON(w, api.VaultUnseal{Sealed: true, Message: err.Error()})
		return
	}
	ans := api.VaultUnseal{Sealed: st.Sealed}
	// The gate holds the root token: it alone can prove the Vault just
	// unsealed serves the lab's data. A failed self-test leaves the
	// Vault unsealed and is said, not fatal.
	read, err := s.cfg.Vault.Selftest(r.Context(), addr, m.Name)
	if err != nil {
		ans.SelftestError = err.Error()
	} else {
		ans.Selftest = fmt.Sprintf("wrote %s/%s through this Vault, read back %s", vault.SelftestMount, m.Name, strings.Join(read, ","))
	}
	log.Info("api: vault unsealed", "vault", addr, "selftest", ans.Selftest, "selftest_error", ans.SelftestError)
	writeJSON(w, ans)
}

// resetAction is what the node does about a failed first init, or "".
func resetAction(err error) string {
	switch {
	case errors.Is(err, vault.ErrResetStorage):
		return api.VaultResetStorage
	case errors.Is(err, vault.ErrResetPending):
		return api.VaultRestart
	}
	return ""
}

// machineVault is the API address of m's Vault.
func machineVault(m *plan.Machine) (string, error) {
	pfx, err := netip.ParsePrefix(m.Address)
	if err != nil {
		return "", err
	}
	return vault.Addr(pfx.Addr().String()), nil
}

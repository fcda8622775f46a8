package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"text/tabwriter"

	"github.com/kilnlab/kiln/image/build"
	"github.com/kilnlab/kiln/image/secrets"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/pxe/vault"
)

func vaultCommands() map[string]command {
	return map[string]command{
		"status":     {"vault status [--state DIR] [--gate-secrets DIR] [--profile P]", "each storage node's Vault: initialised, sealed, version", runVaultStatus},
		"unseal":     {"vault unseal [--state DIR] [--gate-secrets DIR] [--profile P]", "unseal every sealed Vault of the lab with the keys the gate holds", runVaultUnseal},
		"root-token": {"vault root-token [--state DIR]", "print the root token of the lab's Vault (from the gate's state)", runVaultRootToken},
	}
}

func runVault(ctx context.Context, env *cli, args []string) error {
	cmds := vaultCommands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		printUsage(env.stdout, "kiln vault", cmds)
		return nil
	}
	c, ok := cmds[args[0]]
	if !ok {
		printUsage(env.stderr, "kiln vault", cmds)
		return usagef("unknown vault command %q", args[0])
	}
	return c.run(ctx, env, args[1:])
}

// vaultFlags locate the gate's Vault keys (its state) and the lab CA
// that the Vaults' certificates chain to (its secrets).
type vaultFlags struct {
	gateFlags
	gateSecrets string
}

const vaultHelp = "The gate initialised the lab's Vault once and keeps its unseal key and root\ntoken in its state directory (STATE/vault, 0700): run this where that is (on\nthe gate, or beside `kiln gate serve`)."

func (v *vaultFlags) parse(env *cli, usage, summary string, args []string) error {
	fs := newFlags(env, usage, summary+"\n\n"+vaultHelp)
	v.register(fs)
	fs.StringVar(&v.gateSecrets, "gate-secrets", filepath.Join("out", build.OutGateSecrets), "the gate's share of the lab's secrets, for the lab CA the Vaults' certificates chain to")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("%s takes no arguments", fs.Name())
	}
	return nil
}

func (v *vaultFlags) keeper(env *cli) (*vault.Keeper, error) {
	_, pool, err := secrets.GateStore{Dir: v.gateSecrets}.TLS()
	if err != nil {
		return nil, fmt.Errorf("--gate-secrets: %w", err)
	}
	return &vault.Keeper{Dir: filepath.Join(v.state, "vault"), HTTP: vault.NewClient(pool), Log: env.logger()}, nil
}

// vaultNodes are the lab's Vaults: name and API address.
func vaultNodes(pl *plan.Plan) ([][2]string, error) {
	if pl.Services == nil || pl.Services.Vault == nil {
		return nil, fmt.Errorf("lab %s runs no Vault (services.vault in the profile)", pl.Lab)
	}
	var out [][2]string
	for _, m := range pl.Machines {
		for _, n := range pl.Services.Vault.Nodes {
			if m.Name != n {
				continue
			}
			pfx, err := netip.ParsePrefix(m.Address)
			if err != nil {
				return nil, fmt.Errorf("machine %s: %w", m.Name, err)
			}
			out = append(out, [2]string{m.Name, vault.Addr(pfx.Addr().String())})
		}
	}
	return out, nil
}

func runVaultStatus(ctx context.Context, env *cli, args []string) error {
	var v vaultFlags
	if err := v.parse(env, "vault status [--state DIR] [--gate-secrets DIR] [--profile P]", "Ask each storage node's Vault whether it is initialised and sealed.", args); err != nil {
		return err
	}
	return v.each(ctx, env, func(k *vault.Keeper, addr string) (vault.SealStatus, error) { return k.Status(ctx, addr) })
}

func runVaultUnseal(ctx context.Context, env *cli, args []string) error {
	var v vaultFlags
	if err := v.parse(env, "vault unseal [--state DIR] [--gate-secrets DIR] [--profile P]", "Unseal every sealed Vault of the lab with the key the gate holds (what the\ngate does by itself after a reboot unless the profile says unseal: manual).", args); err != nil {
		return err
	}
	return v.each(ctx, env, func(k *vault.Keeper, addr string) (vault.SealStatus, error) {
		if !k.Initialised() {
			return vault.SealStatus{}, fmt.Errorf("%w: the gate initialises it when the first storage node asks", vault.ErrNotInitialised)
		}
		return k.Unseal(ctx, addr)
	})
}

// each runs op on every Vault of the lab and prints one line per node; it
// fails when any failed, after trying them all.
func (v *vaultFlags) each(ctx context.Context, env *cli, op func(*vault.Keeper, string) (vault.SealStatus, error)) error {
	pl, err := v.plan()
	if err != nil {
		return err
	}
	nodes, err := vaultNodes(pl)
	if err != nil {
		return err
	}
	k, err := v.keeper(env)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MACHINE\tVAULT\tINITIALISED\tSEALED\tVERSION")
	var errs []error
	for _, n := range nodes {
		st, err := op(k, n[1])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n[0], err))
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t(%v)\n", n[0], n[1], err)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%t\t%t\t%s\n", n[0], n[1], st.Initialized, st.Sealed, st.Version)
	}
	tw.Flush()
	return errors.Join(errs...)
}

func runVaultRootToken(ctx context.Context, env *cli, args []string) error {
	fs := newFlags(env, "vault root-token [--state DIR]", "Print the root token of the lab's Vault, and nothing else, for the operator\n(e.g. VAULT_TOKEN=$(kiln vault root-token)).\n\n"+vaultHelp)
	var g gateFlags
	g.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	k := &vault.Keeper{Dir: filepath.Join(g.state, "vault"), Log: slog.New(slog.DiscardHandler)}
	tok, err := k.RootToken()
	if err != nil {
		return err
	}
	fmt.Fprintln(env.stdout, tok)
	return nil
}

package install

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	v35 "github.com/coreos/ignition/v2/config/v3_5"
	"github.com/coreos/ignition/v2/config/v3_5/types"
	"golang.org/x/sys/unix"

	"github.com/kilnlab/kiln/installer/bootmode"
	"github.com/kilnlab/kiln/installer/disks"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/pxe/api"
	"github.com/kilnlab/kiln/roles"
)

// SecretsApplier writes a machine's secret config into the state file
// system of partition p (already written and verified).
type SecretsApplier func(ctx context.Context, p plan.Partition, cfg types.Config) error

// fetchSecrets trades the install's token, once, for the machine's secret
// config and checks it with Ignition's parser. A refusal here means
// someone else used the token: the install stops before writing anything.
func (in *Installer) fetchSecrets(ctx context.Context) (types.Config, error) {
	raw, err := in.Gate.Secrets(ctx)
	if err != nil {
		return types.Config{}, fmt.Errorf("secrets: %w", err)
	}
	cfg, rpt, err := v35.Parse(raw)
	if err != nil {
		return types.Config{}, fmt.Errorf("secrets: invalid ignition config: %w: %s", err, strings.TrimSpace(rpt.String()))
	}
	if _, err := stateTree(cfg); err != nil {
		return types.Config{}, fmt.Errorf("secrets: %w", err)
	}
	return cfg, nil
}

// applySecrets puts the secret config into the state partition of the
// target that has one.
func (in *Installer) applySecrets(ctx context.Context, w *work) error {
	for _, t := range w.targets {
		if t.Plan.Layout == nil {
			continue
		}
		for _, p := range t.Plan.Layout.Partitions {
			if p.Content != plan.ContentState {
				continue
			}
			in.progress(ctx, api.Progress{Phase: "secrets", Message: p.Name})
			fmt.Fprintf(in.Console, "kiln: writing the machine's secrets to %s\n", p.Name)
			return in.Secrets(ctx, p, w.secrets)
		}
	}
	return errors.New("secrets: no state partition in the plan")
}

// stateTree rebases a secret config onto the state file system, whose
// etc/upper is the machine's /etc: every path must be under /etc.
func stateTree(cfg types.Config) (types.Config, error) {
	rebase := func(p string) (string, error) {
		rest, ok := strings.CutPrefix(p, "/etc/")
		if !ok {
			return "", fmt.Errorf("%s: only /etc is carried by the state partition", p)
		}
		return "/etc/upper/" + rest, nil
	}
	out := cfg
	out.Storage.Directories = append([]types.Directory(nil), cfg.Storage.Directories...)
	out.Storage.Files = append([]types.File(nil), cfg.Storage.Files...)
	out.Storage.Links = append([]types.Link(nil), cfg.Storage.Links...)
	var err error
	for i := range out.Storage.Directories {
		if out.Storage.Directories[i].Path, err = rebase(out.Storage.Directories[i].Path); err != nil {
			return types.Config{}, err
		}
	}
	for i := range out.Storage.Files {
		if out.Storage.Files[i].Path, err = rebase(out.Storage.Files[i].Path); err != nil {
			return types.Config{}, err
		}
	}
	for i := range out.Storage.Links {
		if out.Storage.Links[i].Path, err = rebase(out.Storage.Links[i].Path); err != nil {
			return types.Config{}, err
		}
	}
	if len(cfg.Systemd.Units) > 0 {
		return types.Config{}, errors.New("units in a secret config: not carried")
	}
	return out, nil
}

// MountApply is the SecretsApplier of a real install: it finds the state
// partition by its PARTUUID, mounts its ext4 (the kernel's, as boot mode
// will), applies the config under etc/upper with its modes (secrets 0600
// in 0700 directories), syncs and unmounts.
func MountApply(sys disks.System, mnt string) SecretsApplier {
	return func(ctx context.Context, p plan.Partition, cfg types.Config) error {
		// The kernel re-read the table when it was written; udev-less,
		// the node shows up in devtmpfs a moment later.
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		node, err := bootmode.WaitFind(fctx, sys, p.GUID, 200*time.Millisecond)
		cancel()
		if err != nil {
			return fmt.Errorf("secrets: state partition: %w", err)
		}
		if err := os.MkdirAll(mnt, 0o700); err != nil {
			return err
		}
		if err := unix.Mount(node, mnt, "ext4", unix.MS_NOATIME, ""); err != nil {
			return fmt.Errorf("secrets: mount %s: %w", node, err)
		}
		tree, err := stateTree(cfg)
		if err == nil {
			err = roles.Apply(tree, mnt)
		}
		unix.Sync()
		if uerr := unix.Unmount(mnt, 0); err == nil && uerr != nil {
			err = fmt.Errorf("secrets: unmount %s: %w", node, uerr)
		}
		if err != nil {
			return fmt.Errorf("secrets: %w", err)
		}
		return nil
	}
}

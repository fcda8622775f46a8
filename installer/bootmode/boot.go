package bootmode

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/u-root/u-root/pkg/mount"

	"github.com/kilnlab/kiln/installer/cmdline"
	"github.com/kilnlab/kiln/installer/disks"
)

// Booter boots the installed system.
type Booter struct {
	Log     *slog.Logger
	Console io.Writer
	Disks   disks.System
	NewRoot string        // "/newroot"
	Wait    time.Duration // how long disks may take to appear
	Init    string        // "/sbin/init"
}

// Run finds root and state, prints KILN-BOOTMODE <root partuuid>, mounts
// and switches root. On success it does not return: init replaces this
// process.
func (b *Booter) Run(ctx context.Context, p cmdline.Params) error {
	if err := p.Need("kiln.root", "kiln.state"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, b.Wait)
	defer cancel()
	root, err := WaitFind(ctx, b.Disks, p.Root, 100*time.Millisecond)
	if err != nil {
		return fmt.Errorf("root: %w", err)
	}
	state, err := WaitFind(ctx, b.Disks, p.State, 100*time.Millisecond)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	fmt.Fprintf(b.Console, "KILN-BOOTMODE %s\n", p.Root)
	b.Log.Info("boot mode", "root", root, "state", state)
	if err := Apply(Mounts(root, state, b.NewRoot)); err != nil {
		return err
	}
	// SwitchRoot moves /dev /proc /sys (and /run), chroots, frees the
	// initramfs and execs init; it returns only on failure.
	if err := mount.SwitchRoot(b.NewRoot, b.Init); err != nil {
		return fmt.Errorf("switch_root: %w", err)
	}
	return nil
}

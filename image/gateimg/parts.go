package gateimg

import (
	"context"
	"fmt"
	"os"
	"strconv"

	"github.com/google/uuid"

	"github.com/kilnlab/kiln/image/hosttool"
)

const (
	// BootLabel and PermLabel are the file system labels of the contract.
	BootLabel = "KILN-BOOT"
	PermLabel = "KILN-PERM"
)

// Payload packs srcDir (gate.json, profile.yaml, bundle/, secrets/) into
// the squashfs at out. Modes are kept (secrets/ stays 0700, its files
// 0600), every file is root-owned, extended attributes of the build host
// are left out, and every time is epoch: the same tree gives the same
// bytes (mksquashfs sorts directories itself and its output does not
// depend on its thread count).
func Payload(ctx context.Context, srcDir, out string, epoch int64) error {
	if err := hosttool.Check("mksquashfs"); err != nil {
		return err
	}
	e := strconv.FormatInt(epoch, 10)
	err := replaceFile(out, func(f *os.File) error {
		// mksquashfs 4.5 refuses -all-time beside SOURCE_DATE_EPOCH (which
		// only clamps file times), and hosttool always sets it: unset it.
		return hosttool.Run(ctx, hosttool.Cmd{Name: "env", Epoch: epoch, Args: []string{
			"-u", "SOURCE_DATE_EPOCH", "mksquashfs", srcDir, f.Name(), "-noappend", "-quiet", "-no-progress",
			"-comp", "zstd", "-all-root", "-root-mode", "0755", "-no-xattrs", "-mkfs-time", e, "-all-time", e,
		}})
	})
	if err != nil {
		return fmt.Errorf("gate payload: %w", err)
	}
	return nil
}

// Perm writes the empty ext4 file system of /perm (PermSize bytes, label
// PermLabel) to out. An empty mke2fs is reproducible by itself once its
// clock (E2FSPROGS_FAKE_TIME), UUID and hash seed are fixed: unlike
// image/stateimg there is no tree whose inode times need rewriting.
func Perm(ctx context.Context, out, fsUUID string, epoch int64) error {
	u, err := uuid.Parse(fsUUID)
	if err != nil {
		return fmt.Errorf("gate perm: UUID: %w", err)
	}
	seed := uuid.NewSHA1(u, []byte("kiln-perm hash_seed"))
	err = replaceFile(out, func(f *os.File) error {
		if err := f.Truncate(PermSize); err != nil {
			return err
		}
		return hosttool.Run(ctx, hosttool.Cmd{
			Name: "mke2fs", Epoch: epoch, Env: []string{"E2FSPROGS_FAKE_TIME=" + strconv.FormatInt(epoch, 10)},
			Args: []string{"-q", "-F", "-t", "ext4", "-T", "default", "-b", "4096", "-I", "256", "-U", u.String(),
				"-E", "root_owner=0:0,hash_seed=" + seed.String(), "-L", PermLabel, f.Name()},
		})
	})
	if err != nil {
		return fmt.Errorf("gate perm: %w", err)
	}
	return nil
}

// permUUID derives the /perm file system UUID from the card's signature.
func permUUID(signature uint32) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte(fmt.Sprintf("kiln:sd:%08x:perm", signature))).String()
}

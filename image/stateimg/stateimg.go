// Package stateimg builds a machine's state image: a small ext4 file
// system (mke2fs -d, Debian e2fsprogs) laid out as the contract's state
// partition — etc/upper holding the machine's /etc files over the role
// image, and empty etc/work, var/upper, var/work for the overlays. The
// installer writes it into the state partition; the first boot grows it to
// fill the partition (resize2fs).
//
// Reproducibility: the same Options give the same bytes. mke2fs honours
// E2FSPROGS_FAKE_TIME for its own times, UUID and hash seed come from
// Options, and file times are set to the epoch in the staged tree; the one
// thing mke2fs -d copies that no caller can set, the inode change time,
// and file ownership (the build may run as any user) are then rewritten
// with debugfs set_inode_field: every file is root-owned.
package stateimg

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/kilnlab/kiln/image/disklayout"
	"github.com/kilnlab/kiln/image/hosttool"
)

const (
	// DefaultSize is the state image size of the contract.
	DefaultSize = 64 << 20
	// Label is the ext4 volume label.
	Label = "kiln-state"
	// DefaultEpoch (2024-01-01 UTC) stamps everything when Options.Epoch is 0.
	DefaultEpoch = 1704067200
)

// Directories of the state file system, fixed by the contract.
const (
	EtcUpper = "etc/upper"
	EtcWork  = "etc/work"
	VarUpper = "var/upper"
	VarWork  = "var/work"
)

// Tools lists the host tools Build runs.
func Tools() []string { return []string{"mke2fs", "debugfs"} }

// Options describe one state image.
type Options struct {
	Out string // image file to write (replaced atomically)
	// Size in bytes; 0 means DefaultSize.
	Size int64
	// Tree holds the machine's /etc files (hostname,
	// systemd/network/10-kiln.network, kiln/machine.json, ...); it becomes
	// etc/upper. Modes are kept, owners become root. Empty means none.
	Tree string
	// UUID is the file system UUID; the directory hash seed derives from it.
	UUID string
	// Epoch (seconds since 1970) stamps every time; 0 means DefaultEpoch.
	Epoch int64
}

// Build writes the state image described by o.
func Build(ctx context.Context, o Options) error {
	if o.Size == 0 {
		o.Size = DefaultSize
	}
	if o.Epoch == 0 {
		o.Epoch = DefaultEpoch
	}
	fsUUID, err := uuid.Parse(o.UUID)
	if err != nil || o.Out == "" || o.Size < 8<<20 || o.Size%4096 != 0 {
		return fmt.Errorf("state image: need Out, a UUID and a size of at least 8 MiB in 4 KiB blocks (uuid %q: %v)", o.UUID, err)
	}
	if err := hosttool.Check(Tools()...); err != nil {
		return err
	}
	stage, err := os.MkdirTemp(filepath.Dir(o.Out), ".state-")
	if err != nil {
		return fmt.Errorf("state image: %w", err)
	}
	defer os.RemoveAll(stage)
	if err := build(ctx, o, fsUUID, stage); err != nil {
		return fmt.Errorf("state image %s: %w", o.Out, err)
	}
	return os.Rename(filepath.Join(stage, "state.img"), o.Out)
}

func build(ctx context.Context, o Options, fsUUID uuid.UUID, stage string) error {
	root := filepath.Join(stage, "root")
	paths, err := layOut(root, o.Tree)
	if err != nil {
		return err
	}
	if err := stamp(root, paths, time.Unix(o.Epoch, 0)); err != nil {
		return err
	}
	img := filepath.Join(stage, "state.img")
	f, err := disklayout.CreateSparse(img, o.Size)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fake := []string{"E2FSPROGS_FAKE_TIME=" + strconv.FormatInt(o.Epoch, 10)}
	seed := uuid.NewSHA1(fsUUID, []byte("kiln-state hash_seed"))
	// 4 KiB blocks and 256-byte inodes, not mke2fs's "small" defaults (1 KiB,
	// 128 bytes): the file system is grown to the whole partition later.
	err = hosttool.Run(ctx, hosttool.Cmd{Name: "mke2fs", Epoch: o.Epoch, Env: fake, Args: []string{
		"-q", "-F", "-t", "ext4", "-T", "default", "-b", "4096", "-I", "256", "-d", root, "-U", fsUUID.String(),
		"-E", "root_owner=0:0,hash_seed=" + seed.String(), "-L", Label, img,
	}})
	if err != nil {
		return err
	}
	cmds := filepath.Join(stage, "debugfs.cmds")
	if err := os.WriteFile(cmds, []byte(fixInodes(paths, o.Epoch)), 0o600); err != nil {
		return err
	}
	return hosttool.Run(ctx, hosttool.Cmd{Name: "debugfs", Epoch: o.Epoch, Env: fake, Args: []string{"-w", "-f", cmds, img}})
}

// layOut makes the contract's directories under root and copies tree into
// etc/upper. It returns every path created, relative to root, parents
// first.
func layOut(root, tree string) ([]string, error) {
	paths := []string{"etc", EtcUpper, EtcWork, "var", VarUpper, VarWork}
	for _, p := range paths {
		if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
			return nil, err
		}
	}
	if tree == "" {
		return paths, nil
	}
	err := filepath.WalkDir(tree, func(src string, d fs.DirEntry, err error) error {
		if err != nil || src == tree {
			return err
		}
		rel, err := filepath.Rel(tree, src)
		if err != nil {
			return err
		}
		if strings.ContainsAny(rel, "\"\\\n") {
			return fmt.Errorf("%q: %w: name with a quote, backslash or line break", rel, ErrUnsupportedFile)
		}
		dest := filepath.Join(root, EtcUpper, rel)
		paths = append(paths, filepath.ToSlash(filepath.Join(EtcUpper, rel)))
		return copyEntry(src, dest, d)
	})
	if err != nil {
		return nil, fmt.Errorf("copy %s: %w", tree, err)
	}
	return paths, nil
}

// ErrUnsupportedFile is wrapped when the tree holds something other than
// directories, regular files and symbolic links.
var ErrUnsupportedFile = errors.New("unsupported file type")

func copyEntry(src, dest string, d fs.DirEntry) error {
	info, err := d.Info()
	if err != nil {
		return err
	}
	switch {
	case d.IsDir():
		if err := os.Mkdir(dest, 0o700); err != nil {
			return err
		}
		return os.Chmod(dest, info.Mode().Perm())
	case d.Type()&fs.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(target, dest)
	case d.Type().IsRegular():
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		if err := os.WriteFile(dest, b, 0o600); err != nil {
			return err
		}
		return os.Chmod(dest, info.Mode().Perm())
	}
	return fmt.Errorf("%s: %w %s", src, ErrUnsupportedFile, d.Type())
}

// stamp sets access and modification times of root and everything in
// paths (symbolic links themselves have no settable time here; debugfs
// fixes them).
func stamp(root string, paths []string, t time.Time) error {
	for _, p := range append([]string{"."}, paths...) {
		full := filepath.Join(root, p)
		if fi, err := os.Lstat(full); err != nil || fi.Mode()&fs.ModeSymlink != 0 {
			if err != nil {
				return err
			}
			continue
		}
		if err := os.Chtimes(full, t, t); err != nil {
			return err
		}
	}
	return nil
}

// fixInodes is a debugfs script that makes every inode root-owned and
// stamps all of its times with epoch.
func fixInodes(paths []string, epoch int64) string {
	var b strings.Builder
	at := "@" + strconv.FormatInt(epoch, 10)
	for _, p := range append([]string{"", "lost+found"}, paths...) {
		p = "/" + p
		for _, field := range []string{"uid 0", "gid 0", "atime " + at, "mtime " + at, "ctime " + at, "crtime " + at} {
			fmt.Fprintf(&b, "set_inode_field \"%s\" %s\n", p, field) // layOut refused names needing escapes
		}
	}
	return b.String()
}

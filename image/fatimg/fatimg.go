// Package fatimg builds FAT32 partition files: the EFI system partitions of
// the servers (image/esp) and the Raspberry Pi boot partition of the gate
// (image/gateimg). It owns the one recipe both need: a standalone file the
// size of the partition, formatted by Debian's mkfs.vfat and filled by
// mtools, so it needs neither root nor a loop device.
//
// Why not go-diskfs's FAT writer: some sizes get a FAT one entry too small
// and first-level directories get a wrong ".." (DESIGN §8); fsck.vfat and
// mtools reject such images, and a firmware may too.
//
// Reproducibility: the same Options give the same bytes. mkfs.vfat 4.2 does
// not honour SOURCE_DATE_EPOCH, so it runs with --invariant (fixed times and
// volume ID) and Build then writes the chosen volume ID into the boot sector
// itself; mtools honours SOURCE_DATE_EPOCH for every file and directory it
// creates. Directories are made first, then files in the given order: the
// order decides the cluster layout.
package fatimg

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kilnlab/kiln/image/disklayout"
	"github.com/kilnlab/kiln/image/hosttool"
)

const (
	// DefaultEpoch (2024-01-01 UTC) stamps files when Options.Epoch is 0.
	DefaultEpoch = 1704067200
	// MinSize: below about 33 MiB FAT32 has too few clusters to be valid.
	MinSize = 34 << 20
)

// ErrInvalid is wrapped by every error about Options, before anything runs.
var ErrInvalid = errors.New("invalid FAT image options")

// Tools lists the host tools Build runs.
func Tools() []string { return []string{"mkfs.vfat", "mmd", "mcopy"} }

// File is one file to put on the file system.
type File struct {
	// Dest is its absolute path on the file system ("/overlays/x.dtbo");
	// missing parent directories are made.
	Dest string
	// Src is the host file to copy; when empty, Data is the content.
	Src  string
	Data []byte
}

// Options describe one FAT32 partition file.
type Options struct {
	Out string // image file to write (replaced atomically)
	// Size in bytes: a whole number of MiB, at least MinSize.
	Size int64
	// Label is the volume label, 1 to 11 characters.
	Label string
	// VolumeID is the FAT serial; 0 derives it from Label and the Dests.
	VolumeID uint32
	// Epoch (seconds since 1970) stamps every file; 0 means DefaultEpoch.
	Epoch int64
	Files []File
	// AfterFormat, if set, runs on the empty file system before any
	// directory or file is made (image/esp: syslinux --install, whose
	// ldlinux.sys must come first). Build copies the boot sector over its
	// backup afterwards, so it may rewrite the boot sector.
	AfterFormat func(ctx context.Context, img string) error
}

// Build writes the FAT32 image described by o.
func Build(ctx context.Context, o Options) error {
	o, err := o.withDefaults()
	if err != nil {
		return err
	}
	if err := hosttool.Check(Tools()...); err != nil {
		return err
	}
	stage, err := os.MkdirTemp(filepath.Dir(o.Out), ".fat-")
	if err != nil {
		return fmt.Errorf("fat image: %w", err)
	}
	defer os.RemoveAll(stage)
	img := filepath.Join(stage, "fat.img")
	if err := build(ctx, o, stage, img); err != nil {
		return fmt.Errorf("fat image %s: %w", o.Out, err)
	}
	if err := os.Rename(img, o.Out); err != nil {
		return fmt.Errorf("fat image: %w", err)
	}
	return nil
}

func (o Options) withDefaults() (Options, error) {
	if o.Epoch == 0 {
		o.Epoch = DefaultEpoch
	}
	if o.VolumeID == 0 {
		o.VolumeID = deriveVolumeID(o.Label, o.Files)
	}
	switch {
	case o.Out == "":
		return o, fmt.Errorf("%w: Out is required", ErrInvalid)
	case o.Size < MinSize || o.Size%(1<<20) != 0:
		return o, fmt.Errorf("%w: size %d is not a whole number of MiB of at least %d", ErrInvalid, o.Size, MinSize)
	case o.Label == "" || len(o.Label) > 11 || strings.ContainsAny(o.Label, "\"*+,./:;<=>?[\\]|"):
		return o, fmt.Errorf("%w: label %q is not a FAT label", ErrInvalid, o.Label)
	}
	seen := map[string]bool{}
	for _, f := range o.Files {
		key := strings.ToUpper(f.Dest) // FAT names are case-insensitive
		if !path.IsAbs(f.Dest) || path.Clean(f.Dest) != f.Dest || f.Dest == "/" || seen[key] {
			return o, fmt.Errorf("%w: destination %q is not a clean absolute path named once", ErrInvalid, f.Dest)
		}
		seen[key] = true
	}
	return o, nil
}

func deriveVolumeID(label string, files []File) uint32 {
	h := sha256.New()
	h.Write([]byte("kiln-fat\x00" + label))
	for _, f := range files {
		h.Write([]byte("\x00" + f.Dest))
	}
	return binary.LittleEndian.Uint32(h.Sum(nil)[:4])
}

// build makes the image at img, using stage for files given as Data.
func build(ctx context.Context, o Options, stage, img string) error {
	f, err := disklayout.CreateSparse(img, o.Size)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	run := func(name string, args ...string) error {
		return hosttool.Run(ctx, hosttool.Cmd{Name: name, Args: args, Epoch: o.Epoch})
	}
	if err := run("mkfs.vfat", "-F", "32", "-n", o.Label, "--invariant", img); err != nil {
		return err
	}
	if o.AfterFormat != nil {
		if err := o.AfterFormat(ctx, img); err != nil {
			return err
		}
	}
	if dirs := Dirs(o.Files); len(dirs) > 0 {
		args := []string{"-i", img}
		for _, d := range dirs {
			args = append(args, "::"+d)
		}
		if err := run("mmd", args...); err != nil {
			return err
		}
	}
	for i, c := range o.Files {
		src, err := source(c, stage, i)
		if err != nil {
			return err
		}
		if err := run("mcopy", "-i", img, src, "::"+c.Dest); err != nil {
			return err
		}
	}
	return finishBootSector(img, o.VolumeID)
}

// Dirs lists the directories files need, parents first, in the order of
// first mention.
func Dirs(files []File) []string {
	var dirs []string
	seen := map[string]bool{"/": true}
	for _, f := range files {
		var chain []string
		for d := path.Dir(f.Dest); !seen[d]; d = path.Dir(d) {
			seen[d] = true
			chain = append([]string{d}, chain...)
		}
		dirs = append(dirs, chain...)
	}
	return dirs
}

// source returns the host path mcopy reads for f, writing Data to stage.
func source(f File, stage string, i int) (string, error) {
	if f.Src != "" {
		return f.Src, nil
	}
	p := filepath.Join(stage, "data-"+strconv.Itoa(i))
	if err := os.WriteFile(p, f.Data, 0o644); err != nil {
		return "", err
	}
	return p, nil
}

// FAT32 boot sector fields (Microsoft FAT specification).
const (
	offBytesPerSector = 11
	offBackupBoot     = 50
	offVolumeID       = 67
)

// finishBootSector writes the volume ID (mkfs.vfat --invariant fixed it)
// and copies the boot sector over its backup, which a boot loader
// installer (syslinux --install) may have left stale (fsck.vfat reports
// the difference).
func finishBootSector(img string, volumeID uint32) error {
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	bs := make([]byte, 512)
	if _, err := f.ReadAt(bs, 0); err != nil {
		return fmt.Errorf("read boot sector: %w", err)
	}
	sector := int64(binary.LittleEndian.Uint16(bs[offBytesPerSector:]))
	backup := int64(binary.LittleEndian.Uint16(bs[offBackupBoot:]))
	if sector != 512 || backup == 0 || bs[510] != 0x55 || bs[511] != 0xaa {
		return fmt.Errorf("unexpected FAT32 boot sector (sector size %d, backup at %d)", sector, backup)
	}
	binary.LittleEndian.PutUint32(bs[offVolumeID:], volumeID)
	for _, off := range []int64{0, backup * sector} {
		if _, err := f.WriteAt(bs, off); err != nil {
			return fmt.Errorf("write boot sector: %w", err)
		}
	}
	return f.Close()
}

// VolumeIDString formats a FAT serial the way blkid and mdir show it.
func VolumeIDString(id uint32) string {
	s := strings.ToUpper(strconv.FormatUint(uint64(id)|1<<32, 16))[1:]
	return s[:4] + "-" + s[4:]
}

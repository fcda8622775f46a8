// Package gateimg builds the gate's SD-card image (gate-1.img): an MBR
// disk holding the Raspberry Pi 4 boot partition (FAT32, made by
// image/fatimg), the empty /perm ext4 at a fixed offset, and the read-only
// payload squashfs (the netboot bundle, the profile, the gate's secrets).
// It owns the card's layout, config.txt and cmdline.txt, and the
// compressed, checksummed form users download and flash.
//
// Everything is assembled in user space: each partition is built as its own
// file by Debian's tools, the MBR is written with go-diskfs, and the files
// are copied into a sparse image at their offsets. No root, no loop device.
// The same inputs give the same bytes.
package gateimg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/kilnlab/kiln/image/disklayout"
	"github.com/kilnlab/kiln/image/fatimg"
	"github.com/kilnlab/kiln/image/hosttool"
)

// DefaultEpoch (2024-01-01 UTC) stamps everything when Options.Epoch is 0.
const DefaultEpoch = fatimg.DefaultEpoch

// ErrInvalid is wrapped by errors about Options, found before anything is
// written.
var ErrInvalid = errors.New("invalid gate image options")

// Tools lists the host tools Build runs.
func Tools() []string { return append(fatimg.Tools(), "mke2fs") }

// Options describe one gate image.
type Options struct {
	Out string // image file to write (replaced atomically)
	// Signature is the MBR disk signature (Signature(lab, machine)).
	Signature uint32
	// CardSize in bytes; Build refuses an image larger than it. 0: unchecked.
	CardSize int64
	// Boot lists the boot partition's files, at least RequiredBootFiles;
	// Build adds config.txt and cmdline.txt.
	Boot []fatimg.File
	// Payload is the squashfs made by Payload.
	Payload string
	// PermUUID is /perm's file system UUID; "" derives it from Signature.
	PermUUID string
	// Epoch (seconds since 1970) stamps every file; 0 means DefaultEpoch.
	Epoch int64
}

// Build writes the gate image. It checks that the image fits the card
// before it writes anything.
func Build(ctx context.Context, o Options) error {
	l, err := o.check()
	if err != nil {
		return err
	}
	if err := hosttool.Check(Tools()...); err != nil {
		return err
	}
	stage, err := os.MkdirTemp(filepath.Dir(o.Out), ".gateimg-")
	if err != nil {
		return fmt.Errorf("gate image: %w", err)
	}
	defer os.RemoveAll(stage)
	img := filepath.Join(stage, "gate.img")
	if err := o.build(ctx, l, stage, img); err != nil {
		return fmt.Errorf("gate image %s: %w", o.Out, err)
	}
	if err := os.Rename(img, o.Out); err != nil {
		return fmt.Errorf("gate image: %w", err)
	}
	return nil
}

// check validates o, fills in defaults and lays out the image.
func (o *Options) check() (Layout, error) {
	if o.Epoch == 0 {
		o.Epoch = DefaultEpoch
	}
	if o.PermUUID == "" {
		o.PermUUID = permUUID(o.Signature)
	}
	if o.Out == "" || o.Signature == 0 || o.Payload == "" {
		return Layout{}, fmt.Errorf("%w: Out, Signature and Payload are required", ErrInvalid)
	}
	for _, want := range RequiredBootFiles() {
		if !slices.ContainsFunc(o.Boot, func(f fatimg.File) bool { return f.Dest == want }) {
			return Layout{}, fmt.Errorf("%w: the boot files lack %s", ErrInvalid, want)
		}
	}
	size, err := squashfsSize(o.Payload)
	if err != nil {
		return Layout{}, err
	}
	l, err := NewLayout(size)
	if err != nil {
		return Layout{}, err
	}
	return l, l.Fits(o.CardSize)
}

// squashfsSize is the size of the payload file, which must be a squashfs.
func squashfsSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("gate payload: %w", err)
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err != nil || string(magic) != "hsqs" {
		return 0, fmt.Errorf("%w: payload %s is not a squashfs", ErrInvalid, path)
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("gate payload: %w", err)
	}
	return fi.Size(), nil
}

// build makes the partition files in stage and assembles them at img.
func (o Options) build(ctx context.Context, l Layout, stage, img string) error {
	boot, perm := filepath.Join(stage, "boot.part"), filepath.Join(stage, "perm.part")
	files := append(slices.Clip(o.Boot),
		fatimg.File{Dest: ConfigPath, Data: []byte(ConfigTxt())},
		fatimg.File{Dest: CmdlinePath, Data: []byte(Cmdline(o.Signature))})
	err := fatimg.Build(ctx, fatimg.Options{
		Out: boot, Size: BootSize, Label: BootLabel, Epoch: o.Epoch, Files: files,
		// The card's signature: blkid then ties the boot FAT to its card.
		VolumeID: o.Signature,
	})
	if err != nil {
		return err
	}
	if err := Perm(ctx, perm, o.PermUUID, o.Epoch); err != nil {
		return err
	}
	return assemble(img, l, o.Signature, [3]string{boot, perm, o.Payload})
}

// assemble writes the MBR and copies each partition file into place in a
// new sparse image.
func assemble(img string, l Layout, signature uint32, parts [3]string) error {
	f, err := disklayout.CreateSparse(img, l.Size)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := writeMBR(f, l, signature); err != nil {
		return err
	}
	for i, p := range l.Partitions {
		if err := copyInto(f, p, parts[i]); err != nil {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// copyInto copies the file src into partition p of dst.
func copyInto(dst *os.File, p Partition, src string) error {
	s, err := os.Open(src)
	if err != nil {
		return err
	}
	defer s.Close()
	if fi, err := s.Stat(); err != nil || fi.Size() > p.Size {
		return fmt.Errorf("partition %d: %s does not fit %d bytes (%v)", p.Number, src, p.Size, err)
	}
	if err := copySparse(dst, p.Start, s); err != nil {
		return fmt.Errorf("partition %d: %s: %w", p.Number, src, err)
	}
	return nil
}

// copySparse copies src to dst at off, skipping zero MiB chunks: dst is a
// new sparse file, so they stay holes.
func copySparse(dst io.WriterAt, off int64, src io.Reader) error {
	buf, zero := make([]byte, mib), make([]byte, mib)
	for {
		n, err := io.ReadFull(src, buf)
		if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
			if _, werr := dst.WriteAt(buf[:n], off); werr != nil {
				return werr
			}
		}
		off += int64(n)
		switch err {
		case nil:
		case io.EOF, io.ErrUnexpectedEOF:
			return nil
		default:
			return err
		}
	}
}

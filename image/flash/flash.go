// Package flash owns writing a kiln image (the gate's SD card image,
// gate-1.img or gate-1.img.xz) onto a removable disk: the rules that refuse
// a device before the first byte is written (mounted, the running system's
// disk, not removable, too small, not a block device), keeping the lab's
// /perm partition across reflashes, the write itself with a progress bar,
// and reading everything back to compare its sha256 with the image's.
package flash

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// BlockSize is the size of each write and read-back.
const BlockSize = 4 << 20

// ErrVerify is wrapped when the bytes read back differ from the image's.
var ErrVerify = errors.New("read-back differs from the image")

// Options is one flash.
type Options struct {
	Image  string // plain or .xz (told by its magic, not its name)
	Device string // a whole disk (/dev/sdb, /dev/mmcblk0), or with Force a regular file
	// Force lifts the removable rule and allows a regular file as Device.
	// No other rule can be lifted.
	Force bool
	// WipePerm writes the image's empty /perm even over the same lab's.
	WipePerm bool
	Host     Host
	// Out receives what is about to happen, notes and the progress bar;
	// Terminal says it is a terminal (redraw one line with \r).
	Out      io.Writer
	Terminal bool

	now  func() time.Time              // tests: a fixed clock
	wrap func(io.WriterAt) io.WriterAt // tests: e.g. a writer that corrupts
}

// Result is what a flash did.
type Result struct {
	Size    int64  // bytes of image content
	Written int64  // bytes written: Size minus Kept
	Kept    Range  // /perm left as it was (Len 0: none)
	SHA256  string // of the whole image content
	// Verified is the sha256 compared on both sides: of everything but
	// Kept (equal to SHA256 when nothing was kept).
	Verified string
}

// Flash writes opts.Image to opts.Device, syncs, drops the device's cache
// and reads back. Every refusal (a *Refusal, or several joined) comes
// before the first write.
func Flash(ctx context.Context, opts Options) (*Result, error) {
	size, err := ImageSize(ctx, opts.Image)
	if err != nil {
		return nil, err
	}
	t, err := Inspect(opts.Device)
	if err != nil {
		return nil, err
	}
	if img, err := os.Stat(opts.Image); err == nil && t.Info != nil && os.SameFile(img, t.Info) {
		return nil, &Refusal{opts.Device, ErrInUse, "it is the image itself"}
	}
	disk, err := opts.Host.Check(t, size, opts.Force)
	if err != nil {
		return nil, err
	}
	f, err := openDevice(t)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	devSize := size
	if disk != nil {
		devSize = disk.Size
		opts.say("writing %s (%s) to %s (%s)\n", opts.Image, humanBytes(size), opts.Device, disk.describe())
	} else {
		opts.say("writing %s (%s) to the file %s\n", opts.Image, humanBytes(size), opts.Device)
	}
	src, err := openImage(ctx, opts.Image)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	res, want, err := opts.write(ctx, f, src, size, devSize)
	if err != nil {
		return nil, err
	}
	if err := dropCache(f, t.Kind); err != nil {
		return nil, err
	}
	if err := opts.verify(ctx, f, res, want); err != nil {
		return nil, err
	}
	if t.Kind == KindBlock {
		// Let the kernel see the new partitions; a failure only means the
		// card must be replugged before mounting it here.
		if err := unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0); err != nil {
			opts.say("note: the kernel did not re-read the partition table (%v); replug the card to see its partitions\n", err)
		}
	}
	return res, nil
}

func (o *Options) say(format string, args ...any) {
	if o.Out != nil {
		fmt.Fprintf(o.Out, format, args...)
	}
}

// openDevice opens t for writing. O_EXCL on a block device makes the
// kernel refuse it while anything holds it (a mount in any namespace, swap,
// md, dm): the last check, at the last moment. The open file is checked to
// be what Inspect looked at.
func openDevice(t Target) (*os.File, error) {
	flags := os.O_RDWR | unix.O_SYNC
	if t.Kind == KindBlock {
		flags |= unix.O_EXCL
	}
	f, err := os.OpenFile(t.Path, flags, 0)
	if errors.Is(err, syscall.EBUSY) {
		return nil, &Refusal{t.Path, ErrInUse, "the kernel says it is busy (mounted, perhaps in another mount namespace, or used as swap, RAID or device-mapper)"}
	}
	if err != nil {
		return nil, fmt.Errorf("open device: %w", err)
	}
	again, err := Inspect(t.Path)
	if err == nil {
		fi, serr := f.Stat()
		same := serr == nil && again.Kind == t.Kind && again.Dev == t.Dev && os.SameFile(fi, t.Info)
		if !same {
			err = fmt.Errorf("%s changed while it was being checked", t.Path)
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// write copies src (size bytes) to f in BlockSize blocks, leaving out the
// kept /perm range, and returns the image's digest of what it wrote.
func (o *Options) write(ctx context.Context, f *os.File, src io.Reader, size, devSize int64) (*Result, *digest, error) {
	var dev io.WriterAt = f
	if o.wrap != nil {
		dev = o.wrap(f)
	}
	res := &Result{Size: size}
	full := newDigest(Range{})
	var want *digest
	p := newProgress(o.Out, o.Terminal, "write", size, o.now)
	buf := make([]byte, BlockSize)
	var off int64
	for {
		if err := ctx.Err(); err != nil {
			return nil, nil, fmt.Errorf("interrupted after %s: the device is only partly written: %w", humanBytes(off), err)
		}
		n, err := io.ReadFull(src, buf)
		if n > 0 {
			if off+int64(n) > size {
				return nil, nil, fmt.Errorf("image: longer than its declared %d bytes", size)
			}
			if off == 0 {
				res.Kept = o.decidePerm(f, buf[:n], size, devSize)
				want = newDigest(res.Kept)
			}
			full.add(off, buf[:n])
			want.add(off, buf[:n])
			for _, r := range outside(off, int64(n), res.Kept) {
				if _, err := dev.WriteAt(buf[r.Off-off:r.end()-off], r.Off); err != nil {
					return nil, nil, fmt.Errorf("write at %s: %w", humanBytes(r.Off), err)
				}
				res.Written += r.Len
			}
			off += int64(n)
			p.update(off)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("image: %w", err)
		}
	}
	if off != size {
		return nil, nil, fmt.Errorf("image: %d bytes, not the declared %d: the device is only partly written", off, size)
	}
	if want == nil {
		want = newDigest(Range{})
	}
	if err := f.Sync(); err != nil {
		return nil, nil, fmt.Errorf("sync: %w", err)
	}
	p.finish(off)
	res.SHA256 = full.sum()
	return res, want, nil
}

// decidePerm reads the device's MBR (before anything is written) and says
// whether /perm is kept.
func (o *Options) decidePerm(f *os.File, first []byte, size, devSize int64) Range {
	if o.WipePerm {
		o.say("/perm: writing it fresh (--wipe-perm)\n")
		return Range{}
	}
	cur := make([]byte, sectorSize)
	if _, err := f.ReadAt(cur, 0); err != nil {
		cur = nil // an empty or tiny file: nothing to keep
	}
	r, why := permToKeep(first, cur, size, devSize, f)
	if r.Len == 0 {
		o.say("/perm: writing it fresh: %s\n", why)
		return r
	}
	o.say("/perm: keeping the card's partition 2 (%s) of the same lab: its machine states and leases stay; --wipe-perm overwrites it\n", r)
	return r
}

// dropCache makes the read-back come from the device, not from memory:
// BLKFLSBUF for a block device, fadvise DONTNEED for a file.
func dropCache(f *os.File, k Kind) error {
	if k == KindBlock {
		if err := unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0); err != nil {
			return fmt.Errorf("BLKFLSBUF: %w", err)
		}
		return nil
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("fadvise: %w", err)
	}
	return nil
}

// verify reads back what write wrote and compares it with want.
func (o *Options) verify(ctx context.Context, f *os.File, res *Result, want *digest) error {
	got := newDigest(res.Kept)
	p := newProgress(o.Out, o.Terminal, "verify", res.Size, o.now)
	buf := make([]byte, BlockSize)
	for off := int64(0); off < res.Size; off += BlockSize {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read-back interrupted: %w", err)
		}
		for _, r := range outside(off, min(BlockSize, res.Size-off), res.Kept) {
			b := buf[:r.Len]
			if _, err := f.ReadAt(b, r.Off); err != nil {
				return fmt.Errorf("read back at %s: %w", humanBytes(r.Off), err)
			}
			got.add(r.Off, b)
		}
		p.update(min(off+BlockSize, res.Size))
	}
	p.finish(res.Size)
	res.Verified = want.sum()
	if g := got.sum(); g != res.Verified {
		return fmt.Errorf("%w: sha256 %s, the image's %s; first difference in MiB %d (bytes %d..%d)",
			ErrVerify, g, res.Verified, firstDiff(want, got), firstDiff(want, got)*mib, (firstDiff(want, got)+1)*mib-1)
	}
	return nil
}

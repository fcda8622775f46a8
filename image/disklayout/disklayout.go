// Package disklayout owns putting a plan.Layout onto a disk: the protective
// MBR with syslinux's GPT boot code, the GPT itself (written with go-diskfs),
// streaming partition images into place, reading them back, and clearing
// data disks. The same code writes image files on the build host and real
// block devices in the installer, so it depends on no host tool.
package disklayout

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/kilnlab/kiln/plan"
)

// Device is a disk: an image file or a block device. *os.File is one.
// Writes are positioned, so one Device may be shared by sequential steps
// without caring about a file offset.
type Device interface {
	io.ReaderAt
	io.WriterAt
}

const (
	// BootCodeSize is the part of the MBR that holds boot code
	// (gptmbr.bin is exactly this long).
	BootCodeSize = 440
	// ClearSize is how much Clear zeroes at each end of a disk: it covers
	// the MBR, both GPTs, RAID/LVM superblocks at the start and md 0.9/1.0
	// superblocks at the end.
	ClearSize = 1 << 20
	// gptEntries is the size of the GPT partition array (the usual 128).
	gptEntries = 128
	entrySize  = 128
	// legacyBIOSBootable is GPT attribute bit 2, the one gptmbr.bin looks
	// for to choose the partition to boot.
	legacyBIOSBootable = 1 << 2
)

// Write puts l onto dev, a disk of size bytes: zeroes whatever of the first
// and last MiB no partition covers (stale labels, boot code, signatures),
// writes a protective MBR carrying bootCode (gptmbr.bin, at most 440 bytes;
// nil leaves it zero), then the backup and primary GPT. Partition contents
// are not touched. l is validated first; nothing is written when it is
// invalid (the error wraps ErrInvalidLayout).
func Write(ctx context.Context, dev Device, size int64, l *plan.Layout, bootCode []byte) error {
	if err := Validate(l, size); err != nil {
		return err
	}
	if len(bootCode) > BootCodeSize {
		return fmt.Errorf("%w: boot code is %d bytes, at most %d", ErrInvalidLayout, len(bootCode), BootCodeSize)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := zeroOutside(dev, size, l); err != nil {
		return err
	}
	ss := int64(l.SectorSize)
	mbr, err := protectiveMBR(l, size/ss, int(ss), bootCode)
	if err != nil {
		return err
	}
	if _, err := dev.WriteAt(mbr, 0); err != nil {
		return fmt.Errorf("write protective MBR: %w", err)
	}
	t := table(l)
	if err := t.Write(&file{dev: dev, size: size}, size); err != nil {
		return fmt.Errorf("write GPT: %w", err)
	}
	return syncDevice(dev)
}

// table converts a validated layout into go-diskfs's form. The protective
// MBR is ours (go-diskfs truncates its size field above 2 TiB), so
// ProtectiveMBR stays false.
func table(l *plan.Layout) *gpt.Table {
	ss := l.SectorSize
	t := &gpt.Table{
		LogicalSectorSize:  int(ss),
		PhysicalSectorSize: int(ss),
		GUID:               l.DiskGUID,
	}
	for _, p := range l.Partitions {
		var attrs uint64
		if p.LegacyBIOSBootable {
			attrs |= legacyBIOSBootable
		}
		t.Partitions = append(t.Partitions, &gpt.Partition{
			Index:      p.Number,
			Start:      p.Start / ss,
			End:        (p.Start+p.Size)/ss - 1,
			Size:       p.Size,
			Type:       gpt.Type(p.Type),
			Name:       p.Name,
			GUID:       p.GUID,
			Attributes: attrs,
		})
	}
	return t
}

// protectiveMBR is LBA 0: boot code, a disk signature derived from the disk
// GUID (stable, and non-zero for tools that want one), and one non-active
// 0xEE entry over the whole disk as UEFI specifies.
func protectiveMBR(l *plan.Layout, sectors int64, ss int, bootCode []byte) ([]byte, error) {
	g, err := uuid.Parse(l.DiskGUID)
	if err != nil {
		return nil, fmt.Errorf("%w: disk GUID: %w", ErrInvalidLayout, err)
	}
	b := make([]byte, ss)
	copy(b, bootCode)
	copy(b[440:444], g[:4])
	e := b[446:462]
	e[0] = 0x00                         // not active
	e[1], e[2], e[3] = 0x00, 0x02, 0x00 // CHS of LBA 1
	e[4] = 0xee
	e[5], e[6], e[7] = 0xff, 0xff, 0xff
	binary.LittleEndian.PutUint32(e[8:12], 1)
	n := uint64(sectors - 1)
	if n > 0xffffffff {
		n = 0xffffffff
	}
	binary.LittleEndian.PutUint32(e[12:16], uint32(n))
	b[510], b[511] = 0x55, 0xaa
	return b, nil
}

// zeroOutside zeroes the parts of the first and last ClearSize bytes that
// no partition covers.
func zeroOutside(dev Device, size int64, l *plan.Layout) error {
	first, last := size, int64(0)
	for _, p := range l.Partitions {
		first = min(first, int64(p.Start))
		last = max(last, int64(p.Start+p.Size))
	}
	if err := zeroRange(dev, 0, min(first, ClearSize)); err != nil {
		return err
	}
	return zeroRange(dev, max(last, size-ClearSize), size)
}

// Clear erases partition tables and signatures of a data disk by zeroing
// its first and last MiB (all of it when smaller than 2 MiB).
func Clear(ctx context.Context, dev Device, size int64) error {
	if size < 0 {
		return fmt.Errorf("clear: negative size %d", size)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := zeroRange(dev, 0, min(size, ClearSize)); err != nil {
		return err
	}
	if err := zeroRange(dev, max(ClearSize, size-ClearSize), size); err != nil {
		return err
	}
	return syncDevice(dev)
}

// ClearPartition erases the signatures in partition p (its first and last
// MiB, all of it when smaller than 2 MiB), as Clear does for a whole disk:
// an empty partition left for the role (a Ceph OSD) must look blank to it,
// whatever an earlier life of the disk left at that offset.
func ClearPartition(ctx context.Context, dev Device, p plan.Partition) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	start, end := int64(p.Start), int64(p.Start+p.Size)
	if err := zeroRange(dev, start, min(end, start+ClearSize)); err != nil {
		return err
	}
	if err := zeroRange(dev, max(start+ClearSize, end-ClearSize), end); err != nil {
		return err
	}
	return syncDevice(dev)
}

func zeroRange(dev Device, from, to int64) error {
	if to <= from {
		return nil
	}
	zero := make([]byte, min(to-from, ClearSize))
	for off := from; off < to; {
		n := min(int64(len(zero)), to-off)
		if _, err := dev.WriteAt(zero[:n], off); err != nil {
			return fmt.Errorf("zero %d bytes at %d: %w", n, off, err)
		}
		off += n
	}
	return nil
}

// syncDevice flushes dev when it can be (an *os.File can; a test buffer
// cannot), so that a rebooting installer does not lose the table.
func syncDevice(dev Device) error {
	s, ok := dev.(interface{ Sync() error })
	if !ok {
		return nil
	}
	if err := s.Sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return nil
}

// DropCaches syncs dev and, for a file or block device, drops what the
// kernel caches of it (BLKFLSBUF for block devices, which regular files
// answer with ENOTTY; POSIX_FADV_DONTNEED for both), so that a read-back
// verification reads the disk, not the page cache.
func DropCaches(dev Device) error {
	if err := syncDevice(dev); err != nil {
		return err
	}
	f, ok := dev.(*os.File)
	if !ok {
		return nil
	}
	fd := int(f.Fd())
	if err := unix.IoctlSetInt(fd, unix.BLKFLSBUF, 0); err != nil && !errors.Is(err, unix.ENOTTY) {
		return fmt.Errorf("BLKFLSBUF %s: %w", f.Name(), err)
	}
	if err := unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("fadvise %s: %w", f.Name(), err)
	}
	return nil
}

// ReadLayout reads the GPT of dev (size bytes, sectorSize-byte sectors)
// back as a plan.Layout with partitions in table order and Content left
// empty. It is what the tests compare against the written layout, and
// what an installer can use to look at a disk before touching it.
func ReadLayout(dev Device, size int64, sectorSize int) (*plan.Layout, error) {
	t, err := gpt.Read(&file{dev: dev, size: size}, sectorSize, sectorSize)
	if err != nil {
		return nil, fmt.Errorf("read GPT: %w", err)
	}
	l := &plan.Layout{DiskGUID: normGUID(t.GUID), SectorSize: uint64(sectorSize)}
	for _, p := range t.Partitions {
		if p.Type == gpt.Unused {
			continue
		}
		l.Partitions = append(l.Partitions, plan.Partition{
			Number:             p.Index,
			Name:               p.Name,
			Type:               normGUID(string(p.Type)),
			GUID:               normGUID(p.GUID),
			Start:              p.Start * uint64(sectorSize),
			Size:               (p.End - p.Start + 1) * uint64(sectorSize),
			LegacyBIOSBootable: p.Attributes&legacyBIOSBootable != 0,
		})
	}
	return l, nil
}

func normGUID(s string) string {
	g, err := uuid.Parse(s)
	if err != nil {
		return s
	}
	return g.String()
}

// file adapts a Device to go-diskfs's backend.WritableFile. go-diskfs
// calls only ReadAt, WriteAt, Seek (to find the size) and Sync.
type file struct {
	dev  Device
	size int64
	off  int64
}

func (f *file) ReadAt(b []byte, off int64) (int, error)  { return f.dev.ReadAt(b, off) }
func (f *file) WriteAt(b []byte, off int64) (int, error) { return f.dev.WriteAt(b, off) }
func (f *file) Close() error                             { return nil }
func (f *file) Stat() (fs.FileInfo, error)               { return fileInfo{size: f.size}, nil }
func (f *file) Sync() error                              { return syncDevice(f.dev) }

func (f *file) Read(b []byte) (int, error) {
	n, err := f.dev.ReadAt(b, f.off)
	f.off += int64(n)
	return n, err
}

func (f *file) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += f.off
	case io.SeekEnd:
		off += f.size
	default:
		return 0, fmt.Errorf("seek: bad whence %d", whence)
	}
	if off < 0 {
		return 0, errors.New("seek: negative offset")
	}
	f.off = off
	return off, nil
}

type fileInfo struct{ size int64 }

func (i fileInfo) Name() string       { return "disk" }
func (i fileInfo) Size() int64        { return i.size }
func (i fileInfo) Mode() fs.FileMode  { return 0o600 }
func (i fileInfo) ModTime() time.Time { return time.Time{} }
func (i fileInfo) IsDir() bool        { return false }
func (i fileInfo) Sys() any           { return nil }

// CreateSparse creates (or truncates) an image file of size bytes that
// takes no space until written: a disk for tests and rehearsals.
func CreateSparse(path string, size int64) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create disk image: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, fmt.Errorf("size disk image %s: %w", path, err)
	}
	return f, nil
}

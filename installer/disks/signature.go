package disks

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// probe is one on-disk signature: magic bytes at a byte offset from the
// start of the device (or, when fromEnd, back from its end).
type probe struct {
	name    string
	off     int64
	magic   []byte
	fromEnd bool
}

// probes are the signatures that make a disk "not blank", after blkid's
// superblock table. Order matters only for the name reported: partition
// tables first, because a table is what a person recognises.
var probes = []probe{
	{name: "gpt", off: 512, magic: []byte("EFI PART")},
	{name: "gpt", off: 4096, magic: []byte("EFI PART")},
	{name: "gpt (backup header)", off: 512, magic: []byte("EFI PART"), fromEnd: true},
	{name: "lvm2", off: 512 + 24, magic: []byte("LVM2 001")},
	{name: "lvm2", off: 24, magic: []byte("LVM2 001")},
	{name: "luks", off: 0, magic: []byte("LUKS\xba\xbe")},
	{name: "squashfs", off: 0, magic: []byte("hsqs")},
	{name: "xfs", off: 0, magic: []byte("XFSB")},
	{name: "btrfs", off: 0x10040, magic: []byte("_BHRfS_M")},
	{name: "ext2/3/4", off: 1024 + 56, magic: []byte{0x53, 0xef}},
	{name: "vfat", off: 82, magic: []byte("FAT32   ")},
	{name: "vfat", off: 54, magic: []byte("FAT16   ")},
	{name: "vfat", off: 54, magic: []byte("FAT12   ")},
	{name: "swap", off: 4096 - 10, magic: []byte("SWAPSPACE2")},
	{name: "swap", off: 4096 - 10, magic: []byte("SWAP-SPACE")},
	{name: "swap", off: 65536 - 10, magic: []byte("SWAPSPACE2")},
	{name: "iso9660", off: 0x8001, magic: []byte("CD001")},
	{name: "mbr", off: 510, magic: []byte{0x55, 0xaa}},
}

// Signature returns the name of the first partition table or filesystem
// signature found on a device of the given size, or "" when it is blank.
func Signature(r io.ReaderAt, size uint64) (string, error) {
	for _, p := range probes {
		off := p.off
		if p.fromEnd {
			off = int64(size) - p.off
		}
		if off < 0 || uint64(off)+uint64(len(p.magic)) > size {
			continue
		}
		buf := make([]byte, len(p.magic))
		if _, err := r.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read signature at %d: %w", off, err)
		}
		if bytes.Equal(buf, p.magic) && plausible(r, p) {
			return p.name, nil
		}
	}
	return "", nil
}

// plausible weeds out ext's two-byte magic hit by chance: a real ext
// superblock also has a sane log block size. A lone 0x55AA at 510 is kept
// as "mbr": it means someone wrote a boot sector there.
func plausible(r io.ReaderAt, p probe) bool {
	if p.name != "ext2/3/4" {
		return true
	}
	var b [4]byte
	if _, err := r.ReadAt(b[:], 1024+24); err != nil {
		return false
	}
	return binary.LittleEndian.Uint32(b[:]) <= 6 // 1 KiB << 6 = 64 KiB
}

package flash

import (
	"encoding/binary"
	"fmt"
	"io"
)

// sectorSize is the unit of MBR addresses on SD cards and image files.
const sectorSize = 512

// mbr is what kiln flash needs of a DOS partition table.
type mbr struct {
	signature uint32 // disk signature, bytes 440..443 (what PARTUUIDs print)
	parts     [4]mbrPart
}

type mbrPart struct {
	typ            byte
	start, sectors uint32 // in 512-byte sectors
}

// parseMBR reads a DOS partition table from the first sector of a disk;
// ok is false without the 0x55AA boot signature.
func parseMBR(b []byte) (m mbr, ok bool) {
	if len(b) < sectorSize || b[510] != 0x55 || b[511] != 0xaa {
		return mbr{}, false
	}
	m.signature = binary.LittleEndian.Uint32(b[440:])
	for i := range m.parts {
		e := b[446+16*i:]
		m.parts[i] = mbrPart{typ: e[4], start: binary.LittleEndian.Uint32(e[8:]), sectors: binary.LittleEndian.Uint32(e[12:])}
	}
	return m, true
}

// Range is a byte range of the device.
type Range struct{ Off, Len int64 }

func (r Range) end() int64 { return r.Off + r.Len }

func (r Range) String() string {
	return fmt.Sprintf("%s at %s", humanBytes(r.Len), humanBytes(r.Off))
}

// ext4Magic is at byte 1080 of an ext2/3/4 file system (superblock 1024 +
// s_magic 0x38), little-endian 0xEF53.
const ext4Magic = 1024 + 0x38

// permToKeep decides whether the device's /perm (partition 2) survives: it
// does when the device already holds a card of the same lab (same disk
// signature, non-zero) with partition 2 at the same start and size as the
// image's, and that partition holds an ext4 file system. reason says why
// not, for people.
func permToKeep(image, device []byte, imageSize, deviceSize int64, dev io.ReaderAt) (r Range, reason string) {
	im, ok := parseMBR(image)
	if !ok || im.parts[1].sectors == 0 {
		return Range{}, "the image has no partition 2"
	}
	dm, ok := parseMBR(device)
	if !ok {
		return Range{}, "the device has no DOS partition table"
	}
	if im.signature == 0 || dm.signature != im.signature {
		return Range{}, fmt.Sprintf("the device's disk signature %08x is not the image's %08x (another lab, or not a kiln card)", dm.signature, im.signature)
	}
	ip, dp := im.parts[1], dm.parts[1]
	if ip.start != dp.start || ip.sectors != dp.sectors || ip.typ != dp.typ {
		return Range{}, "the device's partition 2 is not where the image's is"
	}
	r = Range{int64(ip.start) * sectorSize, int64(ip.sectors) * sectorSize}
	if r.end() > imageSize || r.end() > deviceSize {
		return Range{}, "partition 2 ends beyond the image or the device"
	}
	var magic [2]byte
	if _, err := dev.ReadAt(magic[:], r.Off+ext4Magic); err != nil || binary.LittleEndian.Uint16(magic[:]) != 0xef53 {
		return Range{}, "the device's partition 2 holds no ext4 file system"
	}
	return r, ""
}

// outside returns the parts of [off, off+n) that are not in skip.
func outside(off, n int64, skip Range) []Range {
	end := off + n
	if skip.Len == 0 || skip.end() <= off || skip.Off >= end {
		return []Range{{off, n}}
	}
	var out []Range
	if skip.Off > off {
		out = append(out, Range{off, skip.Off - off})
	}
	if skip.end() < end {
		out = append(out, Range{skip.end(), end - skip.end()})
	}
	return out
}

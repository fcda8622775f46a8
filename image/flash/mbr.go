package flash

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/kilnlab/kiln/image/gateimg"
)

// sectorSize is the unit of MBR addresses on SD cards and image files.
const sectorSize = gateimg.SectorSize

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
	im, ok := gateimg.ParseMBR(image)
	if !ok || im.Entries[1].Sectors == 0 {
		return Range{}, "the image has no partition 2"
	}
	dm, ok := gateimg.ParseMBR(device)
	if !ok {
		return Range{}, "the device has no DOS partition table"
	}
	if im.Signature == 0 || dm.Signature != im.Signature {
		return Range{}, fmt.Sprintf("the device's disk signature %08x is not the image's %08x (another lab, or not a kiln card)", dm.Signature, im.Signature)
	}
	ip, dp := im.Entries[1], dm.Entries[1]
	if ip.Start != dp.Start || ip.Sectors != dp.Sectors || ip.Type != dp.Type {
		return Range{}, "the device's partition 2 is not where the image's is"
	}
	r = Range{int64(ip.Start) * sectorSize, int64(ip.Sectors) * sectorSize}
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

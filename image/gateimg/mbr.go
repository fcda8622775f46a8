package gateimg

import (
	"encoding/binary"
	"fmt"
	"os"

	"github.com/diskfs/go-diskfs/partition/mbr"
)

// writeMBR writes l's partition table with go-diskfs, and the disk
// signature, which go-diskfs's Table cannot set, beside it. The boot code
// area stays zero: the Pi's firmware reads the table, not the code.
func writeMBR(f *os.File, l Layout, signature uint32) error {
	t := &mbr.Table{LogicalSectorSize: SectorSize, PhysicalSectorSize: SectorSize}
	for _, p := range l.Partitions {
		first, last := p.Start/SectorSize, (p.Start+p.Size)/SectorSize-1
		e := &mbr.Partition{
			Index: p.Number, Type: mbr.Type(p.Type),
			Start: uint32(first), Size: uint32(p.Size / SectorSize),
		}
		e.StartHead, e.StartSector, e.StartCylinder = chs(first)
		e.EndHead, e.EndSector, e.EndCylinder = chs(last)
		t.Partitions = append(t.Partitions, e)
	}
	if err := t.Write(f, l.Size); err != nil {
		return fmt.Errorf("write MBR: %w", err)
	}
	sig := make([]byte, 4)
	binary.LittleEndian.PutUint32(sig, signature)
	if _, err := f.WriteAt(sig, 440); err != nil {
		return fmt.Errorf("write disk signature: %w", err)
	}
	return nil
}

// chs encodes an LBA as the MBR's cylinder/head/sector bytes in the usual
// 255-head, 63-sector geometry, saturating at 1023/254/63 beyond 8 GiB as
// fdisk does; nothing modern reads them, but tools compare them.
func chs(lba int64) (head, sector, cylinder byte) {
	const heads, sectors = 255, 63
	c := lba / (heads * sectors)
	if c > 1023 {
		return 254, 63 | 0xc0, 0xff
	}
	h := (lba / sectors) % heads
	s := lba%sectors + 1
	return byte(h), byte(s) | byte(c>>8)<<6, byte(c)
}

// MBR is what kiln reads back of a DOS partition table: the disk
// signature (what the kernel prints in MBR PARTUUIDs) and the four
// primary entries. kiln flash, the gate's appliance and the rehearsal all
// read cards through it.
type MBR struct {
	Signature uint32
	Entries   [4]MBREntry
}

// MBREntry is one primary partition entry, in 512-byte sectors.
type MBREntry struct {
	Type           byte
	Start, Sectors uint32
}

// TypeGPTProtective marks a GPT disk's protective MBR entry.
const TypeGPTProtective = 0xee

// ParseMBR reads a DOS partition table from a disk's first sector; ok is
// false without the 0x55AA boot signature.
func ParseMBR(sector []byte) (m MBR, ok bool) {
	if len(sector) < SectorSize || sector[510] != 0x55 || sector[511] != 0xaa {
		return MBR{}, false
	}
	m.Signature = binary.LittleEndian.Uint32(sector[440:])
	for i := range m.Entries {
		e := sector[446+16*i:]
		m.Entries[i] = MBREntry{Type: e[4], Start: binary.LittleEndian.Uint32(e[8:]), Sectors: binary.LittleEndian.Uint32(e[12:])}
	}
	return m, true
}

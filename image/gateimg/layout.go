package gateimg

import (
	"errors"
	"fmt"
)

const (
	mib = 1 << 20
	// SectorSize is the sector size of the MBR's LBA fields.
	SectorSize = 512
	// BootStart and BootSize place p1, the Pi firmware's FAT32 partition.
	BootStart = 4 * mib
	BootSize  = 256 * mib
	// PermStart and PermSize place p2, /perm. The offset is fixed so that
	// reflashing boot and payload never moves it (kiln flash keeps it).
	PermStart = BootStart + BootSize
	PermSize  = 256 * mib
	// PayloadStart is where p3, the payload squashfs, begins.
	PayloadStart = PermStart + PermSize
	// maxBytes: MBR sector fields are 32 bits.
	maxBytes = (1<<32 - 1) * SectorSize
)

// MBR partition types of the contract.
const (
	TypeFAT32LBA = 0x0c
	TypeLinux    = 0x83
)

// ErrCardTooSmall is wrapped when the image does not fit the card; the
// message says the size needed.
var ErrCardTooSmall = errors.New("card too small")

// Partition is one MBR entry, in bytes.
type Partition struct {
	Number int
	Type   byte
	Start  int64
	Size   int64
}

// Layout is the partition table of a gate image and the image's size.
type Layout struct {
	Partitions [3]Partition // boot, perm, payload
	Size       int64        // bytes: the end of the payload partition
}

// NewLayout lays out an image whose payload squashfs is payloadSize bytes:
// the payload partition is that rounded up to whole MiB.
func NewLayout(payloadSize int64) (Layout, error) {
	if payloadSize <= 0 || payloadSize > maxBytes {
		return Layout{}, fmt.Errorf("gate image: payload of %d bytes", payloadSize)
	}
	p3 := (payloadSize + mib - 1) / mib * mib
	l := Layout{
		Partitions: [3]Partition{
			{1, TypeFAT32LBA, BootStart, BootSize},
			{2, TypeLinux, PermStart, PermSize},
			{3, TypeLinux, PayloadStart, p3},
		},
		Size: PayloadStart + p3,
	}
	if l.Size > maxBytes {
		return Layout{}, fmt.Errorf("gate image: %d bytes is beyond what an MBR addresses", l.Size)
	}
	return l, nil
}

// Fits returns an error wrapping ErrCardTooSmall when the image is larger
// than a card of cardSize bytes; 0 means the size is not known.
func (l Layout) Fits(cardSize int64) error {
	if cardSize == 0 || l.Size <= cardSize {
		return nil
	}
	return fmt.Errorf("%w: card is %s, the image needs %s (%d bytes)", ErrCardTooSmall, gb(cardSize), gb(l.Size), l.Size)
}

// gb formats bytes in decimal gigabytes, as cards are sold.
func gb(n int64) string { return fmt.Sprintf("%.1f GB", float64(n)/1e9) }

// PartUUID is the PARTUUID the kernel gives partition n of a disk with
// this MBR signature.
func PartUUID(signature uint32, n int) string { return fmt.Sprintf("%08x-%02d", signature, n) }

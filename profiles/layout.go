package profiles

import (
	"cmp"
	"errors"
	"fmt"
)

// The system disk's size arithmetic lives here, not in package plan, because
// validation must reject a profile whose layout cannot fit and profiles may
// not import plan (imports go downward: profiles <- roles <- plan). This file
// is pure arithmetic over byte extents; plan.SystemLayout turns the extents
// into a GPT layout with names, types and GUIDs. Both therefore agree by
// construction on what fits.

// Sizes of the system disk layout (kiln-contracts.md, "Disk layout").
const (
	MiB = 1 << 20
	GiB = 1 << 30

	// Align is the alignment of every partition start and size; it is also
	// the headroom kept free at each end of the disk for the GPT headers.
	Align = 1 * MiB

	ESPSize      = 128 * MiB
	RootSize     = 2 * GiB
	MinStateSize = 1 * GiB

	// MinSystemSize is the smallest system slice (and disk) that holds the
	// layout: headroom, ESP, root, the smallest state, headroom.
	MinSystemSize = Align + ESPSize + RootSize + MinStateSize + Align
)

// ErrNoFit is returned when a system layout does not fit its disk.
var ErrNoFit = errors.New("layout does not fit")

// Extent is a byte range on a disk.
type Extent struct {
	Start, Size uint64
}

// End is the first byte after the extent.
func (e Extent) End() uint64 { return e.Start + e.Size }

// SystemExtents are the partitions of a system disk. Data.Size is zero when
// the system slice takes the whole disk.
type SystemExtents struct {
	ESP, Root, State, Data Extent
}

// SystemSlices lays out a system disk of diskSize bytes whose OS slice is
// systemSize bytes from the start of the disk (zero: the whole disk). The
// state partition fills the slice; the data partition, if at least Align
// is left, fills the rest of the disk.
func SystemSlices(diskSize, systemSize Size) (SystemExtents, error) {
	disk, sys := uint64(diskSize), uint64(systemSize)
	if sys > disk {
		return SystemExtents{}, fmt.Errorf("%w: system_size %s is larger than the disk (%s)", ErrNoFit, systemSize, diskSize)
	}
	if limit := cmp.Or(sys, disk); limit < MinSystemSize {
		return SystemExtents{}, fmt.Errorf("%w: %s is smaller than the %s a system needs (1MiB GPT headroom at each end, ESP %s, root %s, state at least %s)",
			ErrNoFit, slice(systemSize, diskSize), Size(MinSystemSize), Size(ESPSize), Size(RootSize), Size(MinStateSize))
	}
	end := alignDown(disk) - Align // the end of the last partition
	sysEnd := end
	if sys != 0 && alignDown(sys) < end {
		sysEnd = alignDown(sys)
	}
	var x SystemExtents
	x.ESP = Extent{Align, ESPSize}
	x.Root = Extent{x.ESP.End(), RootSize}
	x.State = Extent{x.Root.End(), sysEnd - x.Root.End()}
	if end-sysEnd >= Align {
		x.Data = Extent{sysEnd, end - sysEnd}
	}
	return x, nil
}

func alignDown(n uint64) uint64 { return n / Align * Align }

func slice(systemSize, diskSize Size) string {
	if systemSize == 0 || systemSize == diskSize {
		return fmt.Sprintf("the disk (%s)", diskSize)
	}
	return fmt.Sprintf("system_size %s", systemSize)
}

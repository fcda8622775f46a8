package plan

import (
	"fmt"

	"github.com/kilnlab/kiln/profiles"
)

// GPT partition type GUIDs.
const (
	TypeESP   = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" // EFI System
	TypeLinux = "0FC63DAF-8483-4772-8E79-3D69D8477DE4" // Linux filesystem data
)

// SectorSize is the logical sector size kiln lays disks out for. Offsets
// are 1 MiB aligned, so 4Kn disks get the same byte layout.
const SectorSize = 512

// GUID derives a stable identifier from the lab, machine, disk and optional
// partition names (profiles.GUID, which roles also names partitions by).
func GUID(lab, machine, disk, part string) string {
	return profiles.GUID(lab, machine, disk, part)
}

// SystemLayout is the GPT layout of a system disk (kiln-contracts.md, "Disk
// layout"): ESP, root, state and, when system_size leaves room and the role
// has one, the role's data partition named "kiln-"+data. The arithmetic is
// profiles.SystemSlices, which validation already ran on the same disk.
func SystemLayout(lab, machine string, d profiles.Disk, data string) (*Layout, error) {
	x, err := profiles.SystemSlices(d.Size, d.SystemSize)
	if err != nil {
		return nil, fmt.Errorf("%s disk %s: %w", machine, d.Name, err)
	}
	l := &Layout{DiskGUID: GUID(lab, machine, d.Name, ""), SectorSize: SectorSize}
	add := func(part, typ, content string, e profiles.Extent) {
		l.Partitions = append(l.Partitions, Partition{
			Number: len(l.Partitions) + 1, Name: "kiln-" + part, Type: typ,
			GUID: GUID(lab, machine, d.Name, part), Start: e.Start, Size: e.Size, Content: content,
		})
	}
	add("esp", TypeESP, ContentESP, x.ESP)
	l.Partitions[0].LegacyBIOSBootable = true
	add("root", TypeLinux, ContentRoot, x.Root)
	add("state", TypeLinux, ContentState, x.State)
	if data != "" && x.Data.Size > 0 {
		add(data, TypeLinux, ContentEmpty, x.Data)
	}
	return l, nil
}

// Partition returns the layout's partition holding content, if any.
func (l *Layout) Partition(content string) (Partition, bool) {
	for _, p := range l.Partitions {
		if p.Content == content {
			return p, true
		}
	}
	return Partition{}, false
}

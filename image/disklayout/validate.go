package disklayout

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/kilnlab/kiln/plan"
)

// ErrInvalidLayout is wrapped by every error about a layout that cannot be
// written as given (as opposed to an I/O error).
var ErrInvalidLayout = errors.New("invalid disk layout")

// Validate checks that l fits a disk of size bytes as a GPT with 128
// entries: sector size 512 or 4096; a parseable disk GUID; partitions
// numbered 1..128 without repeats, named in at most 36 UTF-16 units of
// NUL-free UTF-8, with
// parseable non-zero type and unique GUIDs, sector-aligned, non-empty,
// inside the usable area and not overlapping.
func Validate(l *plan.Layout, size int64) error {
	if l == nil {
		return fmt.Errorf("%w: no layout", ErrInvalidLayout)
	}
	ss := l.SectorSize
	if ss != 512 && ss != 4096 {
		return fmt.Errorf("%w: sector size %d", ErrInvalidLayout, ss)
	}
	if size <= 0 || uint64(size)%ss != 0 {
		return fmt.Errorf("%w: disk size %d is not a positive multiple of %d", ErrInvalidLayout, size, ss)
	}
	if _, err := uuid.Parse(l.DiskGUID); err != nil {
		return fmt.Errorf("%w: disk GUID %q: %w", ErrInvalidLayout, l.DiskGUID, err)
	}
	arraySectors := gptEntries * entrySize / ss
	sectors := uint64(size) / ss
	if sectors < 3+2*arraySectors {
		return fmt.Errorf("%w: disk of %d bytes too small for a GPT", ErrInvalidLayout, size)
	}
	firstUsable := (2 + arraySectors) * ss
	lastUsable := (sectors - 2 - arraySectors + 1) * ss // exclusive end, bytes

	guids := map[uuid.UUID]int{}
	parts := slices.Clone(l.Partitions)
	for _, p := range parts {
		if err := validatePartition(p, ss, firstUsable, lastUsable); err != nil {
			return err
		}
		g := uuid.MustParse(p.GUID) // checked above
		if n, dup := guids[g]; dup {
			return fmt.Errorf("%w: partitions %d and %d share GUID %s", ErrInvalidLayout, n, p.Number, g)
		}
		guids[g] = p.Number
	}
	slices.SortFunc(parts, func(a, b plan.Partition) int { return compareUint(a.Start, b.Start) })
	for i := 1; i < len(parts); i++ {
		a, b := parts[i-1], parts[i]
		if a.Start+a.Size > b.Start {
			return fmt.Errorf("%w: partitions %d and %d overlap", ErrInvalidLayout, a.Number, b.Number)
		}
	}
	slices.SortFunc(parts, func(a, b plan.Partition) int { return a.Number - b.Number })
	for i := 1; i < len(parts); i++ {
		if parts[i-1].Number == parts[i].Number {
			return fmt.Errorf("%w: partition number %d used twice", ErrInvalidLayout, parts[i].Number)
		}
	}
	return nil
}

func validatePartition(p plan.Partition, ss, firstUsable, lastUsable uint64) error {
	if p.Number < 1 || p.Number > gptEntries {
		return fmt.Errorf("%w: partition number %d not in 1..%d", ErrInvalidLayout, p.Number, gptEntries)
	}
	if !utf8.ValidString(p.Name) || strings.ContainsRune(p.Name, 0) {
		return fmt.Errorf("%w: partition %d: name %q is not NUL-free UTF-8", ErrInvalidLayout, p.Number, p.Name)
	}
	if n := len(utf16.Encode([]rune(p.Name))); n > 36 {
		return fmt.Errorf("%w: partition %d: name is %d UTF-16 units, at most 36", ErrInvalidLayout, p.Number, n)
	}
	for _, g := range []struct{ what, s string }{{"type GUID", p.Type}, {"GUID", p.GUID}} {
		u, err := uuid.Parse(g.s)
		if err != nil {
			return fmt.Errorf("%w: partition %d: %s %q: %w", ErrInvalidLayout, p.Number, g.what, g.s, err)
		}
		if u == uuid.Nil {
			return fmt.Errorf("%w: partition %d: %s is zero", ErrInvalidLayout, p.Number, g.what)
		}
	}
	if p.Size == 0 || p.Start%ss != 0 || p.Size%ss != 0 {
		return fmt.Errorf("%w: partition %d: start %d size %d not whole non-empty %d-byte sectors", ErrInvalidLayout, p.Number, p.Start, p.Size, ss)
	}
	if p.Start < firstUsable || p.Start > lastUsable || p.Size > lastUsable-p.Start {
		return fmt.Errorf("%w: partition %d: [%d, +%d) outside usable [%d, %d)", ErrInvalidLayout, p.Number, p.Start, p.Size, firstUsable, lastUsable)
	}
	return nil
}

func compareUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

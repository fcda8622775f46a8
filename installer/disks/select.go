package disks

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/kilnlab/kiln/image/disklayout"
	"github.com/kilnlab/kiln/plan"
)

// Target is a planned disk bound to the device that carries it.
type Target struct {
	Plan plan.Disk
	Disk Disk
	// Signature is what was found on the disk before install ("" when
	// blank), e.g. "gpt" or "ext4"; kept for the install log.
	Signature string
}

// Select finds every planned disk and runs every check on every one of
// them before returning, so that a refusal names all problems at once and
// nothing is written unless all disks pass. The error joins one wrapped
// sentinel per problem; test it with errors.Is.
func (s System) Select(planned []plan.Disk) ([]Target, error) {
	found, err := s.List()
	if err != nil {
		return nil, err
	}
	var (
		targets []Target
		errs    []error
		owner   = map[string]string{} // device name -> planned disk name
	)
	for _, p := range planned {
		d, err := match(p, found)
		if err != nil {
			errs = append(errs, fmt.Errorf("disk %s: %w", p.Name, err))
			continue
		}
		if prev, ok := owner[d.Name]; ok {
			errs = append(errs, fmt.Errorf("disk %s: %s is also selected for disk %s: %w", p.Name, d.Path, prev, ErrAmbiguousDisk))
			continue
		}
		owner[d.Name] = p.Name
		t := Target{Plan: p, Disk: d}
		if err := check(&t); err != nil {
			errs = append(errs, fmt.Errorf("disk %s (%s): %w", p.Name, d.Path, err))
			continue
		}
		targets = append(targets, t)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return targets, nil
}

// match returns the one disk whose serial or WWN equals the plan's.
func match(p plan.Disk, found []Disk) (Disk, error) {
	if p.Serial == "" && p.WWN == "" {
		return Disk{}, ErrNoSelector
	}
	var hits []Disk
	for _, d := range found {
		if selects(p, d) {
			hits = append(hits, d)
		}
	}
	switch len(hits) {
	case 0:
		return Disk{}, fmt.Errorf("serial %q wwn %q: %w", p.Serial, p.WWN, ErrDiskMissing)
	case 1:
		return hits[0], nil
	}
	names := make([]string, len(hits))
	for i, h := range hits {
		names[i] = h.Path
	}
	return Disk{}, fmt.Errorf("serial %q wwn %q matches %v: %w", p.Serial, p.WWN, names, ErrAmbiguousDisk)
}

func selects(p plan.Disk, d Disk) bool {
	if p.Serial != "" && d.Serial == p.Serial {
		return true
	}
	return p.WWN != "" && d.WWN != "" && NormalizeWWN(d.WWN) == NormalizeWWN(p.WWN)
}

// check runs the size and blankness checks on a matched disk; a disk that
// is not blank needs wipe, unless the plan keeps it.
func check(t *Target) error {
	need := t.Plan.Size
	if l := t.Plan.Layout; l != nil {
		for _, part := range l.Partitions {
			// The backup GPT needs the last 33 sectors after the
			// last partition.
			if end := part.Start + part.Size + 33*sectorSize(l); end > need {
				need = end
			}
		}
	}
	if t.Disk.Size < need {
		return fmt.Errorf("%d bytes, plan needs %d: %w", t.Disk.Size, need, ErrDiskTooSmall)
	}
	f, err := os.Open(t.Disk.Path)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer f.Close()
	sig, err := Signature(f, t.Disk.Size)
	if err != nil {
		return err
	}
	t.Signature = sig
	if sig == "gpt" && ownLayout(f, t) {
		// kiln wrote this table for this very disk (its GUID derives
		// from the profile): an earlier install of the machine, one a
		// power cut stopped included. Installing it again is what the
		// profile asked for when the disk was blank.
		t.Signature = "gpt of this disk's own kiln layout (an earlier install)"
		return nil
	}
	// A kept disk (a reinstall's data disk) is not written: what it holds
	// is what it should hold.
	if sig != "" && !t.Plan.Wipe && t.Plan.Action != plan.ActionKeep {
		return fmt.Errorf("found %s: %w", sig, ErrDiskNotBlank)
	}
	return nil
}

// ownLayout says whether the disk's GPT carries the disk GUID of t's
// planned layout.
func ownLayout(f *os.File, t *Target) bool {
	l := t.Plan.Layout
	if l == nil || l.DiskGUID == "" {
		return false
	}
	got, err := disklayout.ReadLayout(f, int64(t.Disk.Size), int(sectorSize(l)))
	return err == nil && strings.EqualFold(got.DiskGUID, l.DiskGUID)
}

func sectorSize(l *plan.Layout) uint64 {
	if l.SectorSize == 0 {
		return 512
	}
	return l.SectorSize
}

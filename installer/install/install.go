// Package install owns one machine's install, from the gate's manifest to a
// verified disk: it selects every planned disk and runs every check before
// the first byte is written, then writes the GPT layout with its boot code,
// streams the ESP, role and state images into their partitions, reads each
// back to compare its SHA-256 with the manifest, clears data disks, and
// reports progress and the result to the gate and to the console.
//
// Console markers (tests wait for these exact prefixes):
//
//	KILN-INSTALL-START <name>
//	KILN-INSTALL-REFUSED <name>: <reason>   nothing was written
//	KILN-INSTALL-FAILED <name>: <reason>    something was written
//	KILN-INSTALL-OK <name>
//
// Any error before the first write is a refusal, whatever its cause (a
// disk check, a layout that does not fit, the gate refusing the token or
// being unreachable): the marker then promises the disks are untouched.
package install

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/coreos/ignition/v2/config/v3_5/types"
	"github.com/u-root/u-root/pkg/efivarfs"

	"github.com/kilnlab/kiln/image/bundle"
	"github.com/kilnlab/kiln/image/disklayout"
	"github.com/kilnlab/kiln/image/esp"
	"github.com/kilnlab/kiln/installer/disks"
	"github.com/kilnlab/kiln/installer/efiboot"
	"github.com/kilnlab/kiln/installer/gateclient"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/pxe/api"
)

// ErrRefused wraps every error returned before anything was written.
var ErrRefused = errors.New("install refused")

// Installer installs one machine.
type Installer struct {
	Log     *slog.Logger
	Console io.Writer // markers and human progress lines
	Gate    *gateclient.Client
	Disks   disks.System
	// Name is what the markers call the machine until the manifest
	// names it (the MAC, usually).
	Name string
	// Step is how many bytes of an image pass between two progress
	// reports; 0 means 32 MiB.
	Step int64
	// Secrets writes the machine's secrets (fetched once, before the
	// first write) into its state partition (MountApply). Required.
	Secrets SecretsApplier
	// EFIVars is the UEFI firmware's variable store, nil under BIOS.
	// When set, the installed disk's bootloader gets a boot entry right
	// after the netboot entry (see efiboot).
	EFIVars efivarfs.EFIVar
}

// contentFile maps a partition's content to its manifest file.
var contentFile = map[string]string{
	plan.ContentESP:   api.FileESP,
	plan.ContentRoot:  api.FileRoot,
	plan.ContentState: api.FileState,
}

// Run installs and reports. It returns nil after KILN-INSTALL-OK; the
// caller reboots. A returned error wraps ErrRefused when nothing was
// written.
func (in *Installer) Run(ctx context.Context) error {
	name := in.Name
	w, err := in.prepare(ctx, &name)
	if err != nil {
		in.Name = name
		return in.Refuse(ctx, err)
	}
	if err := in.write(ctx, w); err != nil {
		in.finish(ctx, name, "KILN-INSTALL-FAILED", err)
		return err
	}
	in.finish(ctx, name, "KILN-INSTALL-OK", nil)
	return nil
}

// Refuse ends an install that could not start (no network, say): it
// prints KILN-INSTALL-REFUSED under Name, tries to tell the gate, and
// returns err wrapped in ErrRefused.
func (in *Installer) Refuse(ctx context.Context, err error) error {
	err = fmt.Errorf("%w: %w", ErrRefused, err)
	in.finish(ctx, in.Name, "KILN-INSTALL-REFUSED", err)
	return err
}

// work is everything decided before writing.
type work struct {
	manifest api.InstallManifest
	targets  []disks.Target
	bootCode []byte
	secrets  types.Config
}

// prepare fetches the manifest, prints START, checks every disk and every
// image against its partition, and fetches the boot code. It writes nothing.
func (in *Installer) prepare(ctx context.Context, name *string) (*work, error) {
	m, err := in.Gate.Manifest(ctx)
	if err != nil {
		return nil, err
	}
	*name = m.Machine.Name
	fmt.Fprintf(in.Console, "KILN-INSTALL-START %s\n", *name)
	in.progress(ctx, api.Progress{Phase: "check", Message: "selecting disks"})
	planned := m.Machine.Disks
	if m.Reinstall {
		planned = reinstallDisks(planned)
		fmt.Fprintf(in.Console, "kiln: reinstall: the data disks and empty partitions are kept\n")
	}
	targets, err := in.Disks.Select(planned)
	if err != nil {
		return nil, err
	}
	for _, t := range targets {
		in.Log.Info("disk selected", "disk", t.Plan.Name, "device", t.Disk.Path, "serial", t.Disk.Serial, "wwn", t.Disk.WWN, "size", t.Disk.Size, "found", t.Signature, "action", t.Plan.Action)
		if err := checkTarget(t, m); err != nil {
			return nil, fmt.Errorf("disk %s: %w", t.Plan.Name, err)
		}
	}
	mbr, err := in.Gate.Fetch(ctx, m.Files[api.FileGPTMBR], disklayout.BootCodeSize)
	if err != nil {
		return nil, err
	}
	// Last before writing: a refused install never took its secrets,
	// and a refusal of the secrets (someone used the token first)
	// stops the install before a byte is written.
	if in.Secrets == nil {
		return nil, errors.New("secrets: the installer has no way to write them")
	}
	in.progress(ctx, api.Progress{Phase: "check", Message: "fetching the machine's secrets"})
	sec, err := in.fetchSecrets(ctx)
	if err != nil {
		return nil, err
	}
	return &work{manifest: m, targets: targets, bootCode: mbr, secrets: sec}, nil
}

// reinstallDisks gives each disk its plan's action on a reinstall (a data
// disk is kept), on a copy: the manifest stays as the gate sent it.
func reinstallDisks(ds []plan.Disk) []plan.Disk {
	out := make([]plan.Disk, len(ds))
	for i, d := range ds {
		if d.Reinstall != "" {
			d.Action = d.Reinstall
		}
		out[i] = d
	}
	return out
}

// checkTarget checks what disklayout would refuse later, plus that every
// image fits its partition.
func checkTarget(t disks.Target, m api.InstallManifest) error {
	switch t.Plan.Action {
	case plan.ActionClear, plan.ActionKeep:
		return nil
	case plan.ActionPartition:
	default:
		return fmt.Errorf("unknown action %q", t.Plan.Action)
	}
	if t.Plan.Layout == nil {
		return errors.New("action partition without a layout")
	}
	if err := disklayout.Validate(t.Plan.Layout, int64(t.Disk.Size)); err != nil {
		return err
	}
	for _, p := range t.Plan.Layout.Partitions {
		key, ok := contentFile[p.Content]
		if !ok {
			continue
		}
		f := m.Files[key]
		if uint64(f.Size) > p.Size {
			return fmt.Errorf("partition %s holds %d bytes, %s is %d", p.Name, p.Size, f.Path, f.Size)
		}
	}
	return nil
}

// finish prints the closing marker and reports the result; a gate that
// cannot be told is logged, the console already says it all.
func (in *Installer) finish(ctx context.Context, name, marker string, err error) {
	res := api.Result{OK: err == nil}
	if err != nil {
		res.Error = err.Error()
		fmt.Fprintf(in.Console, "%s %s: %v\n", marker, name, err)
	}
	if rerr := in.Gate.Result(ctx, res); rerr != nil {
		in.Log.Warn("report result to gate", "err", rerr)
	}
	if err == nil {
		fmt.Fprintf(in.Console, "%s %s\n", marker, name)
	}
}

func (in *Installer) progress(ctx context.Context, p api.Progress) {
	if err := in.Gate.Progress(ctx, p); err != nil {
		in.Log.Warn("report progress to gate", "phase", p.Phase, "err", err)
	}
}

// write does the writing in the order that keeps every disk unbootable
// until the whole install is on it (a power cut at any moment leaves a
// disk the firmware passes over, so it netboots and the gate installs it
// again): each disk's ESP loses its head before anything else is written,
// then the table, the other images (verified) and the secrets go on,
// and the ESPs come last, their own heads last of all (WriteBootImage).
func (in *Installer) write(ctx context.Context, w *work) error {
	for _, t := range w.targets {
		if err := in.writeDisk(ctx, w, t); err != nil {
			return fmt.Errorf("disk %s (%s): %w", t.Plan.Name, t.Disk.Path, err)
		}
	}
	if err := in.applySecrets(ctx, w); err != nil {
		return err
	}
	for _, t := range w.targets {
		if err := in.writeBoot(ctx, w, t); err != nil {
			return fmt.Errorf("disk %s (%s): %w", t.Plan.Name, t.Disk.Path, err)
		}
	}
	in.placeBootEntry(ctx, w)
	in.progress(ctx, api.Progress{Phase: "done", Message: "installed"})
	return nil
}

// placeBootEntry gives the installed ESP a firmware boot entry first in
// the boot order, the netboot second (installer/efiboot says why). The
// disk is installed and verified either way: a firmware that refuses the
// variables only boots it later (through the gate, after its other
// network entries time out), so this warns and goes on.
func (in *Installer) placeBootEntry(ctx context.Context, w *work) {
	if in.EFIVars == nil {
		return
	}
	e, ok := bootEntry(w)
	if !ok {
		return
	}
	r, err := efiboot.Place(in.EFIVars, e)
	if err != nil {
		fmt.Fprintf(in.Console, "kiln: warning: the firmware's boot order is unchanged (%v): each power-on goes through the gate and the firmware's other boot entries before the disk\n", err)
		in.Log.Warn("firmware boot entry", "err", err)
		return
	}
	fmt.Fprintf(in.Console, "kiln: firmware boot order %s (was %s): Boot%04X %q, then the netboot\n", efiboot.Names(r.After), efiboot.Names(r.Before), r.Number, e.Description)
	in.progress(ctx, api.Progress{Phase: "boot-order", Message: efiboot.Names(r.After)})
}

// bootEntry is the entry for the ESP of the disk written this install.
func bootEntry(w *work) (efiboot.Entry, bool) {
	for _, t := range w.targets {
		if t.Plan.Action != plan.ActionPartition || t.Plan.Layout == nil {
			continue
		}
		for _, p := range t.Plan.Layout.Partitions {
			if p.Content == plan.ContentESP {
				return efiboot.Entry{
					Description: "kiln " + w.manifest.Machine.Name,
					ESP:         p,
					SectorSize:  t.Plan.Layout.SectorSize,
					Loader:      esp.BootloaderEFI,
				}, true
			}
		}
	}
	return efiboot.Entry{}, false
}

func (in *Installer) writeDisk(ctx context.Context, w *work, t disks.Target) error {
	if t.Plan.Action == plan.ActionKeep {
		fmt.Fprintf(in.Console, "kiln: keeping %s (%s) as it is (found %s)\n", t.Plan.Name, t.Disk.Path, cmp.Or(t.Signature, "nothing"))
		return nil
	}
	return withDisk(t, func(f *os.File) error { return in.fillDisk(ctx, w, t, f) })
}

// fillDisk clears t, or partitions it and writes, then reads back, all
// its images but the ESPs'.
func (in *Installer) fillDisk(ctx context.Context, w *work, t disks.Target, f *os.File) error {
	size := int64(t.Disk.Size)
	if t.Plan.Action == plan.ActionClear {
		in.progress(ctx, api.Progress{Phase: "clear", Message: t.Plan.Name})
		fmt.Fprintf(in.Console, "kiln: clearing %s (%s)\n", t.Plan.Name, t.Disk.Path)
		return disklayout.Clear(ctx, f, size)
	}
	for _, p := range bootPartitions(t) {
		// An earlier install's boot loader would boot whatever half of
		// the new root lies beside it.
		fmt.Fprintf(in.Console, "kiln: %s cannot boot until the install is complete: clearing %s's head\n", t.Plan.Name, p.Name)
		if err := disklayout.ClearPartition(ctx, f, p); err != nil {
			return err
		}
	}
	in.progress(ctx, api.Progress{Phase: "partition", Message: t.Plan.Name})
	fmt.Fprintf(in.Console, "kiln: partitioning %s (%s)\n", t.Plan.Name, t.Disk.Path)
	if err := disklayout.Write(ctx, f, size, t.Plan.Layout, w.bootCode); err != nil {
		return err
	}
	rereadPartitions(f)
	var written []plan.Partition
	for _, p := range t.Plan.Layout.Partitions {
		if p.Content == plan.ContentEmpty {
			if err := in.emptyPartition(ctx, f, p, w.manifest.Reinstall); err != nil {
				return err
			}
			continue
		}
		key, ok := contentFile[p.Content]
		if !ok || p.Content == plan.ContentESP {
			continue
		}
		if err := in.writePartition(ctx, f, p, key, w.manifest.Files[key]); err != nil {
			return err
		}
		written = append(written, p)
	}
	if err := disklayout.DropCaches(f); err != nil {
		return err
	}
	for _, p := range written {
		file := w.manifest.Files[contentFile[p.Content]]
		in.progress(ctx, api.Progress{Phase: "verify", Message: p.Name, Total: file.Size})
		fmt.Fprintf(in.Console, "kiln: verifying %s\n", p.Name)
		if err := disklayout.VerifyPartition(ctx, f, p, file.Size, file.SHA256); err != nil {
			return err
		}
	}
	return nil
}

// writeBoot writes the ESPs of t, the install's last writes: the
// firmware can boot the disk from the moment an ESP's head is on it.
func (in *Installer) writeBoot(ctx context.Context, w *work, t disks.Target) error {
	parts := bootPartitions(t)
	if len(parts) == 0 {
		return nil
	}
	return withDisk(t, func(f *os.File) error {
		for _, p := range parts {
			if err := in.writeESP(ctx, w, t, p, f); err != nil {
				return err
			}
		}
		return nil
	})
}

// writeESP streams ESP p into place with WriteBootImage.
func (in *Installer) writeESP(ctx context.Context, w *work, t disks.Target, p plan.Partition, f *os.File) error {
	key := contentFile[p.Content]
	file := w.manifest.Files[key]
	body, err := in.Gate.Open(ctx, file)
	if err != nil {
		return err
	}
	defer body.Close()
	if err := disklayout.WriteBootImage(ctx, f, p, in.meter(ctx, body, "write-"+key, p, file.Size), file.Size, file.SHA256); err != nil {
		return fmt.Errorf("%s: %w", file.Path, err)
	}
	in.progress(ctx, api.Progress{Phase: "verify", Message: p.Name, Total: file.Size})
	fmt.Fprintf(in.Console, "kiln: %s written and read back, its head last: %s can boot\n", p.Name, t.Plan.Name)
	return nil
}

// bootPartitions are the partitions of t the firmware boots from.
func bootPartitions(t disks.Target) []plan.Partition {
	if t.Plan.Action != plan.ActionPartition || t.Plan.Layout == nil {
		return nil
	}
	var out []plan.Partition
	for _, p := range t.Plan.Layout.Partitions {
		if p.Content == plan.ContentESP {
			out = append(out, p)
		}
	}
	return out
}

// withDisk runs fn on t's device opened for writing, then closes it. O_EXCL
// on a block device fails while it is mounted or in use.
func withDisk(t disks.Target, fn func(*os.File) error) (err error) {
	f, err := os.OpenFile(t.Disk.Path, os.O_RDWR|os.O_EXCL, 0)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	return fn(f)
}

// emptyPartition blanks a partition left for the role (an OSD's) at the
// first install, and leaves it alone, byte for byte, on a reinstall: it
// holds the lab's data, which outlives the machine's OS.
func (in *Installer) emptyPartition(ctx context.Context, dev *os.File, p plan.Partition, reinstall bool) error {
	if reinstall {
		fmt.Fprintf(in.Console, "kiln: keeping partition %s as it is\n", p.Name)
		return nil
	}
	fmt.Fprintf(in.Console, "kiln: clearing partition %s\n", p.Name)
	return disklayout.ClearPartition(ctx, dev, p)
}

// writePartition streams one image from the gate into its partition.
// fillDisk then reads it back against the manifest's hash, before any
// ESP is written.
func (in *Installer) writePartition(ctx context.Context, dev *os.File, p plan.Partition, key string, file bundle.File) error {
	body, err := in.Gate.Open(ctx, file)
	if err != nil {
		return err
	}
	defer body.Close()
	r := in.meter(ctx, body, "write-"+key, p, file.Size)
	return disklayout.WriteImage(ctx, dev, p, r, file.Size)
}

// meter reports the progress of streaming body into p, every Step bytes.
func (in *Installer) meter(ctx context.Context, body io.Reader, phase string, p plan.Partition, total int64) io.Reader {
	step := in.Step
	if step <= 0 {
		step = 32 << 20
	}
	return &meter{r: body, total: total, step: step, report: func(done int64) {
		in.progress(ctx, api.Progress{Phase: phase, Message: p.Name, Done: done, Total: total})
		fmt.Fprintf(in.Console, "kiln: %s %s %d/%d MiB\n", phase, p.Name, done>>20, total>>20)
	}}
}

// meter counts bytes read and reports every step bytes and at the end; by
// bytes, not time, so that tests see the same reports every run.
type meter struct {
	r      io.Reader
	total  int64
	step   int64
	done   int64
	last   int64
	report func(done int64)
}

func (m *meter) Read(b []byte) (int, error) {
	n, err := m.r.Read(b)
	m.done += int64(n)
	if m.done-m.last >= m.step || (m.done == m.total && m.last != m.done) {
		m.last = m.done
		m.report(m.done)
	}
	return n, err
}

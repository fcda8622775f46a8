package flash

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The rules kiln flash refuses a DEVICE by. Each refusal is a *Refusal
// wrapping one of these, so callers and tests can ask errors.Is.
var (
	ErrNotBlockDevice = errors.New("not a block device")
	ErrPartition      = errors.New("a partition, not a whole disk")
	ErrSystemDisk     = errors.New("the running system's disk")
	ErrMounted        = errors.New("mounted")
	ErrInUse          = errors.New("in use")
	ErrNotRemovable   = errors.New("not removable")
	ErrTooSmall       = errors.New("too small")
)

// Refusal is one rule that stops a flash before anything is written.
type Refusal struct {
	Device string
	Rule   error // one of the Err* rules above
	Detail string
}

func (r *Refusal) Error() string {
	return fmt.Sprintf("refusing %s (rule: %v): %s", r.Device, r.Rule, r.Detail)
}

func (r *Refusal) Unwrap() error { return r.Rule }

// Host is where kiln flash looks at the running system: the roots of
// procfs, sysfs and devtmpfs ("" means /proc, /sys and /dev). Tests point
// them at fake trees, so every refusal is tested without root.
type Host struct {
	Proc, Sys, Dev string
}

func (h Host) proc(p ...string) string {
	return filepath.Join(append([]string{or(h.Proc, "/proc")}, p...)...)
}
func (h Host) sys(p ...string) string {
	return filepath.Join(append([]string{or(h.Sys, "/sys")}, p...)...)
}
func (h Host) dev() string { return or(h.Dev, "/dev") }

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Kind is what DEVICE is on the file system.
type Kind int

const (
	KindOther Kind = iota
	KindBlock
	KindRegular
)

// DevNum is a device number as /proc/self/mountinfo and sysfs print it.
type DevNum struct{ Major, Minor uint32 }

func (d DevNum) String() string { return fmt.Sprintf("%d:%d", d.Major, d.Minor) }

// Target is DEVICE as Inspect found it.
type Target struct {
	Path string
	Kind Kind
	Mode fs.FileMode
	Dev  DevNum      // block devices: the device number
	Info fs.FileInfo // regular files: for os.SameFile
}

// Inspect stats path (following symlinks such as /dev/disk/by-id/...).
// A path that does not exist is an error: kiln flash never creates DEVICE.
func Inspect(path string) (Target, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Target{}, fmt.Errorf("device: %w", err)
	}
	t := Target{Path: path, Mode: fi.Mode(), Info: fi}
	switch {
	case fi.Mode()&fs.ModeDevice != 0 && fi.Mode()&fs.ModeCharDevice == 0:
		t.Kind = KindBlock
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			t.Dev = DevNum{unix.Major(st.Rdev), unix.Minor(st.Rdev)}
		}
	case fi.Mode().IsRegular():
		t.Kind = KindRegular
	}
	return t, nil
}

// Disk is the whole disk a block-device Target names, as sysfs describes it.
type Disk struct {
	Name      string // kernel name: sdb, mmcblk0, loop3
	Size      int64  // bytes
	Removable bool   // removable=1, or an SD card in an MMC slot
	Model     string // vendor and model when sysfs has them
}

// Check applies every rule to t for an image of need bytes and returns the
// disk (nil for a regular file) or all the refusals that apply, joined.
// force lifts only the removable rule and lets a regular file be written.
func (h Host) Check(t Target, need int64, force bool) (*Disk, error) {
	switch t.Kind {
	case KindRegular:
		return nil, h.checkFile(t, force)
	case KindBlock:
		return h.checkBlock(t, need, force)
	}
	return nil, &Refusal{t.Path, ErrNotBlockDevice, fmt.Sprintf("it is a %v, neither a disk nor a regular file", t.Mode.Type())}
}

// checkFile allows a regular file only with force, and never one that
// backs a loop device (writing under a mounted loop device corrupts it).
func (h Host) checkFile(t Target, force bool) error {
	var errs []error
	if !force {
		errs = append(errs, &Refusal{t.Path, ErrNotBlockDevice, "it is a regular file; pass --force to write an image file"})
	}
	loops, _ := filepath.Glob(h.sys("block", "loop*", "loop", "backing_file"))
	for _, bf := range loops {
		b, err := os.ReadFile(bf)
		if err != nil {
			continue
		}
		fi, err := os.Stat(strings.TrimSpace(string(b)))
		if err == nil && os.SameFile(fi, t.Info) {
			loop := filepath.Base(filepath.Dir(filepath.Dir(bf)))
			errs = append(errs, &Refusal{t.Path, ErrInUse, "it is the backing file of /dev/" + loop + "; detach it first (losetup -d /dev/" + loop + ")"})
		}
	}
	return errors.Join(errs...)
}

func (h Host) checkBlock(t Target, need int64, force bool) (*Disk, error) {
	name, err := h.nameOf(t.Dev)
	if err != nil {
		return nil, err
	}
	if h.exists("class", "block", name, "partition") {
		return nil, &Refusal{t.Path, ErrPartition, fmt.Sprintf("%s is a partition of /dev/%s; name the whole disk", name, h.parentOf(name))}
	}
	d, err := h.disk(name)
	if err != nil {
		return nil, err
	}
	members, err := h.members(name)
	if err != nil {
		return nil, err
	}
	mounts, err := readMountinfo(h.proc("self", "mountinfo"))
	if err != nil {
		return nil, err
	}
	swaps, err := readSwaps(h.proc("swaps"))
	if err != nil {
		return nil, err
	}
	errs := h.systemRefusals(t.Path, members, mounts, swaps)
	if len(errs) == 0 {
		errs = h.useRefusals(t.Path, name, members, mounts)
	}
	if !d.Removable && !force {
		errs = append(errs, &Refusal{t.Path, ErrNotRemovable, fmt.Sprintf(
			"/sys/block/%s/removable is 0 (%s); if this really is the card to flash, check with lsblk and pass --force", name, d.describe())})
	}
	if d.Size < need {
		errs = append(errs, &Refusal{t.Path, ErrTooSmall, fmt.Sprintf(
			"it has %s (%d bytes), the image needs %s (%d bytes)", humanBytes(d.Size), d.Size, humanBytes(need), need)})
	}
	return d, errors.Join(errs...)
}

// systemRefusals names the mounts of /, /boot and the swap areas that live
// on the disk: the disk the running system lives on.
func (h Host) systemRefusals(path string, members map[string]DevNum, mounts []mount, swaps []swap) []error {
	var why []string
	for _, m := range mounts {
		switch m.point {
		case "/", "/boot", "/boot/efi", "/usr":
			if n := h.memberOf(m, members); n != "" {
				why = append(why, fmt.Sprintf("%s holds %s", n, m.point))
			}
		}
	}
	for _, s := range swaps {
		if s.file {
			if m, ok := mountOf(mounts, s.path); ok {
				if n := h.memberOf(m, members); n != "" {
					why = append(why, fmt.Sprintf("%s holds the swap file %s", n, s.path))
				}
			}
			continue
		}
		if n := h.blockName(s.path); n != "" {
			if _, ok := members[n]; ok {
				why = append(why, fmt.Sprintf("%s is swap", n))
			}
		}
	}
	if len(why) == 0 {
		return nil
	}
	return []error{&Refusal{path, ErrSystemDisk, "the running system lives on it: " + strings.Join(why, ", ")}}
}

// useRefusals names every mount of the disk, its partitions and whatever
// holds them (device-mapper, md), and every holder.
func (h Host) useRefusals(path, disk string, members map[string]DevNum, mounts []mount) []error {
	var mounted []string
	for _, m := range mounts {
		if n := h.memberOf(m, members); n != "" {
			mounted = append(mounted, fmt.Sprintf("%s at %s", n, m.point))
		}
	}
	var errs []error
	if len(mounted) > 0 {
		errs = append(errs, &Refusal{path, ErrMounted, strings.Join(mounted, ", ") + "; unmount first (umount MOUNTPOINT)"})
	}
	var held []string
	for n := range members {
		if n != disk && !h.exists("class", "block", n, "partition") {
			held = append(held, n)
		}
	}
	if len(held) > 0 {
		slices.Sort(held)
		errs = append(errs, &Refusal{path, ErrInUse, "held by " + strings.Join(held, ", ") + " (device-mapper, LVM or RAID); stop them first"})
	}
	return errs
}

// memberOf returns the member m is mounted from, by device number or, for
// file systems with anonymous device numbers (btrfs), by source path.
func (h Host) memberOf(m mount, members map[string]DevNum) string {
	for n, d := range members {
		if d == m.dev {
			return n
		}
	}
	if n := h.blockName(m.source); n != "" {
		if _, ok := members[n]; ok {
			return n
		}
	}
	return ""
}

// nameOf is the kernel name of the block device d.
func (h Host) nameOf(d DevNum) (string, error) {
	p, err := filepath.EvalSymlinks(h.sys("dev", "block", d.String()))
	if err != nil {
		return "", fmt.Errorf("block device %v is not in sysfs: %w", d, err)
	}
	return filepath.Base(p), nil
}

// parentOf is the disk a partition belongs to (its sysfs parent directory).
func (h Host) parentOf(part string) string {
	p, err := filepath.EvalSymlinks(h.sys("class", "block", part))
	if err != nil {
		return "?"
	}
	return filepath.Base(filepath.Dir(p))
}

func (h Host) disk(name string) (*Disk, error) {
	sectors, err := h.readInt("block", name, "size")
	if err != nil {
		return nil, err
	}
	d := &Disk{Name: name, Size: sectors * 512} // sysfs counts 512-byte units
	rem, _ := h.read("block", name, "removable")
	typ, _ := h.read("block", name, "device", "type")
	// Built-in SD slots (mmcblk) say removable=0, but their "SD" type is
	// the card itself; eMMC says "MMC" and stays refused.
	d.Removable = rem == "1" || typ == "SD"
	vendor, _ := h.read("block", name, "device", "vendor")
	model, _ := h.read("block", name, "device", "model")
	if model == "" {
		model, _ = h.read("block", name, "device", "name") // mmc
	}
	d.Model = strings.TrimSpace(vendor + " " + model)
	return d, nil
}

func (d *Disk) describe() string {
	s := "/dev/" + d.Name
	if d.Model != "" {
		s += " " + d.Model
	}
	return s + ", " + humanBytes(d.Size)
}

// members is the disk, its partitions and, transitively, every device that
// holds one of them (dm, md), by kernel name.
func (h Host) members(disk string) (map[string]DevNum, error) {
	names := []string{disk}
	dir, err := filepath.EvalSymlinks(h.sys("class", "block", disk))
	if err != nil {
		return nil, fmt.Errorf("sysfs: %w", err)
	}
	parts, _ := filepath.Glob(filepath.Join(dir, "*", "partition"))
	for _, p := range parts {
		names = append(names, filepath.Base(filepath.Dir(p)))
	}
	out := map[string]DevNum{}
	for len(names) > 0 {
		n := names[0]
		names = names[1:]
		if _, seen := out[n]; seen {
			continue
		}
		d, err := h.devNum(n)
		if err != nil {
			return nil, err
		}
		out[n] = d
		holders, _ := os.ReadDir(h.sys("class", "block", n, "holders"))
		for _, e := range holders {
			names = append(names, e.Name())
		}
	}
	return out, nil
}

func (h Host) devNum(name string) (DevNum, error) {
	s, err := h.read("class", "block", name, "dev")
	if err != nil {
		return DevNum{}, err
	}
	return parseDevNum(s)
}

func parseDevNum(s string) (DevNum, error) {
	a, b, ok := strings.Cut(s, ":")
	ma, err1 := strconv.ParseUint(a, 10, 32)
	mi, err2 := strconv.ParseUint(b, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return DevNum{}, fmt.Errorf("bad device number %q", s)
	}
	return DevNum{uint32(ma), uint32(mi)}, nil
}

// blockName is the kernel name of the block device at path (/dev/sdb1,
// /dev/mapper/x, /dev/disk/by-uuid/...), or "" when path names none.
func (h Host) blockName(path string) string {
	rel, ok := strings.CutPrefix(path, "/dev/")
	if !ok {
		return ""
	}
	p := filepath.Join(h.dev(), rel)
	for range 8 { // follow links without needing their targets to exist
		l, err := os.Readlink(p)
		if err != nil {
			break
		}
		if !filepath.IsAbs(l) {
			l = filepath.Join(filepath.Dir(p), l)
		}
		p = l
	}
	n := filepath.Base(p)
	if !h.exists("class", "block", n) {
		return ""
	}
	return n
}

func (h Host) read(p ...string) (string, error) {
	b, err := os.ReadFile(h.sys(p...))
	if err != nil {
		return "", fmt.Errorf("sysfs: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func (h Host) readInt(p ...string) (int64, error) {
	s, err := h.read(p...)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("sysfs %s: %w", filepath.Join(p...), err)
	}
	return n, nil
}

func (h Host) exists(p ...string) bool {
	_, err := os.Stat(h.sys(p...))
	return err == nil
}

// Package disks owns finding the planned disks on a machine: it enumerates
// whole block devices from sysfs, reads their stable identities (serial,
// WWN) and sizes, matches each planned disk by serial or WWN (never by
// /dev order or size), and refuses, before anything is written, a disk that
// is missing, ambiguous, too small, or not blank when the plan may not wipe
// it. The sysfs and /dev roots are injectable so that tests run on a fake
// tree with regular files standing in for disks.
package disks

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Sentinel errors: the installer turns any of them into a refusal.
var (
	ErrDiskMissing   = errors.New("disk not found")
	ErrAmbiguousDisk = errors.New("disk selector matches more than one disk")
	ErrDiskNotBlank  = errors.New("disk is not blank and the plan does not allow wiping it")
	ErrDiskTooSmall  = errors.New("disk is smaller than the plan")
	ErrNoSelector    = errors.New("planned disk has neither serial nor wwn")
)

// Disk is one whole block device as the kernel reports it.
type Disk struct {
	Name   string // kernel name, e.g. "sda", "vda", "nvme0n1"
	Path   string // device node, e.g. /dev/sda
	Serial string
	WWN    string
	Size   uint64 // bytes
}

// System is where disks are looked up.
type System struct {
	SysRoot string // "/sys" on a real machine
	DevRoot string // "/dev" on a real machine
}

// Host is the running system's disks: /sys and /dev.
func Host() System { return System{SysRoot: "/sys", DevRoot: "/dev"} }

// skipPrefixes are kernel names of block devices that are never install
// targets: loop, RAM and optical devices, zram, device-mapper and md.
var skipPrefixes = []string{"loop", "ram", "sr", "zram", "dm-", "md", "nbd", "fd"}

// List returns the whole disks under SysRoot/block, sorted by name.
// Partitions never appear there (they live below their disk), so only
// virtual and removable-media kinds are filtered.
func (s System) List() ([]Disk, error) {
	ents, err := os.ReadDir(filepath.Join(s.SysRoot, "block"))
	if err != nil {
		return nil, fmt.Errorf("list block devices: %w", err)
	}
	var out []Disk
	for _, e := range ents {
		if skipped(e.Name()) {
			continue
		}
		d, err := s.read(e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func skipped(name string) bool {
	for _, p := range skipPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	// A partition listed directly (some fake or odd trees) has a
	// "partition" attribute; real /sys/block has disks only.
	return false
}

func (s System) read(name string) (Disk, error) {
	dir := filepath.Join(s.SysRoot, "block", name)
	if _, err := os.Stat(filepath.Join(dir, "partition")); err == nil {
		return Disk{}, fmt.Errorf("%s: is a partition, not a disk", name)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "size"))
	if err != nil {
		return Disk{}, fmt.Errorf("%s: read size: %w", name, err)
	}
	sectors, err := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil {
		return Disk{}, fmt.Errorf("%s: parse size: %w", name, err)
	}
	return Disk{
		Name: name,
		Path: filepath.Join(s.DevRoot, name),
		// sysfs sizes count 512-byte sectors whatever the logical
		// sector size of the device.
		Size:   sectors * 512,
		Serial: readSerial(dir),
		WWN:    readWWN(dir),
	}, nil
}

// readSerial tries, in order: virtio-blk's serial, the device's serial
// attribute (NVMe, some SCSI/USB), and the SCSI VPD page 0x80.
func readSerial(dir string) string {
	for _, p := range []string{"serial", "device/serial"} {
		if v := readAttr(filepath.Join(dir, p)); v != "" {
			return v
		}
	}
	return vpdSerial(filepath.Join(dir, "device/vpd_pg80"))
}

// vpdSerial decodes a VPD page 0x80 (unit serial number): a 4-byte header
// whose last two bytes are the page length, then the ASCII serial.
func vpdSerial(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 4 || b[1] != 0x80 {
		return ""
	}
	n := int(b[2])<<8 | int(b[3])
	b = b[4:]
	if n < len(b) {
		b = b[:n]
	}
	return strings.TrimSpace(strings.TrimRight(string(b), "\x00"))
}

func readWWN(dir string) string {
	for _, p := range []string{"wwid", "device/wwid"} {
		if v := readAttr(filepath.Join(dir, p)); v != "" {
			return v
		}
	}
	return ""
}

func readAttr(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(strings.TrimRight(string(b), "\x00"))
}

// NormalizeWWN makes the profile's form (0x5000c500a1b2c3d4) and the
// kernel's (naa.5000c500a1b2c3d4, eui.…) comparable.
func NormalizeWWN(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	for _, p := range []string{"naa.", "eui.", "0x"} {
		s = strings.TrimPrefix(s, p)
	}
	return s
}

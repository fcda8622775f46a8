package firstboot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/kilnlab/kiln/installer/disks"
	"github.com/kilnlab/kiln/roles"
)

// OSD devices are found by what the plan names them by, never by /dev
// order, and checked before anything touches them; a device that fails a
// check is refused with nothing run:
//
//   - The disk (whole, or the one that holds the data partition) is the one
//     disk whose serial or WWN, as the kernel reports it in sysfs, is the
//     plan's: the installer's own rule (installer/disks), which picked and
//     cleared or partitioned that very disk. It must be at least as large as
//     planned. udev's /dev/disk/by-id names are not used to find it: they
//     carry the bus and model (ata-MODEL_SERIAL, virtio-SERIAL, nvme-...),
//     which the profile does not know.
//   - A whole-disk OSD must have no partitions: the installer left it with
//     none, so partitions mean another disk, e.g. one that holds the system.
//   - The data partition is found by its PARTUUID, /dev/disk/by-partuuid/
//     (udev's reading of the GPT entry), and must then be, in the kernel's
//     own view, a partition of that disk with the planned number, GPT name,
//     start and size. (Linux 6.1 does not show a partition's PARTUUID in
//     sysfs; the link is the PARTUUID check and the rest must agree.)
//
// Then ceph-volume lvm list says whether the device already holds an OSD:
// this cluster's is kept (and activated if it is not running), another
// cluster's is refused, as kiln never destroys an OSD. ceph-volume lvm
// create runs only on a device that holds none. A power cut inside lvm
// create can leave a half-made volume group that ceph-volume cannot resume
// and refuses to reuse; the task then fails and says so, and a person
// zaps the device (ceph-volume lvm zap --destroy DEV).

// errRefused marks a device that is not the planned one.
var errRefused = errors.New("not the planned device")

// osd makes, once, an OSD on the planned device d.
func (s *node) osd(ctx context.Context, d roles.OSDDevice) error {
	dev, err := s.osdDevice(d)
	if err != nil {
		return fmt.Errorf("disk %s: %w: %w", d.Disk, errRefused, err)
	}
	fsid, err := s.fsid()
	if err != nil {
		return err
	}
	out, err := s.run(ctx, "ceph-volume", "lvm", "list", "--format", "json")
	if err != nil {
		return err
	}
	var osds map[string][]struct {
		Type    string            `json:"type"`
		Devices []string          `json:"devices"`
		Tags    map[string]string `json:"tags"`
	}
	if err := json.Unmarshal(out, &osds); err != nil {
		return fmt.Errorf("ceph-volume lvm list: %w", err)
	}
	ids := make([]string, 0, len(osds))
	for id := range osds {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		for _, v := range osds[id] {
			if v.Type != "block" || !slices.ContainsFunc(v.Devices, func(p string) bool { return s.sameDevice(p, dev) }) {
				continue
			}
			if c := v.Tags["ceph.cluster_fsid"]; !strings.EqualFold(c, fsid) {
				return fmt.Errorf("disk %s: %s holds osd.%s of another Ceph cluster (fsid %s); kiln does not destroy OSDs: zap it by hand (ceph-volume lvm zap --destroy %s) to use it here",
					d.Disk, dev, id, c, dev)
			}
			if _, err := s.run(ctx, "systemctl", "is-active", "--quiet", "ceph-osd@"+id); err == nil {
				s.env.Log.Info("OSD already made and running", "disk", d.Disk, "device", dev, "osd", id)
				return nil
			}
			s.env.Log.Info("OSD already made; activating it", "disk", d.Disk, "device", dev, "osd", id)
			_, err := s.run(ctx, "ceph-volume", "lvm", "activate", "--bluestore", id, v.Tags["ceph.osd_fsid"])
			return err
		}
	}
	s.env.Log.Info("making an OSD", "disk", d.Disk, "device", dev)
	_, err = s.run(ctx, "ceph-volume", "lvm", "create", "--bluestore", "--data", dev)
	return err
}

// osdDevice finds the planned device d and checks it (see above); it
// returns its /dev path.
func (s *node) osdDevice(d roles.OSDDevice) (string, error) {
	disk, err := s.findDisk(d)
	if err != nil {
		return "", err
	}
	sysDisk := "/sys/block/" + disk.Name
	if d.Partition == nil {
		if parts := s.partitions(sysDisk); len(parts) > 0 {
			return "", fmt.Errorf("%s (serial %q wwn %q) has partitions (%s), but the installer left the planned data disk without any",
				"/dev/"+disk.Name, disk.Serial, disk.WWN, strings.Join(parts, ", "))
		}
		return "/dev/" + disk.Name, nil
	}
	p := d.Partition
	link := "/dev/disk/by-partuuid/" + strings.ToLower(p.UUID)
	name, err := s.linkTarget(link)
	if err != nil {
		return "", fmt.Errorf("no partition with PARTUUID %s: %w", p.UUID, err)
	}
	dir := sysDisk + "/" + name
	if !s.exists(dir + "/partition") {
		return "", fmt.Errorf("%s (PARTUUID %s) is not a partition of %s, the disk with serial %q wwn %q", "/dev/"+name, p.UUID, "/dev/"+disk.Name, d.Serial, d.WWN)
	}
	var bad []string
	check := func(what string, got, want any) {
		if got != want {
			bad = append(bad, fmt.Sprintf("%s %v, planned %v", what, got, want))
		}
	}
	check("number", s.sysInt(dir+"/partition"), int64(p.Number))
	check("start", s.sysInt(dir+"/start")*512, int64(p.Start))
	check("size", s.sysInt(dir+"/size")*512, int64(p.Size))
	check("GPT name", s.ueventVar(dir+"/uevent", "PARTNAME"), p.Name)
	if len(bad) > 0 {
		return "", fmt.Errorf("%s (PARTUUID %s) is not the planned partition: %s", "/dev/"+name, p.UUID, strings.Join(bad, "; "))
	}
	return "/dev/" + name, nil
}

// findDisk is the one disk with d's serial or WWN, at least d's size.
func (s *node) findDisk(d roles.OSDDevice) (disks.Disk, error) {
	if d.Serial == "" && d.WWN == "" {
		return disks.Disk{}, errors.New("the plan names it by neither serial nor wwn")
	}
	all, err := disks.System{SysRoot: s.path("/sys"), DevRoot: s.path("/dev")}.List()
	if err != nil {
		return disks.Disk{}, err
	}
	var hits []disks.Disk
	for _, k := range all {
		if d.Serial != "" && k.Serial == d.Serial ||
			d.WWN != "" && k.WWN != "" && disks.NormalizeWWN(k.WWN) == disks.NormalizeWWN(d.WWN) {
			hits = append(hits, k)
		}
	}
	switch len(hits) {
	case 0:
		return disks.Disk{}, fmt.Errorf("no disk with serial %q wwn %q", d.Serial, d.WWN)
	case 1:
	default:
		var names []string
		for _, h := range hits {
			names = append(names, "/dev/"+h.Name)
		}
		return disks.Disk{}, fmt.Errorf("serial %q wwn %q matches %s", d.Serial, d.WWN, strings.Join(names, ", "))
	}
	if hits[0].Size < d.DiskSize {
		return disks.Disk{}, fmt.Errorf("/dev/%s (serial %q wwn %q) has %d bytes, the plan %d", hits[0].Name, d.Serial, d.WWN, hits[0].Size, d.DiskSize)
	}
	return hits[0], nil
}

// partitions are the partitions the kernel knows on the disk at sysDisk.
func (s *node) partitions(sysDisk string) []string {
	ents, _ := os.ReadDir(s.path(sysDisk))
	var out []string
	for _, e := range ents {
		if s.exists(sysDisk + "/" + e.Name() + "/partition") {
			out = append(out, e.Name())
		}
	}
	return out
}

// linkTarget is the name of the /dev node the udev link at p points to
// (udev's links are one level, relative or absolute); it must exist.
func (s *node) linkTarget(p string) (string, error) {
	t, err := os.Readlink(s.path(p))
	if err != nil {
		return "", err
	}
	if !filepath.IsAbs(t) {
		t = filepath.Join(filepath.Dir(p), t)
	}
	t = filepath.Clean(t)
	if filepath.Dir(t) != "/dev" {
		return "", fmt.Errorf("%s points to %s, not a device node", p, t)
	}
	if !s.exists(t) {
		return "", fmt.Errorf("%s points to %s, which does not exist", p, t)
	}
	return filepath.Base(t), nil
}

// sameDevice reports whether the device path p (as LVM reports a physical
// volume, maybe through a link) is dev.
func (s *node) sameDevice(p, dev string) bool {
	if filepath.Clean(p) == dev {
		return true
	}
	if name, err := s.linkTarget(p); err == nil {
		return "/dev/"+name == dev
	}
	return false
}

// sysInt reads a sysfs number; -1 when it cannot.
func (s *node) sysInt(p string) int64 {
	b, err := s.readFile(p)
	if err != nil {
		return -1
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// ueventVar reads one KEY=value of a sysfs uevent file.
func (s *node) ueventVar(p, key string) string {
	b, _ := s.readFile(p)
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && k == key {
			return v
		}
	}
	return ""
}

package bootmode

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Mount is one mount(2) call; Mkdir lists directories made first.
type Mount struct {
	Source string
	Target string
	FSType string
	Flags  uintptr
	Data   string
	Mkdir  []string
}

// StateDir is where the state filesystem is mounted inside the role root
// (the role squashfs ships it as an empty directory).
const StateDir = "kiln/state"

// Mounts is the contract's mount sequence below newRoot: the role squashfs
// read-only, the state ext4 on kiln/state, overlays on /etc and /var
// whose lower layer is the squashfs and upper and work dirs live on the
// state fs (etc/upper, etc/work, var/upper, var/work), and a tmpfs on /tmp.
func Mounts(rootDev, stateDev, newRoot string) []Mount {
	state := filepath.Join(newRoot, StateDir)
	ms := []Mount{
		{Source: rootDev, Target: newRoot, FSType: "squashfs", Flags: unix.MS_RDONLY, Mkdir: []string{newRoot}},
		{Source: stateDev, Target: state, FSType: "ext4", Flags: unix.MS_NOATIME},
	}
	for _, d := range []string{"etc", "var"} {
		upper := filepath.Join(state, d, "upper")
		work := filepath.Join(state, d, "work")
		lower := filepath.Join(newRoot, d)
		ms = append(ms, Mount{
			Source: "overlay", Target: lower, FSType: "overlay",
			Data:  fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work),
			Mkdir: []string{upper, work},
		})
	}
	// /tmp is the read-only squashfs's otherwise: every unit with
	// PrivateTmp= (systemd-timesyncd among them) fails to set up its
	// namespace there, and programs expect to write to it.
	return append(ms, Mount{
		Source: "tmpfs", Target: filepath.Join(newRoot, "tmp"), FSType: "tmpfs",
		Flags: unix.MS_NOSUID | unix.MS_NODEV, Data: "mode=1777",
	})
}

// Apply makes each mount in order; on failure it unmounts what it did, in
// reverse, so that the caller may fall back to a shell on a clean slate.
func Apply(ms []Mount) error {
	for i, m := range ms {
		if err := apply(m); err != nil {
			for j := i - 1; j >= 0; j-- {
				_ = unix.Unmount(ms[j].Target, unix.MNT_DETACH)
			}
			return err
		}
	}
	return nil
}

func apply(m Mount) error {
	for _, d := range m.Mkdir {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", d, err)
		}
	}
	if err := unix.Mount(m.Source, m.Target, m.FSType, m.Flags, m.Data); err != nil {
		return fmt.Errorf("mount %s (%s) on %s: %w", m.Source, m.FSType, m.Target, err)
	}
	return nil
}

// PseudoFS mounts /proc, /sys and /dev (devtmpfs) for a PID 1 that the
// kernel started straight from the initramfs. Already mounted is fine.
func PseudoFS(root string) error {
	var errs []error
	for _, m := range []Mount{
		{Source: "proc", Target: filepath.Join(root, "proc"), FSType: "proc", Flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{Source: "sysfs", Target: filepath.Join(root, "sys"), FSType: "sysfs", Flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{Source: "devtmpfs", Target: filepath.Join(root, "dev"), FSType: "devtmpfs", Flags: unix.MS_NOSUID, Data: "mode=0755"},
	} {
		m.Mkdir = []string{m.Target}
		if err := apply(m); err != nil && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

package appliance

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kilnlab/kiln/image/gateimg"
)

// ErrNotFound means no block device has the wanted PARTUUID (yet).
var ErrNotFound = errors.New("partition not found")

// ErrCmdline means /proc/cmdline lacks a kiln.payload= or kiln.perm= the
// gate needs: the image's cmdline.txt is wrong, retrying cannot help.
var ErrCmdline = errors.New("kernel command line")

// partUUIDArg returns the PARTUUID of key=PARTUUID=xxxxxxxx-nn on cmdline.
func partUUIDArg(cmdline, key string) (string, error) {
	for _, f := range strings.Fields(cmdline) {
		v, ok := strings.CutPrefix(f, key+"=")
		if !ok {
			continue
		}
		u, ok := strings.CutPrefix(v, "PARTUUID=")
		if !ok || u == "" {
			return "", fmt.Errorf("%w: %s: want %s=PARTUUID=<id>", ErrCmdline, f, key)
		}
		return strings.ToLower(u), nil
	}
	return "", fmt.Errorf("%w: no %s=PARTUUID=<id>", ErrCmdline, key)
}

// uevent is one /sys/class/block/<dev>/uevent.
type uevent struct {
	Major, Minor uint32
	DevName      string
	DevType      string // "disk" or "partition"
	PartN        int
	PartUUID     string // only kernels >= 6.11 say it
}

func parseUevent(r io.Reader) (uevent, error) {
	var u uevent
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		var err error
		switch k {
		case "MAJOR":
			u.Major, err = parseUint32(v)
		case "MINOR":
			u.Minor, err = parseUint32(v)
		case "DEVNAME":
			u.DevName = v
		case "DEVTYPE":
			u.DevType = v
		case "PARTN":
			u.PartN, err = strconv.Atoi(v)
		case "PARTUUID":
			u.PartUUID = strings.ToLower(v)
		}
		if err != nil {
			return u, fmt.Errorf("uevent %s: %w", k, err)
		}
	}
	if u.DevName == "" || strings.Contains(u.DevName, "..") {
		return u, errors.New("uevent: no usable DEVNAME")
	}
	return u, sc.Err()
}

func parseUint32(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 10, 32)
	return uint32(v), err
}

// blockFinder finds partitions below root (sysfs at root/sys, nodes at
// root/dev), making device nodes that devtmpfs lacks.
type blockFinder struct {
	root string
	sys  System
}

// find returns the device node of the partition with that PARTUUID. Few
// kernels put PARTUUID in a partition's uevent (not Debian's 6.1, nor any
// for partitions added from user space), so it is also computed as the
// kernel does for an MBR: "%08x-%02x" of the disk signature (offset 440,
// little endian) and the partition number.
func (b blockFinder) find(partuuid string) (string, error) {
	class := filepath.Join(b.root, "sys/class/block")
	ents, err := os.ReadDir(class)
	if err != nil {
		return "", err
	}
	sigs := map[string]string{} // disk name -> signature, or "" if unreadable
	for _, e := range ents {
		u, err := b.uevent(e.Name())
		if err != nil || u.DevType != "partition" {
			continue
		}
		id := u.PartUUID
		if id == "" {
			disk, err := parentDisk(class, e.Name())
			if err != nil {
				continue
			}
			sig, ok := sigs[disk]
			if !ok {
				sig = b.mbrSignature(disk)
				sigs[disk] = sig
			}
			if sig == "" {
				continue
			}
			id = fmt.Sprintf("%s-%02x", sig, u.PartN)
		}
		if strings.EqualFold(id, partuuid) {
			return b.node(u)
		}
	}
	return "", fmt.Errorf("PARTUUID=%s: %w", partuuid, ErrNotFound)
}

func (b blockFinder) uevent(name string) (uevent, error) {
	f, err := os.Open(filepath.Join(b.root, "sys/class/block", name, "uevent"))
	if err != nil {
		return uevent{}, err
	}
	defer f.Close()
	return parseUevent(f)
}

// parentDisk: /sys/class/block/mmcblk0p3 links to .../block/mmcblk0/mmcblk0p3.
func parentDisk(class, name string) (string, error) {
	p, err := filepath.EvalSymlinks(filepath.Join(class, name))
	if err != nil {
		return "", err
	}
	return filepath.Base(filepath.Dir(p)), nil
}

// mbrSignature reads the disk's MBR; "" when it is not a plain MBR (no
// 0x55AA, or a GPT's protective MBR whose PARTUUIDs are GUIDs).
func (b blockFinder) mbrSignature(disk string) string {
	u, err := b.uevent(disk)
	if err != nil {
		return ""
	}
	node, err := b.node(u)
	if err != nil {
		return ""
	}
	f, err := os.Open(node)
	if err != nil {
		return ""
	}
	defer f.Close()
	var s [512]byte
	if _, err := io.ReadFull(f, s[:]); err != nil {
		return ""
	}
	m, ok := gateimg.ParseMBR(s[:])
	if !ok || m.Entries[0].Type == gateimg.TypeGPTProtective {
		return ""
	}
	return fmt.Sprintf("%08x", m.Signature)
}

// node returns /dev/DEVNAME, making it from MAJOR:MINOR when missing.
func (b blockFinder) node(u uevent) (string, error) {
	p := filepath.Join(b.root, "dev", u.DevName)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	if err := b.sys.Mknod(p, u.Major, u.Minor); err != nil {
		return "", err
	}
	return p, nil
}

// wait retries find every `every` until the partition appears or ctx
// ends: the SD/virtio driver probes after its module loads.
func (b blockFinder) wait(ctx context.Context, partuuid string, every time.Duration) (string, error) {
	for {
		node, err := b.find(partuuid)
		if !errors.Is(err, ErrNotFound) {
			return node, err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w (gave up waiting: %w)", err, context.Cause(ctx))
		case <-time.After(every):
		}
	}
}

// Command guest is the init of package diskwrite's VM (amd64, PID 1). It
// loads the modules its initramfs carries, finds three virtio disks by the
// serials kiln.bench.image, kiln.bench.kiln and kiln.bench.dd name (the
// image to write, and two blank targets of the same kind),
// then, kiln.bench.rounds times, writes the image's first kiln.bench.size
// bytes 1 MiB into each target: once through the installer's own writer
// (disklayout.WriteImage: 4 MiB chunks read one ahead, sync at the end)
// and once with Debian's dd (bs=4M, conv=fsync), the first of the two
// alternating. The installer's read-back check (VerifyPartition, a read
// and a SHA-256 of the partition) is timed apart. Caches are dropped before each write, so both read the
// image from its disk. Each write prints
//
//	KILN-DISKWRITE side=kiln round=1 bytes=N seconds=S
//
// and at the end both targets are read back against the image, the
// guest's SHA-256 speed is printed (KILN-DISKWRITE-SHA256 MiBps=X), then
// KILN-DISKWRITE-OK (or KILN-DISKWRITE-FAILED with the reason), and the
// VM powers off.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kilnlab/kiln/image/disklayout"
	"github.com/kilnlab/kiln/image/initramfs/kmod"
	"github.com/kilnlab/kiln/plan"
)

// offset is where both writes start on their disk: a partition's usual
// first byte.
const offset = 1 << 20

func main() {
	if err := run(); err != nil {
		fmt.Printf("KILN-DISKWRITE-FAILED %v\n", err)
	}
	syscall.Sync()
	_ = syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	for {
		time.Sleep(time.Hour)
	}
}

func run() error {
	for _, m := range []struct{ fs, dir string }{{"proc", "/proc"}, {"sysfs", "/sys"}, {"devtmpfs", "/dev"}} {
		_ = os.MkdirAll(m.dir, 0o755)
		if err := syscall.Mount(m.fs, m.dir, m.fs, 0, ""); err != nil && err != syscall.EBUSY {
			return fmt.Errorf("mount %s: %w", m.dir, err)
		}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if dir, err := kmod.Dir("/"); err == nil {
		if _, err := (kmod.Loader{Dir: dir, Log: log}).LoadAll(); err != nil {
			return fmt.Errorf("modules: %w", err)
		}
	}
	line, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return err
	}
	param := func(name string) string {
		for _, f := range strings.Fields(string(line)) {
			if v, ok := strings.CutPrefix(f, name+"="); ok {
				return v
			}
		}
		return ""
	}
	size, err := strconv.ParseInt(param("kiln.bench.size"), 10, 64)
	if err != nil || size <= 0 {
		return fmt.Errorf("kiln.bench.size=%q: want a byte count", param("kiln.bench.size"))
	}
	rounds, err := strconv.Atoi(param("kiln.bench.rounds"))
	if err != nil || rounds <= 0 {
		return fmt.Errorf("kiln.bench.rounds=%q: want a count", param("kiln.bench.rounds"))
	}
	devs := map[string]string{}
	for _, d := range []string{"image", "kiln", "dd"} {
		if devs[d], err = bySerial(param("kiln.bench."+d), 30*time.Second); err != nil {
			return err
		}
	}
	if err := dropCaches(); err != nil {
		return err
	}
	want, err := sum(devs["image"], 0, size)
	if err != nil {
		return err
	}
	for r := 1; r <= rounds; r++ {
		sides := []string{"kiln", "dd"}
		if r%2 == 0 {
			sides = []string{"dd", "kiln"}
		}
		for _, side := range sides {
			if err := dropCaches(); err != nil {
				return err
			}
			start := time.Now()
			if side == "dd" {
				if err := writeDD(devs["image"], devs["dd"], size); err != nil {
					return fmt.Errorf("dd round %d: %w", r, err)
				}
				report(side, r, size, start)
				continue
			}
			p := plan.Partition{Number: 1, Name: "bench", Start: offset, Size: uint64(size)}
			if err := writeKiln(devs["image"], devs["kiln"], p, size); err != nil {
				return fmt.Errorf("kiln round %d: %w", r, err)
			}
			report("kiln", r, size, start)
			// The installer's read-back check, after the page cache is
			// dropped as the installer drops it.
			if err := verifyKiln(devs["kiln"], p, size, hex.EncodeToString(want)); err != nil {
				return fmt.Errorf("kiln round %d: %w", r, err)
			}
			report("kiln-verified", r, size, start)
		}
	}
	if err := dropCaches(); err != nil {
		return err
	}
	for _, side := range []string{"kiln", "dd"} {
		got, err := sum(devs[side], offset, size)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("%s's disk %s holds other bytes than the image", side, devs[side])
		}
	}
	// What the guest's CPU hashes alone: the installer's read-back check
	// cannot be faster (under TCG the emulated CPU is the limit).
	buf := make([]byte, 64<<20)
	start := time.Now()
	sha256.Sum256(buf)
	fmt.Printf("KILN-DISKWRITE-SHA256 MiBps=%.1f\n", 64/time.Since(start).Seconds())
	fmt.Println("KILN-DISKWRITE-OK")
	return nil
}

func report(side string, round int, size int64, start time.Time) {
	fmt.Printf("KILN-DISKWRITE side=%s round=%d bytes=%d seconds=%.3f\n", side, round, size, time.Since(start).Seconds())
}

// writeKiln is the installer's write of one partition image: the same
// function, on the device opened as the installer opens it.
func writeKiln(image, dev string, p plan.Partition, size int64) error {
	src, err := os.Open(image)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(dev, os.O_RDWR|os.O_EXCL, 0)
	if err != nil {
		return err
	}
	err = disklayout.WriteImage(context.Background(), dst, p, src, size)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	return err
}

// verifyKiln is the installer's read-back check of a written partition.
func verifyKiln(dev string, p plan.Partition, size int64, sum string) error {
	f, err := os.OpenFile(dev, os.O_RDWR|os.O_EXCL, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := disklayout.DropCaches(f); err != nil {
		return err
	}
	return disklayout.VerifyPartition(context.Background(), f, p, size, sum)
}

// writeDD is what a user would type.
func writeDD(image, dev string, size int64) error {
	out, err := exec.Command("/usr/bin/dd", "if="+image, "of="+dev, "bs=4M",
		"count="+strconv.FormatInt(size, 10), "iflag=count_bytes",
		"seek="+strconv.Itoa(offset), "oflag=seek_bytes", "conv=fsync,notrunc", "status=none").CombinedOutput()
	if err != nil {
		return fmt.Errorf("dd: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func sum(dev string, off, size int64) ([]byte, error) {
	f, err := os.Open(dev)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, off, size)); err != nil {
		return nil, fmt.Errorf("read back %s: %w", dev, err)
	}
	return h.Sum(nil), nil
}

func dropCaches() error {
	syscall.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0)
}

// bySerial waits for the virtio disk with this serial.
func bySerial(serial string, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for {
		blocks, _ := filepath.Glob("/sys/block/vd*/serial")
		for _, f := range blocks {
			b, err := os.ReadFile(f)
			if err == nil && strings.TrimSpace(string(b)) == serial {
				return "/dev/" + filepath.Base(filepath.Dir(f)), nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no disk with serial %s", serial)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Package diskwrite measures the installer's image write against dd: the
// same bytes (a role image of the bundle) written to the same kind of
// virtio disk in the same QEMU VM, by the installer's own writer
// (disklayout.WriteImage) and by Debian's dd, alternating over rounds.
// The VM boots the pinned amd64 kernel straight into a small static Go
// init (./guest) that carries dd and its libraries; the times are taken
// inside the guest, so neither side pays for QEMU's start.
package diskwrite

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/kilnlab/kiln/image/cache"
	"github.com/kilnlab/kiln/qemu-tests/bench/netboot"
	"github.com/kilnlab/kiln/qemu-tests/lab"
	"github.com/kilnlab/kiln/qemu-tests/lab/standin"
)

// GuestPackage is the VM's init.
const GuestPackage = "github.com/kilnlab/kiln/qemu-tests/bench/diskwrite/guest"

// Serials of the VM's disks: the guest finds them by these (given on its
// kernel command line).
const (
	serialImage = "KILN-BENCH-IMAGE"
	serialKiln  = "KILN-BENCH-KILN"
	serialDD    = "KILN-BENCH-DD"
)

// Options are one run's inputs.
type Options struct {
	// Image is the file whose bytes are written (a role image).
	Image string
	// Out holds the VM's serial log, its initramfs and its disks.
	Out string
	// Cache is kiln's cache folder: the pinned amd64 kernel .deb; Fetch
	// allows downloading it.
	Cache string
	Fetch bool
	// Rounds is writes per side.
	Rounds int
	// MemoryMiB and CPUs shape the VM (an installer's small machine).
	MemoryMiB, CPUs int
	Accel           lab.Accel
	Log             *slog.Logger
}

// Run builds the VM's initramfs, boots it once and returns the figures.
func Run(ctx context.Context, o Options) ([]netboot.Figure, error) {
	var f []netboot.Figure
	if o.Rounds <= 0 || o.MemoryMiB <= 0 || o.CPUs <= 0 {
		return f, errors.New("diskwrite: rounds, memory and CPUs must be positive")
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return f, err
	}
	fi, err := os.Stat(o.Image)
	if err != nil {
		return f, err
	}
	// The guest sees whole sectors of the image's disk.
	size := fi.Size() &^ 511
	initrd, kernel, err := initramfs(ctx, o)
	if err != nil {
		return f, err
	}
	var targets []string
	for _, name := range []string{"kiln", "dd"} {
		p := filepath.Join(o.Out, name+".img")
		os.Remove(p)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			return f, err
		}
		if err := os.Truncate(p, size+2<<20); err != nil {
			return f, err
		}
		targets = append(targets, p)
	}
	serial := filepath.Join(o.Out, "diskwrite.serial.log")
	accel := o.Accel.For("amd64")
	cpu := "max"
	if accel == lab.AccelKVM {
		cpu = "host"
	}
	args := []string{
		"-machine", "q35,accel=" + accel, "-cpu", cpu, "-m", strconv.Itoa(o.MemoryMiB), "-smp", strconv.Itoa(o.CPUs),
		"-nographic", "-no-reboot", "-nic", "none",
		"-kernel", kernel, "-initrd", initrd,
		"-append", fmt.Sprintf("console=ttyS0 quiet kiln.bench.size=%d kiln.bench.rounds=%d kiln.bench.image=%s kiln.bench.kiln=%s kiln.bench.dd=%s",
			size, o.Rounds, serialImage, serialKiln, serialDD),
	}
	// The same drive options as the lab's install VMs (package lab).
	for i, d := range []struct{ path, serial, extra string }{
		{o.Image, serialImage, ",readonly=on"},
		{targets[0], serialKiln, ",discard=unmap"},
		{targets[1], serialDD, ",discard=unmap"},
	} {
		id := "d" + strconv.Itoa(i)
		args = append(args, "-drive", "if=none,id="+id+",file="+d.path+",format=raw,cache=unsafe"+d.extra,
			"-device", "virtio-blk-pci,drive="+id+",serial="+d.serial)
	}
	log, err := os.Create(serial)
	if err != nil {
		return f, err
	}
	defer log.Close()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return f, err
	}
	cmd.Stderr = log
	o.Log.Info("diskwrite: boot", "accel", accel, "bytes", size, "rounds", o.Rounds)
	if err := cmd.Start(); err != nil {
		return f, err
	}
	f, perr := parse(io.TeeReader(out, log), size, o.Rounds)
	werr := cmd.Wait()
	if perr != nil {
		return f, fmt.Errorf("diskwrite: %w (serial log %s)", perr, serial)
	}
	if werr != nil {
		return f, fmt.Errorf("diskwrite: qemu: %w (serial log %s)", werr, serial)
	}
	for _, t := range targets {
		os.Remove(t)
	}
	return f, nil
}

// initramfs builds the guest init and its initramfs (the init, the virtio
// block modules, dd and the libraries it links).
func initramfs(ctx context.Context, o Options) (initrd, kernel string, err error) {
	k, err := standin.KernelOf(ctx, &cache.Cache{Dir: o.Cache}, o.Fetch, filepath.Join(o.Cache, "bench"), "kernel-amd64")
	if err != nil {
		return "", "", fmt.Errorf("amd64 kernel: %w", err)
	}
	guest := filepath.Join(o.Out, "init")
	if err := standin.BuildStatic(ctx, GuestPackage, "amd64", guest); err != nil {
		return "", "", err
	}
	files, err := withLibraries("/usr/bin/dd")
	if err != nil {
		return "", "", err
	}
	initrd = filepath.Join(o.Out, "initrd.cpio.gz")
	if err := standin.InitramfsWith(initrd, guest, k, []string{"virtio_pci", "virtio_blk"}, files, o.Log); err != nil {
		return "", "", err
	}
	return initrd, k.Vmlinuz(), nil
}

// withLibraries maps prog and the shared libraries ldd lists for it to
// themselves (their paths in the image are the host's).
func withLibraries(prog string) (map[string]string, error) {
	out, err := exec.Command("ldd", prog).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", prog, err)
	}
	files := map[string]string{prog: prog}
	for _, l := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(l) {
			if strings.HasPrefix(f, "/") {
				files[f] = f
			}
		}
	}
	return files, nil
}

var line = regexp.MustCompile(`KILN-DISKWRITE side=([\w-]+) round=(\d+) bytes=(\d+) seconds=([0-9.]+)`)

// parse reads the guest's console to its verdict: the write figure, and
// the write with the installer's read-back check against dd.
func parse(r io.Reader, size int64, rounds int) ([]netboot.Figure, error) {
	write := netboot.Figure{
		Name:    fmt.Sprintf("Install write: a %d MiB role image onto a virtio disk, the installer's writer vs dd in the same VM", size>>20),
		Servers: []string{"kiln", "dd"},
		MiBps:   map[string][]float64{},
		Unit:    "MiB/s",
		Notes: []string{
			"kiln: disklayout.WriteImage, the installer's own write (4 MiB chunks, the image read one chunk ahead, fsync)",
			"dd: Debian's dd bs=4M conv=fsync",
			"page cache dropped before each write; the image read from a virtio disk; times taken inside the guest",
		},
	}
	checked := netboot.Figure{
		Name:    "Install write and its read-back check (the installer reads the partition back and hashes it against the manifest) vs dd alone",
		Servers: []string{"kiln", "dd"},
		MiBps:   map[string][]float64{},
		Unit:    "MiB/s",
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		t := sc.Text()
		if m := line.FindStringSubmatch(t); m != nil {
			b, _ := strconv.ParseFloat(m[3], 64)
			s, _ := strconv.ParseFloat(m[4], 64)
			if s <= 0 {
				continue
			}
			v := b / (1 << 20) / s
			switch m[1] {
			case "kiln-verified":
				checked.MiBps["kiln"] = append(checked.MiBps["kiln"], v)
			case "dd":
				checked.MiBps["dd"] = append(checked.MiBps["dd"], v)
				fallthrough
			default:
				write.MiBps[m[1]] = append(write.MiBps[m[1]], v)
			}
			continue
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(t), "KILN-DISKWRITE-SHA256 MiBps="); ok {
			checked.Notes = append(checked.Notes, "SHA-256 alone in this VM: "+v+" MiB/s: the check cannot run faster")
			continue
		}
		if strings.Contains(t, "KILN-DISKWRITE-FAILED") {
			return nil, errors.New(strings.TrimSpace(t))
		}
		if strings.Contains(t, "KILN-DISKWRITE-OK") {
			for _, f := range []netboot.Figure{write, checked} {
				if len(f.MiBps["kiln"]) != rounds || len(f.MiBps["dd"]) != rounds {
					return nil, fmt.Errorf("%d and %d rounds measured, want %d", len(f.MiBps["kiln"]), len(f.MiBps["dd"]), rounds)
				}
			}
			return []netboot.Figure{write, checked}, nil
		}
	}
	return nil, errors.New("the VM stopped before its verdict")
}

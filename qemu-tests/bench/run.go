package bench

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/kilnlab/kiln/image/cache"
	"github.com/kilnlab/kiln/image/kernel"
	"github.com/kilnlab/kiln/qemu-tests/lab"
	"github.com/kilnlab/kiln/qemu-tests/lab/standin"
)

// Options say what to compare and how.
type Options struct {
	// Image is the gate SD image (gate-1.img). With StandIn, a stand-in
	// gate image is built here instead (package standin).
	Image   string
	StandIn bool
	// GateMAC and GateAddr (CIDR) are the gate's, from the profile: its
	// NIC gets the MAC, the lab bridge an address of the same network.
	GateMAC, GateAddr string
	Out               string // serial logs, pcap, the Debian disk
	Cache             string // kiln's cache folder (kernel .deb, bench/)
	// Fetch lets the bench download what its cache lacks: the pinned
	// kernel .deb and, through mmdebstrap, the Debian rootfs.
	Fetch     bool
	Settle    time.Duration // idle time before memory is read
	MemoryMiB int           // both VMs; 0: lab.DefaultMemoryMiB
	CPUs      int           // both VMs; 0: 1
	Accel     lab.Accel     // the run's accelerator (lab.ChooseAccel)
	Log       *slog.Logger
}

// Result is one side's figures.
type Result struct {
	Name  string
	Ready float64       // seconds from kernel start (uptime) to serving / multi-user
	Wall  time.Duration // from QEMU's start to the ready marker
	RSS   int64         // the kiln process's RSS (gate only)
	Used  int64         // MemTotal - MemAvailable, once settled
	Total int64         // MemTotal
	Err   error
}

// Report is a whole run.
type Report struct {
	Kernel     string // kernel release
	SameKernel bool   // the Debian VM booted the gate image's own vmlinuz
	MemoryMiB  int
	CPUs       int
	Accel      lab.Accel
	Settle     time.Duration
	Gate       Result
	Debian     Result
}

// Markers read from the serial consoles.
var (
	servingRe   = regexp.MustCompile(`KILN-GATE-SERVING addr=(\S+) http=(\S+) boot=([0-9.]+)`)
	multiUserRe = regexp.MustCompile(MarkMultiUser + ` uptime=([0-9.]+)`)
	memRe       = regexp.MustCompile(MarkMem + ` total_kb=([0-9]+) available_kb=([0-9]+)`)
	vmDeadline  = 10 * time.Minute
)

// Run boots the gate, then the Debian VM, one after the other (TCG has
// 2 cores to share), on one lab network.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.MemoryMiB == 0 {
		o.MemoryMiB = lab.DefaultMemoryMiB
	}
	if o.CPUs == 0 {
		o.CPUs = 1
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	gateAddr, err := netip.ParsePrefix(o.GateAddr)
	if err != nil {
		return nil, fmt.Errorf("gate address: %w", err)
	}
	c := &cache.Cache{Dir: o.Cache, Progress: os.Stderr, Log: o.Log}
	k, err := standin.Kernel(ctx, c, o.Fetch, filepath.Join(o.Cache, "bench"))
	if err != nil {
		return nil, fmt.Errorf("arm64 kernel: %w", err)
	}
	initBin := filepath.Join(o.Out, "standin-init")
	if err := standin.BuildInit(ctx, initBin); err != nil {
		return nil, err
	}
	if o.StandIn {
		if o.Image, err = standInImage(ctx, o, k, initBin); err != nil {
			return nil, fmt.Errorf("stand-in gate image: %w", err)
		}
	}
	tar, err := RootfsTar(ctx, filepath.Join(o.Cache, "bench"), o.Log)
	if err != nil {
		return nil, err
	}
	bridge, err := lab.HostAddr(gateAddr)
	if err != nil {
		return nil, err
	}
	n, err := lab.NewNetwork(ctx, lab.NetworkConfig{OutDir: o.Out, GateAddr: bridge.String(), Logger: o.Log, Accel: o.Accel})
	if err != nil {
		return nil, err
	}
	defer n.Close()
	r := &Report{Kernel: k.Version, MemoryMiB: o.MemoryMiB, CPUs: o.CPUs, Accel: o.Accel, Settle: o.Settle}
	gcfg, err := lab.GateVMConfig(ctx, "gate", o.GateMAC, o.Image, o.Out)
	if err != nil {
		return nil, err
	}
	r.Gate = gate(ctx, n, o, gcfg)
	r.SameKernel = sameKernel(gcfg.Kernel, k.Vmlinuz())
	r.Debian = debian(ctx, n, o, k, gcfg.Kernel, initBin, tar)
	return r, nil
}

// gate boots the gate image and reads its figures: boot= of the serving
// marker, then /status.json once settled.
func gate(ctx context.Context, n *lab.Network, o Options, cfg lab.VMConfig) Result {
	r := Result{Name: "gate"}
	cfg.MemoryMiB, cfg.CPUs = o.MemoryMiB, o.CPUs
	cfg.FailOn = lab.DeadEnds()
	ctx, cancel := context.WithTimeout(ctx, vmDeadline)
	defer cancel()
	vm, line, wall, err := bootTo(ctx, n, cfg, servingRe)
	if vm != nil {
		defer vm.Stop()
	}
	if err != nil {
		return fail(r, vm, err)
	}
	r.Wall = wall
	m := servingRe.FindStringSubmatch(line)
	r.Ready, _ = strconv.ParseFloat(m[3], 64)
	u, err := url.Parse(m[2])
	if err != nil {
		return fail(r, vm, fmt.Errorf("serving marker %q: %w", line, err))
	}
	if err := sleep(ctx, o.Settle); err != nil {
		return fail(r, vm, err)
	}
	st, err := getStatus(n, u)
	if err != nil {
		return fail(r, vm, err)
	}
	r.RSS, r.Used, r.Total = st.Gate.KilnRSS, st.Gate.MemUsed, st.Gate.MemTotal
	return r
}

// debian boots the Debian rootfs with the same kernel: uptime when
// multi-user.target is reached, MemTotal - MemAvailable once settled.
func debian(ctx context.Context, n *lab.Network, o Options, k *kernel.Kernel, vmlinuz, initBin, tar string) Result {
	r := Result{Name: "debian"}
	initrd, disk := filepath.Join(o.Out, "debian-initrd.gz"), filepath.Join(o.Out, "debian-root.ext4")
	if err := standin.Initramfs(initrd, initBin, k, standin.RootModules(), o.Log); err != nil {
		return fail(r, nil, err)
	}
	o.Log.Info("writing the Debian disk", "path", disk)
	if err := DebianDisk(ctx, tar, k, disk); err != nil {
		return fail(r, nil, err)
	}
	ctx, cancel := context.WithTimeout(ctx, vmDeadline)
	defer cancel()
	vm, line, wall, err := bootTo(ctx, n, lab.VMConfig{
		Name: "debian", Arch: lab.ARM64, MAC: "52:54:00:6b:ff:fe",
		MemoryMiB: o.MemoryMiB, CPUs: o.CPUs,
		Kernel: vmlinuz, Initrd: initrd,
		// The gate's consoles, so both kernels print the same way.
		Append: fmt.Sprintf("console=tty1 console=ttyS1,115200 console=ttyAMA0,115200 panic=10 kiln.standin=%s kiln.standin.root=/dev/vda kiln.bench.settle=%d",
			standin.ModeRoot, int(o.Settle.Seconds())),
		Disks:  []lab.Disk{{Name: "root", Path: disk}},
		FailOn: append(lab.DeadEnds(), regexp.MustCompile(`KILN-STANDIN-FAILED`)),
	}, multiUserRe)
	if vm != nil {
		defer vm.Stop()
	}
	if err != nil {
		return fail(r, vm, err)
	}
	r.Wall = wall
	r.Ready, _ = strconv.ParseFloat(multiUserRe.FindStringSubmatch(line)[1], 64)
	if line, err = vm.WaitFor(ctx, memRe); err != nil {
		return fail(r, vm, err)
	}
	m := memRe.FindStringSubmatch(line)
	total, _ := strconv.ParseInt(m[1], 10, 64)
	avail, _ := strconv.ParseInt(m[2], 10, 64)
	r.Used, r.Total = (total-avail)*1024, total*1024
	return r
}

// bootTo starts a VM and waits for a serial line matching re: the line
// and the time from QEMU's start. The VM, once created, is returned for
// the caller to stop.
func bootTo(ctx context.Context, n *lab.Network, cfg lab.VMConfig, re *regexp.Regexp) (*lab.VM, string, time.Duration, error) {
	vm, err := n.NewVM(ctx, cfg)
	if err != nil {
		return nil, "", 0, err
	}
	start := time.Now()
	if err := vm.Start(ctx); err != nil {
		return vm, "", 0, err
	}
	line, err := vm.WaitFor(ctx, re)
	return vm, line, time.Since(start), err
}

// standInImage builds a gate-shaped image whose init plays the appliance
// (package standin), for the bench's gate side before a real gate-1.img.
func standInImage(ctx context.Context, o Options, k *kernel.Kernel, initBin string) (string, error) {
	dir := filepath.Join(o.Out, "standin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	initrd, img := filepath.Join(dir, "initrd.gz"), filepath.Join(dir, "gate-1.img")
	if err := standin.Initramfs(initrd, initBin, k, standin.GateModules(), o.Log); err != nil {
		return "", err
	}
	files, err := standin.GateFiles(dir, k.Vmlinuz(), initrd, o.GateAddr, o.GateMAC)
	if err != nil {
		return "", err
	}
	return img, standin.SDImage(ctx, img, files)
}

func fail(r Result, vm *lab.VM, err error) Result {
	if vm != nil {
		err = fmt.Errorf("%w\n--- %s serial (last lines) ---\n%s", err, vm.Name(), vm.Tail(25))
	}
	r.Err = err
	return r
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// status is the part of the gate's /status.json the bench reads.
type status struct {
	Gate struct {
		Uptime   float64 `json:"uptime_s"`
		KilnRSS  int64   `json:"kiln_rss_bytes"`
		MemUsed  int64   `json:"mem_used_bytes"`
		MemTotal int64   `json:"mem_total_bytes"`
	} `json:"gate"`
}

// getStatus GETs the gate's /status.json over the lab LAN.
func getStatus(n *lab.Network, base *url.URL) (status, error) {
	var st status
	b, err := n.Get(base.JoinPath("status.json").String())
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("/status.json: %w", err)
	}
	if st.Gate.MemTotal == 0 {
		return st, errors.New("/status.json has no gate figures")
	}
	return st, nil
}

// sameKernel tells whether two kernel files hold the same Image, either
// of them possibly gzip'd (the Pi firmware and QEMU both unpack it).
func sameKernel(a, b string) bool {
	x, err1 := kernelImage(a)
	y, err2 := kernelImage(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

func kernelImage(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		return b, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

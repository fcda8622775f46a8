package lab

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Firmware kinds.
const (
	BIOS = "bios" // SeaBIOS
	UEFI = "uefi" // OVMF
	// Direct: no firmware, QEMU loads Kernel, Initrd and Append itself
	// (-kernel): how an arm64 VM boots (see arm64.go).
	Direct = "direct"
)

// OVMF images (Debian package ovmf): the code is shared read-only, the
// variable store is copied per VM so boot entries persist across its reboots.
const (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// Defaults for a VMConfig.
const (
	DefaultMemoryMiB = 1024
	DefaultMaxBoots  = 8
)

// Errors a VM's Wait can return.
var (
	ErrTooManyBoots = errors.New("vm rebooted too many times")
	ErrVMFailed     = errors.New("vm exited without powering off")
	ErrUnsupported  = errors.New("unsupported")
)

// VMConfig describes one machine, in the terms of a kiln plan.
type VMConfig struct {
	Name      string // [A-Za-z0-9._-]+, names its files in the output folder
	Arch      string // "amd64" (the default) or "arm64" (see arm64.go)
	Firmware  string // BIOS (default) or UEFI; Direct for arm64
	MemoryMiB int    // default 1024
	CPUs      int    // default 1
	MAC       string // NIC address; empty picks a random 52:54:00 one
	// ExtraMACs are the addresses of more NICs, after the one of MAC and
	// on the same bridge, each on a tap of its own (a machine's bond
	// members). None of them netboots: MAC's NIC stays the firmware's.
	// amd64 only.
	ExtraMACs []string
	UUID      string // SMBIOS system UUID; empty leaves QEMU's
	Disks     []Disk
	// MaxBoots stops relaunching after this many boots (an install loop
	// must end); default 8.
	MaxBoots int
	// FailOn makes WaitFor fail fast with ErrDeadEnd when a serial line
	// matches one of these before the marker (see DeadEnds).
	FailOn []*regexp.Regexp
	// ExtraArgs are appended to QEMU's command line.
	ExtraArgs []string
	// BootDisk names the disk the firmware boots first (default: the
	// first disk), whatever its place on the bus. BIOS only: a UEFI VM
	// boots in the order of its variable store (see Args).
	BootDisk string
	// Vars is the OVMF variable store to boot with, an earlier VM's
	// (Hardware): a real machine's NVRAM, boot entries included,
	// outlives its power cycles. Empty copies OVMF's blank store.
	Vars string
	// Unplugged leaves the machine off the network, no NIC at all: its
	// firmware can boot only its disks (a drill's look at what a disk
	// boots by itself). amd64 only.
	Unplugged bool
	// Kernel, Initrd and Append are the kernel, initramfs and command
	// line QEMU boots itself (Firmware Direct; arm64 only).
	Kernel, Initrd, Append string
}

// Exit records how one boot ended.
type Exit struct {
	Boot     int
	Reason   string // one of the Reason constants
	Duration time.Duration
}

// VM is one QEMU machine on a lab network. Each boot is one QEMU process
// (-no-reboot); after a guest reset the VM relaunches QEMU with the same
// disks and variable store, like a real machine rebooting.
type VM struct {
	cfg    VMConfig
	net    *Network
	tap    string
	serial string // serial console log, all boots appended
	qemu   string // QEMU's own stderr, all boots appended
	vars   string // per-VM OVMF variable store
	disks  []string
	accel  string // AccelKVM or AccelTCG (empty: TCG)

	mu      sync.Mutex
	started bool
	cancel  context.CancelFunc
	boots   int
	exits   []Exit
	done    chan struct{}
	err     error
}

var vmName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// NewVM prepares a VM on the network: its tap, blank sparse disks, OVMF
// variable store. Start boots it.
func (n *Network) NewVM(ctx context.Context, cfg VMConfig) (*VM, error) {
	if err := vmDefaults(&cfg); err != nil {
		return nil, err
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, ErrClosed
	}
	for _, o := range n.vms {
		if o.cfg.Name == cfg.Name {
			n.mu.Unlock()
			return nil, fmt.Errorf("lab: vm %s exists", cfg.Name)
		}
	}
	vm := &VM{
		cfg:    cfg,
		net:    n,
		tap:    fmt.Sprintf("tap%d", len(n.vms)),
		serial: filepath.Join(n.out, cfg.Name+".serial.log"),
		qemu:   filepath.Join(n.out, cfg.Name+".qemu.log"),
		accel:  n.accel.For(cfg.Arch),
		done:   make(chan struct{}),
	}
	n.vms = append(n.vms, vm)
	n.mu.Unlock()
	if err := vm.prepare(ctx); err != nil {
		return nil, fmt.Errorf("lab: vm %s: %w", cfg.Name, err)
	}
	return vm, nil
}

func vmDefaults(cfg *VMConfig) error {
	if !vmName.MatchString(cfg.Name) {
		return fmt.Errorf("lab: vm name %q: want [A-Za-z0-9._-]+", cfg.Name)
	}
	if cfg.Arch == "" {
		cfg.Arch = "amd64"
	}
	switch cfg.Arch {
	case "amd64":
	case ARM64:
		if err := arm64Defaults(cfg); err != nil {
			return err
		}
	default:
		return fmt.Errorf("lab: vm %s: arch %s: %w", cfg.Name, cfg.Arch, ErrUnsupported)
	}
	switch cfg.Firmware {
	case "":
		cfg.Firmware = BIOS
	case BIOS, UEFI:
	case Direct:
		if cfg.Arch != ARM64 {
			return fmt.Errorf("lab: vm %s: firmware %q on %s: %w", cfg.Name, cfg.Firmware, cfg.Arch, ErrUnsupported)
		}
	default:
		return fmt.Errorf("lab: vm %s: firmware %q: %w", cfg.Name, cfg.Firmware, ErrUnsupported)
	}
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = DefaultMemoryMiB
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 1
	}
	if cfg.MaxBoots == 0 {
		cfg.MaxBoots = DefaultMaxBoots
	}
	if cfg.MAC == "" {
		var b [3]byte
		_, _ = io.ReadFull(rand.Reader, b[:])
		cfg.MAC = fmt.Sprintf("52:54:00:%02x:%02x:%02x", b[0], b[1], b[2])
	}
	if _, err := net.ParseMAC(cfg.MAC); err != nil {
		return fmt.Errorf("lab: vm %s: %w", cfg.Name, err)
	}
	if err := extraMACs(cfg); err != nil {
		return err
	}
	if cfg.Unplugged && cfg.Arch != "amd64" {
		return fmt.Errorf("lab: vm %s: unplugged on %s: %w", cfg.Name, cfg.Arch, ErrUnsupported)
	}
	for i, d := range cfg.Disks {
		if !vmName.MatchString(d.Name) {
			return fmt.Errorf("lab: vm %s: disk name %q: want [A-Za-z0-9._-]+", cfg.Name, d.Name)
		}
		if d.WWN != "" {
			w, err := normalizeWWN(d.WWN)
			if err != nil {
				return fmt.Errorf("lab: vm %s: disk %s: %w", cfg.Name, d.Name, err)
			}
			cfg.Disks[i].WWN = w
		}
	}
	return nil
}

// extraMACs checks a config's ExtraMACs: valid, each NIC's own, amd64.
func extraMACs(cfg *VMConfig) error {
	if len(cfg.ExtraMACs) > 0 && cfg.Arch != "amd64" {
		return fmt.Errorf("lab: vm %s: more than one NIC on %s: %w", cfg.Name, cfg.Arch, ErrUnsupported)
	}
	seen := map[string]bool{strings.ToLower(cfg.MAC): true}
	for _, m := range cfg.ExtraMACs {
		if _, err := net.ParseMAC(m); err != nil {
			return fmt.Errorf("lab: vm %s: %w", cfg.Name, err)
		}
		if seen[strings.ToLower(m)] {
			return fmt.Errorf("lab: vm %s: MAC %s on two NICs", cfg.Name, m)
		}
		seen[strings.ToLower(m)] = true
	}
	return nil
}

// prepare creates what outlives a single boot: taps, disks, variable
// store, and a fresh serial log.
func (vm *VM) prepare(ctx context.Context) error {
	for k := range vm.nics() {
		if err := vm.net.AddTap(ctx, vm.tapName(k)); err != nil {
			return err
		}
	}
	for _, d := range vm.cfg.Disks {
		p := d.Path
		if p == "" {
			p = filepath.Join(vm.net.out, vm.cfg.Name+"-"+d.Name+".img")
			if err := createSparse(p, d.Size); err != nil {
				return err
			}
		}
		vm.disks = append(vm.disks, p)
	}
	if vm.cfg.Firmware == UEFI {
		vm.vars = vm.cfg.Vars
		if vm.vars == "" {
			vm.vars = filepath.Join(vm.net.out, vm.cfg.Name+".OVMF_VARS.fd")
			if err := copyFile(vm.vars, OVMFVars); err != nil {
				return err
			}
		}
	}
	for _, p := range []string{vm.serial, vm.qemu} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// nics is how many NICs the VM has.
func (vm *VM) nics() int {
	if vm.cfg.Unplugged {
		return 0
	}
	return 1 + len(vm.cfg.ExtraMACs)
}

// Name is the VM's name.
func (vm *VM) Name() string { return vm.cfg.Name }

// MAC is the VM's NIC address.
func (vm *VM) MAC() string { return vm.cfg.MAC }

// SerialLog is the path of the serial console log (all boots).
func (vm *VM) SerialLog() string { return vm.serial }

// DiskPaths are the image files behind the VM's disks, in config order.
func (vm *VM) DiskPaths() []string { return append([]string(nil), vm.disks...) }

// Hardware is what of a machine outlives one VM: its disks and its
// firmware's variable store.
type Hardware struct {
	Disks []string // image files, in config order
	Vars  string   // OVMF variable store; empty under BIOS
}

// Hardware is the VM's disks and variable store, for a later VM that is
// the same machine powered on again (VMConfig.On).
func (vm *VM) Hardware() Hardware { return Hardware{Disks: vm.DiskPaths(), Vars: vm.vars} }

// On is c on the hardware of an earlier VM: its disks, in c's order, and
// its variable store.
func (c VMConfig) On(hw Hardware) VMConfig {
	c.Disks = slices.Clone(c.Disks)
	for i := range c.Disks {
		c.Disks[i].Path = hw.Disks[i]
	}
	c.Vars = hw.Vars
	return c
}

// Args is QEMU's command line (without the binary) for a boot, with qmp
// as the QMP socket path.
func (vm *VM) Args(qmp string) []string {
	c := vm.cfg
	if c.Arch == ARM64 {
		return vm.arm64Args(qmp)
	}
	// graphics=off makes SeaBIOS and option ROMs (iPXE) print to the
	// serial port too. One accelerator, never kvm:tcg: QEMU falls back
	// only when KVM fails to open, not when it opens and cannot run the
	// firmware (see AccelProbe).
	args := vm.baseArgs("q35,accel="+vm.accelName()+",graphics=off", "max", qmp)
	if c.UUID != "" {
		args = append(args, "-smbios", "type=1,uuid="+c.UUID)
	}
	if c.Firmware == UEFI {
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+OVMFCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+vm.vars)
	}
	// BIOS: net first, then the disks: iPXE's `exit` falls through to
	// the disk. UEFI: no boot index at all. With one, QEMU hands OVMF a
	// boot order (fw_cfg) that OVMF imposes at every boot, deleting the
	// entries it does not match, like the installer's disk entry; a real
	// machine has no such thing and boots in its NVRAM's order, which
	// kiln's installer sets (installer/efiboot).
	nic := "virtio-net-pci,netdev=n0,mac=" + c.MAC
	if c.Firmware == UEFI {
		// No iPXE option ROM: OVMF's own virtio-net driver and PXE client
		// boot, asking for ipxe.efi as real UEFI firmware does. (SeaBIOS
		// has no PXE client: there the ROM, iPXE, is the firmware's PXE.)
		nic += ",romfile="
	} else {
		nic += ",bootindex=1"
	}
	if !c.Unplugged {
		args = append(args,
			"-netdev", "tap,id=n0,ifname="+vm.tap+",script=no,downscript=no",
			"-device", nic)
		args = append(args, vm.extraNICArgs()...)
	}
	return append(append(args, vm.diskArgs()...), c.ExtraArgs...)
}

// extraNICArgs are the NICs of ExtraMACs, after the netboot NIC (which
// keeps the lowest PCI slot of the NICs). None has a boot index or an
// option ROM: under SeaBIOS each would otherwise bring its own iPXE, one
// more boot entry (and its banner and delay at every boot) for a NIC the
// lab never netboots from.
func (vm *VM) extraNICArgs() []string {
	var args []string
	for i, mac := range vm.cfg.ExtraMACs {
		k := i + 1
		args = append(args,
			"-netdev", fmt.Sprintf("tap,id=n%d,ifname=%s,script=no,downscript=no", k, vm.tapName(k)),
			"-device", fmt.Sprintf("virtio-net-pci,netdev=n%d,mac=%s,romfile=", k, mac))
	}
	return args
}

// tapName is the tap of the VM's NIC k: 0 the netboot NIC's, k the one
// of ExtraMACs[k-1]. Names are per namespace, at most 15 bytes.
func (vm *VM) tapName(k int) string {
	if k == 0 {
		return vm.tap
	}
	return fmt.Sprintf("%sn%d", vm.tap, k)
}

func (vm *VM) diskArgs() []string {
	var args []string
	scsi := false
	for i, d := range vm.cfg.Disks {
		id := fmt.Sprintf("d%d", i)
		args = append(args, "-drive", "if=none,id="+id+",file="+vm.disks[i]+",format=raw,cache=unsafe,discard=unmap")
		dev := "virtio-blk-pci,drive=" + id
		if d.WWN != "" {
			if !scsi {
				args = append(args, "-device", "virtio-scsi-pci,id=scsi0")
				scsi = true
			}
			dev = "scsi-hd,bus=scsi0.0,drive=" + id + ",wwn=" + d.WWN
		}
		if d.Serial != "" {
			dev += ",serial=" + d.Serial
		}
		if vm.cfg.Firmware != UEFI {
			dev += ",bootindex=" + strconv.Itoa(vm.bootIndex(i))
		}
		args = append(args, "-device", dev)
	}
	return args
}

// baseArgs is the start of every VM's command line: machine and CPU, size,
// no default devices, -no-reboot (the lab relaunches), the serial log, QMP
// and an entropy source.
func (vm *VM) baseArgs(machine, cpu, qmp string) []string {
	c := vm.cfg
	return []string{
		"-name", c.Name,
		"-machine", machine,
		"-cpu", cpu,
		"-smp", strconv.Itoa(c.CPUs),
		"-m", strconv.Itoa(c.MemoryMiB),
		"-nodefaults", "-display", "none",
		"-no-reboot",
		"-chardev", "file,id=ser0,path=" + vm.serial + ",append=on",
		"-serial", "chardev:ser0",
		"-qmp", "unix:" + qmp + ",server=on,wait=on",
		// TCG has no RDRAND (nor an arm64 equivalent): without an entropy
		// source Go's getrandom blocks for a long time early in boot.
		"-device", "virtio-rng-pci",
	}
}

// accelName is the VM's accelerator for QEMU's -machine accel=.
func (vm *VM) accelName() string {
	if vm.accel == "" {
		return AccelTCG
	}
	return vm.accel
}

// bootIndex orders the disks after the NIC (1): BootDisk first, as a user
// sets it in the firmware's setup (SeaBIOS tries one hard disk only), then
// the others in order.
func (vm *VM) bootIndex(i int) int {
	boot := slices.IndexFunc(vm.cfg.Disks, func(d Disk) bool { return d.Name == vm.cfg.BootDisk })
	switch {
	case i == boot:
		return 2
	case i < boot:
		return i + 3
	default:
		return i + 2
	}
}

// Start boots the VM and keeps relaunching it after each guest reset until
// it powers off, reaches MaxBoots, fails, is stopped, or ctx ends (the hard
// deadline for the VM's whole life).
func (vm *VM) Start(ctx context.Context) error {
	vm.mu.Lock()
	if vm.started {
		vm.mu.Unlock()
		return fmt.Errorf("lab: vm %s already started", vm.cfg.Name)
	}
	vm.started = true
	ctx, vm.cancel = context.WithCancel(ctx)
	vm.mu.Unlock()
	b, err := vm.boot(ctx)
	if err != nil {
		vm.finish(err)
		return err
	}
	go vm.supervise(ctx, b)
	return nil
}

// boot is one QEMU process, its QMP shutdown watch and its stderr watch.
type boot struct {
	n        int
	proc     *Process
	shutdown <-chan string
	fatal    <-chan string // a line of QEMU's after which the guest is dead
	logFrom  int64         // where this boot's QEMU output starts in vm.qemu
	start    time.Time
	sockDir  string
	failure  string // what QEMU said when the boot failed
}

func (vm *VM) boot(ctx context.Context) (*boot, error) {
	vm.mu.Lock()
	vm.boots++
	b := &boot{n: vm.boots, start: time.Now()}
	vm.mu.Unlock()
	// A short private folder: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "kiln-qmp-")
	if err != nil {
		return nil, err
	}
	b.sockDir = dir
	sock := filepath.Join(dir, "qmp.sock")
	banner := fmt.Sprintf("\n[kiln-lab] %s: boot %d (%s) at %s\n", vm.cfg.Name, b.n, vm.cfg.Firmware, b.start.Format(time.RFC3339))
	if err := appendFile(vm.serial, banner); err != nil {
		return nil, err
	}
	qlog, err := os.OpenFile(vm.qemu, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	defer qlog.Close()
	fmt.Fprint(qlog, banner)
	if fi, err := qlog.Stat(); err == nil {
		b.logFrom = fi.Size()
	}
	cmd := nsCommand(vm.net.ns, qemuBinary(vm.cfg.Arch), vm.Args(sock)...)
	cmd.Stdout, cmd.Stderr = qlog, qlog
	p, err := startProcess("qemu "+vm.cfg.Name, cmd)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("lab: vm %s: %w", vm.cfg.Name, err)
	}
	b.proc = p
	b.fatal = watchFatal(vm.qemu, b.logFrom, p.Done())
	vm.net.log.Info("vm boot", "vm", vm.cfg.Name, "boot", b.n, "pid", p.Pid(), "accel", vm.accelName())
	c, err := dialQMP(ctx, sock, p.Done())
	if err == nil {
		r := bufio.NewReader(c)
		if err = qmpHandshake(c, r); err == nil {
			b.shutdown = watchShutdown(c, r)
		} else {
			c.Close()
		}
	}
	if err != nil {
		p.Stop(syscall.SIGKILL)
		os.RemoveAll(dir)
		return nil, fmt.Errorf("lab: vm %s boot %d: %w; qemu said: %s", vm.cfg.Name, b.n, err, qemuSaid(vm.qemu, b.logFrom))
	}
	return b, nil
}

// supervise waits for each boot to end and relaunches after guest resets.
func (vm *VM) supervise(ctx context.Context, b *boot) {
	for {
		reason := vm.waitBoot(ctx, b)
		vm.mu.Lock()
		vm.exits = append(vm.exits, Exit{Boot: b.n, Reason: reason, Duration: time.Since(b.start)})
		boots := vm.boots
		vm.mu.Unlock()
		vm.net.log.Info("vm exit", "vm", vm.cfg.Name, "boot", b.n, "reason", reason, "after", time.Since(b.start).Round(time.Millisecond))
		switch {
		case reason == ReasonStopped:
			vm.finish(context.Cause(ctx))
			return
		case reason == ReasonGuestShutdown:
			vm.finish(nil)
			return
		case reason != ReasonGuestReset:
			said := b.failure
			if said == "" {
				said = qemuSaid(vm.qemu, b.logFrom)
			}
			vm.finish(fmt.Errorf("lab: vm %s boot %d (accel %s): %w (reason %q); qemu said: %s", vm.cfg.Name, b.n, vm.accelName(), ErrVMFailed, reason, said))
			return
		case boots >= vm.cfg.MaxBoots:
			vm.finish(fmt.Errorf("lab: vm %s: %w (%d)", vm.cfg.Name, ErrTooManyBoots, boots))
			return
		}
		var err error
		if b, err = vm.boot(ctx); err != nil {
			vm.finish(err)
			return
		}
	}
}

// waitBoot waits for QEMU to exit, stopping it when ctx ends or when it
// reports a dead guest, and returns the shutdown reason.
func (vm *VM) waitBoot(ctx context.Context, b *boot) string {
	defer os.RemoveAll(b.sockDir)
	select {
	case <-b.proc.Done():
	case line := <-b.fatal:
		// A KVM that cannot run the guest leaves QEMU hanging: kill it
		// now rather than let a test wait out its deadline.
		b.failure = line
		b.proc.Stop(syscall.SIGKILL)
		return ReasonQEMUFailed
	case <-ctx.Done():
		// SIGTERM: QEMU exits cleanly, flushing the serial log.
		b.proc.Stop(syscall.SIGTERM)
		return ReasonStopped
	}
	select {
	case r := <-b.shutdown:
		return r
	case <-time.After(5 * time.Second):
		return ReasonUnknown
	}
}

func (vm *VM) finish(err error) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	vm.err = err
	vm.cancel()
	close(vm.done)
}

// Stop powers the VM off (kills QEMU) and waits for it. Safe to call more
// than once and before Start.
func (vm *VM) Stop() {
	vm.mu.Lock()
	started, cancel := vm.started, vm.cancel
	vm.mu.Unlock()
	if !started {
		return
	}
	cancel()
	<-vm.done
}

// Done is closed once the VM is off for good.
func (vm *VM) Done() <-chan struct{} { return vm.done }

// Wait waits until the VM is off for good: nil after a guest power-off,
// ErrTooManyBoots, ErrVMFailed, or the context's error when it was stopped.
func (vm *VM) Wait(ctx context.Context) error {
	select {
	case <-vm.done:
		vm.mu.Lock()
		defer vm.mu.Unlock()
		return vm.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Boots is how many times QEMU was launched for this VM.
func (vm *VM) Boots() int {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.boots
}

// Exits is how each finished boot ended.
func (vm *VM) Exits() []Exit {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return append([]Exit(nil), vm.exits...)
}

// WaitFor waits until a line of the serial log (any boot) matches re and
// returns it. It fails fast with ErrVMStopped once the VM is off and the
// log holds no match, or with ErrDeadEnd on a FailOn line; without a
// deadline in ctx, DefaultWaitTimeout applies.
func (vm *VM) WaitFor(ctx context.Context, re *regexp.Regexp) (string, error) {
	l, err := waitForLine(ctx, vm.serial, 0, re, vm.cfg.FailOn, vm.done)
	return l, vm.whyStopped(err)
}

// whyStopped adds to an ErrVMStopped from waitForLine the reason the VM
// stopped (QEMU's own failure line, say), so a test's failure message
// names it.
func (vm *VM) whyStopped(err error) error {
	if !errors.Is(err, ErrVMStopped) {
		return err
	}
	vm.mu.Lock()
	why := vm.err
	vm.mu.Unlock()
	if why == nil {
		return err
	}
	return fmt.Errorf("%w: %w", err, why)
}

// Mark is the serial log's current size, for WaitForSince.
func (vm *VM) Mark() int64 {
	fi, err := os.Stat(vm.serial)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// WaitForSince is WaitFor over the output written after mark (from Mark),
// e.g. to wait for a marker of the next boot only.
func (vm *VM) WaitForSince(ctx context.Context, mark int64, re *regexp.Regexp) (string, error) {
	l, err := waitForLine(ctx, vm.serial, mark, re, vm.cfg.FailOn, vm.done)
	return l, vm.whyStopped(err)
}

// Tail is the last n lines of the serial log.
func (vm *VM) Tail(n int) string {
	s, err := tailLines(vm.serial, n)
	if err != nil {
		return "(no serial log: " + err.Error() + ")"
	}
	return s
}

// Diagnose describes the lab for a failure report: each VM's boots and
// serial log tail, dnsmasq's log tail, the pcap's path.
func (n *Network) Diagnose(lines int) string {
	n.mu.Lock()
	vms, isp, pcap := n.vms, n.isp, n.pcap
	n.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "lab %s (output in %s)\n", n.ns, n.out)
	for _, vm := range vms {
		fmt.Fprintf(&b, "=== vm %s (%s, mac %s): %d boot(s), exits %v\n--- last %d lines of %s:\n%s\n",
			vm.cfg.Name, vm.cfg.Firmware, vm.cfg.MAC, vm.Boots(), vm.Exits(), lines, vm.serial, vm.Tail(lines))
		if q, err := tailLines(vm.qemu, 10); err == nil && strings.TrimSpace(q) != "" {
			fmt.Fprintf(&b, "--- qemu stderr (%s):\n%s\n", vm.qemu, q)
		}
	}
	if isp != nil {
		t, _ := tailLines(isp.log, lines)
		fmt.Fprintf(&b, "=== dnsmasq (ISP box %s), last %d lines of %s:\n%s\n", isp.addr, lines, isp.log, t)
	}
	if pcap != "" {
		fmt.Fprintf(&b, "=== bridge capture: %s (tcpdump -nr %s)\n", pcap, pcap)
	}
	return b.String()
}

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	return errors.Join(err, f.Close())
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	return errors.Join(err, out.Close())
}

package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Accelerator modes a run asks for (`kiln rehearse --accel`, KILN_ACCEL).
const (
	AccelAuto = "auto" // KVM if a probe shows it runs firmware, else TCG
	AccelKVM  = "kvm"  // KVM, no probe: a KVM that fails, fails the VMs
	AccelTCG  = "tcg"  // QEMU's emulator, always
)

// AccelEnv is the environment variable the tests and the bench read for the
// accelerator mode (auto when unset).
const AccelEnv = "KILN_ACCEL"

// KVMDevice is where the kernel offers KVM.
const KVMDevice = "/dev/kvm"

// probeTimeout bounds the firmware probe: SeaBIOS reaches its marker in
// well under a second on a working KVM.
const probeTimeout = 20 * time.Second

// Accel is the accelerator a run's amd64 VMs use, chosen once per run, and
// why, in one line for the run's output.
type Accel struct {
	Name   string // AccelKVM or AccelTCG
	Reason string
}

func (a Accel) String() string { return a.Name + " (" + a.Reason + ")" }

// ErrAccelMode is returned for a mode that is not auto, kvm or tcg.
var ErrAccelMode = errors.New("accelerator mode: want auto, kvm or tcg")

// AccelModeFromEnv is the mode in $KILN_ACCEL, auto when unset.
func AccelModeFromEnv() (string, error) {
	m := os.Getenv(AccelEnv)
	if m == "" {
		return AccelAuto, nil
	}
	if err := CheckAccelMode(m); err != nil {
		return "", fmt.Errorf("%s=%q: %w", AccelEnv, m, err)
	}
	return m, nil
}

// CheckAccelMode accepts auto, kvm and tcg.
func CheckAccelMode(mode string) error {
	switch mode {
	case AccelAuto, AccelKVM, AccelTCG:
		return nil
	}
	return fmt.Errorf("%q: %w", mode, ErrAccelMode)
}

// AccelProbe chooses the accelerator by evidence, not by the presence of
// /dev/kvm: some hosts (nested clouds' paravirtual "kvm-pvm") expose a KVM
// that opens fine but runs only 64-bit guests, so SeaBIOS and OVMF die at
// once with "KVM internal error" and QEMU then hangs without exiting, and
// accel=kvm:tcg never falls back. The probe boots SeaBIOS under KVM with no
// devices to its "No bootable device" line; anything else within the
// timeout (an error line, an exit, silence) means TCG.
type AccelProbe struct {
	Device  string        // KVM device; default KVMDevice
	QEMU    string        // amd64 system emulator; default qemu-system-x86_64
	Timeout time.Duration // default probeTimeout
}

// ChooseAccel is AccelProbe{}.Choose.
func ChooseAccel(ctx context.Context, mode string) (Accel, error) {
	return AccelProbe{}.Choose(ctx, mode)
}

// Choose returns the accelerator for mode. Only auto runs the probe; kvm
// checks that the device can be opened, so a forced KVM on a host without
// one fails here rather than in every VM.
func (p AccelProbe) Choose(ctx context.Context, mode string) (Accel, error) {
	if err := CheckAccelMode(mode); err != nil {
		return Accel{}, err
	}
	p.defaults()
	switch mode {
	case AccelTCG:
		return Accel{AccelTCG, "asked for"}, nil
	case AccelKVM:
		if err := openKVM(p.Device); err != nil {
			return Accel{}, fmt.Errorf("accelerator kvm asked for: %w", err)
		}
		return Accel{AccelKVM, "asked for, not probed"}, nil
	}
	if err := openKVM(p.Device); err != nil {
		return Accel{AccelTCG, "no usable KVM: " + err.Error()}, nil
	}
	if runtime.GOARCH != "amd64" {
		return Accel{AccelTCG, "the KVM probe runs on amd64 hosts only"}, nil
	}
	start := time.Now()
	if err := p.probe(ctx); err != nil {
		if ctx.Err() != nil {
			return Accel{}, fmt.Errorf("kvm probe: %w", ctx.Err())
		}
		return Accel{AccelTCG, "KVM failed the firmware probe, using TCG: " + err.Error()}, nil
	}
	return Accel{AccelKVM, fmt.Sprintf("SeaBIOS ran under KVM in %.1fs", time.Since(start).Seconds())}, nil
}

func (p *AccelProbe) defaults() {
	if p.Device == "" {
		p.Device = KVMDevice
	}
	if p.QEMU == "" {
		p.QEMU = qemuBinary("amd64")
	}
	if p.Timeout == 0 {
		p.Timeout = probeTimeout
	}
}

func openKVM(dev string) error {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no %s", dev)
	}
	if err != nil {
		return err
	}
	return f.Close()
}

// probeMarker is what SeaBIOS prints on the serial port once it has run
// its whole POST with no boot device; probeDeadEnd are QEMU's lines for a
// KVM that cannot run the guest.
var (
	probeMarker = "No bootable device"
	probeFatal  = regexp.MustCompile(`KVM internal error|emulation failure|kvm run failed|failed to initialize kvm|Could not access KVM kernel module`)
)

// probe boots SeaBIOS under accel (KVM unless a test says otherwise) and
// waits for the marker; it kills QEMU in every case.
func (p AccelProbe) probe(ctx context.Context) error {
	return p.probeAccel(ctx, AccelKVM)
}

func (p AccelProbe) probeAccel(ctx context.Context, accel string) error {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	cmd := exec.Command(p.QEMU,
		"-machine", "q35,accel="+accel+",graphics=off", "-cpu", "max", "-m", "128",
		"-nodefaults", "-display", "none", "-no-reboot", "-serial", "stdio")
	var out probeOutput
	out.changed = make(chan struct{}, 1)
	cmd.Stdout, cmd.Stderr = &out, &out
	proc, err := startProcess("kvm probe", cmd)
	if err != nil {
		return err
	}
	defer proc.Stop(syscall.SIGKILL)
	for {
		s := out.String()
		if strings.Contains(s, probeMarker) {
			return nil
		}
		if l := probeFatal.FindString(s); l != "" {
			return errors.New(lineOf(s, l))
		}
		select {
		case <-proc.Done():
			return fmt.Errorf("qemu exited before SeaBIOS finished: %s", lastLine(out.String()))
		case <-ctx.Done():
			return fmt.Errorf("SeaBIOS did not finish within %v under %s: %s", p.Timeout, accel, lastLine(out.String()))
		case <-out.changed:
		}
	}
}

// probeOutput collects QEMU's serial port and stderr, and wakes the probe
// on each write.
type probeOutput struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func (o *probeOutput) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.buf.Len() < 64<<10 {
		o.buf.Write(b)
	}
	select {
	case o.changed <- struct{}{}:
	default:
	}
	return len(b), nil
}

func (o *probeOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// lineOf is the whole line of s holding sub.
func lineOf(s, sub string) string {
	i := strings.Index(s, sub)
	if i < 0 {
		return sub
	}
	start := strings.LastIndexByte(s[:i], '\n') + 1
	end := strings.IndexByte(s[i:], '\n')
	if end < 0 {
		return strings.TrimSpace(s[start:])
	}
	return strings.TrimSpace(s[start : i+end])
}

// lastLine is the last non-empty line of s, or "(no output)".
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if l := strings.TrimSpace(lines[len(lines)-1]); l != "" {
		return l
	}
	return "(no output)"
}

// For is the accelerator a VM of arch ("amd64", ARM64) runs under: the
// run's choice for guests of the host's own architecture, TCG for the
// others (QEMU 7.2 refuses KVM for an arm64 guest on an amd64 host).
func (a Accel) For(arch string) string {
	if arch != runtime.GOARCH || a.Name == "" {
		return AccelTCG
	}
	return a.Name
}

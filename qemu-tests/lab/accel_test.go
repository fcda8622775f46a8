package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kilnlab/kiln/image/hosttool/hosttooltest"
	"github.com/kilnlab/kiln/internal/roottest"
)

// fakeQEMUEnv makes this test binary play QEMU (see TestMain): "pvm" is a
// QEMU on a paravirtual KVM that cannot run firmware (QMP answers, then
// "KVM internal error" and a hang), "exit" one that fails and exits.
const fakeQEMUEnv = "KILN_LAB_FAKE_QEMU"

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeQEMUEnv); mode != "" {
		os.Exit(fakeQEMU(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeQEMU behaves like qemu-system-x86_64 on a kvm-pvm host as far as the
// lab can see: it records its arguments, serves the QMP handshake (QEMU
// waits for it before running the guest), then prints what QEMU printed
// there and hangs, deaf to SIGTERM.
func fakeQEMU(mode string, args []string) int {
	if f := os.Getenv(fakeQEMUEnv + "_ARGS"); f != "" {
		_ = os.WriteFile(f, []byte(strings.Join(args, "\n")), 0o644)
	}
	if mode == "exit" {
		fmt.Fprintln(os.Stderr, "qemu-system-x86_64: -netdev tap,id=n0: could not configure /dev/net/tun: Device or resource busy")
		return 1
	}
	signal.Ignore(syscall.SIGTERM)
	for i, a := range args {
		if a != "-qmp" || i+1 == len(args) {
			continue
		}
		path := strings.TrimPrefix(strings.Split(args[i+1], ",")[0], "unix:")
		l, err := net.Listen("unix", path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "fake qemu:", err)
			return 1
		}
		c, err := l.Accept()
		if err != nil {
			return 1
		}
		fmt.Fprintln(c, `{"QMP": {"version": {}, "capabilities": []}}`)
		if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
			return 1
		}
		fmt.Fprintln(c, `{"return": {}}`)
		defer c.Close()
	}
	fmt.Fprint(os.Stderr, "KVM internal error. Suberror: 1\nextra data[0]: 0x0000000000000000\nemulation failure\nEAX=00000000 EBX=00000000 ECX=00000000 EDX=00000663\n")
	select {}
}

// fakeScript writes an executable shell script standing in for QEMU.
func fakeScript(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "qemu")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAccelModeFromEnv(t *testing.T) {
	for _, tc := range []struct {
		env, want string
		bad       bool
	}{
		{"", AccelAuto, false},
		{"auto", AccelAuto, false},
		{"kvm", AccelKVM, false},
		{"tcg", AccelTCG, false},
		{"kvm:tcg", "", true},
		{"TCG", "", true},
	} {
		t.Setenv(AccelEnv, tc.env)
		got, err := AccelModeFromEnv()
		if tc.bad {
			if !errors.Is(err, ErrAccelMode) || !strings.Contains(err.Error(), AccelEnv) {
				t.Errorf("%s=%q: err %v, want ErrAccelMode naming %s", AccelEnv, tc.env, err, AccelEnv)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s=%q: %q, %v; want %q", AccelEnv, tc.env, got, err, tc.want)
		}
	}
}

// TestChooseAccel drives the choice with stand-ins for /dev/kvm and QEMU:
// each KVM this project's machines have (none, a paravirtual one that
// dies in firmware, a real one) and the ways a probe can go wrong.
func TestChooseAccel(t *testing.T) {
	dev := filepath.Join(t.TempDir(), "kvm")
	if err := os.WriteFile(dev, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "no-kvm")
	never := "/nonexistent/qemu" // a probe that must not run
	for _, tc := range []struct {
		name, mode, dev, qemu string
		timeout               time.Duration
		want                  string // accelerator
		reason                string // substring of the reason
		err                   string // substring of the error, when one is wanted
	}{
		{name: "tcg asked", mode: AccelTCG, dev: dev, qemu: never, want: AccelTCG, reason: "asked for"},
		{name: "kvm asked", mode: AccelKVM, dev: dev, qemu: never, want: AccelKVM, reason: "not probed"},
		{name: "kvm asked, none", mode: AccelKVM, dev: missing, qemu: never, err: "no " + missing},
		{name: "bad mode", mode: "xen", dev: dev, qemu: never, err: "want auto, kvm or tcg"},
		{name: "no kvm", mode: AccelAuto, dev: missing, qemu: never, want: AccelTCG, reason: "no usable KVM: no " + missing},
		{
			name: "kvm-pvm: internal error, then a hang", mode: AccelAuto, dev: dev, timeout: time.Minute,
			qemu: fakeScript(t, `echo "SeaBIOS (version 1.16.2-debian-1.16.2-1)"; echo "KVM internal error. Suberror: 1" >&2; echo "emulation failure" >&2; exec sleep 600`),
			want: AccelTCG, reason: "KVM failed the firmware probe, using TCG: KVM internal error. Suberror: 1",
		},
		{
			name: "kvm fails to initialise", mode: AccelAuto, dev: dev, timeout: time.Minute,
			qemu: fakeScript(t, `echo "qemu-system-x86_64: failed to initialize kvm: Permission denied" >&2; exit 1`),
			want: AccelTCG, reason: "failed to initialize kvm: Permission denied",
		},
		{
			name: "qemu exits without a word", mode: AccelAuto, dev: dev, timeout: time.Minute,
			qemu: fakeScript(t, `exit 1`), want: AccelTCG, reason: "qemu exited before SeaBIOS finished: (no output)",
		},
		{
			name: "silence", mode: AccelAuto, dev: dev, timeout: 500 * time.Millisecond,
			qemu: fakeScript(t, `exec sleep 600`), want: AccelTCG, reason: "did not finish within 500ms",
		},
		{
			name: "working kvm", mode: AccelAuto, dev: dev, timeout: time.Minute,
			qemu: fakeScript(t, `echo "SeaBIOS (version 1.16.2-debian-1.16.2-1)"; echo "No bootable device."; exec sleep 600`),
			want: AccelKVM, reason: "SeaBIOS ran under KVM",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := AccelProbe{Device: tc.dev, QEMU: tc.qemu, Timeout: tc.timeout}
			got, err := p.Choose(t.Context(), tc.mode)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Choose(%s) = %v, %v; want an error with %q", tc.mode, got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Choose(%s): %v", tc.mode, err)
			}
			if got.Name != tc.want || !strings.Contains(got.Reason, tc.reason) {
				t.Errorf("Choose(%s) = %v; want %s with a reason holding %q", tc.mode, got, tc.want, tc.reason)
			}
		})
	}
}

// TestProbeMarkerUnderTCG runs the real probe on the real SeaBIOS under
// TCG: its marker is what SeaBIOS really prints, so a working KVM passes.
func TestProbeMarkerUnderTCG(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU")
	}
	hosttooltest.Need(t, "qemu-system-x86_64")
	p := AccelProbe{}
	p.defaults()
	if err := p.probeAccel(t.Context(), AccelTCG); err != nil {
		t.Fatalf("SeaBIOS under TCG did not reach %q: %v", probeMarker, err)
	}
}

// TestVMFailsFastOnDeadKVM boots a VM whose QEMU answers QMP, then reports
// a KVM internal error and hangs, deaf to SIGTERM (what QEMU does on a
// kvm-pvm host): the VM must stop, and the test's wait end, with QEMU's
// line in the error, long before any deadline. A QEMU that exits at once
// must fail the same way, with its own line.
func TestVMFailsFastOnDeadKVM(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a lab network")
	}
	roottest.Need(t, "a lab network")
	hosttooltest.Need(t, "ip")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.Symlink(self, filepath.Join(bin, "qemu-system-x86_64")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	for _, tc := range []struct{ mode, want string }{
		{"pvm", "KVM internal error. Suberror: 1"},
		{"exit", "could not configure /dev/net/tun"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			argsFile := filepath.Join(t.TempDir(), "args")
			t.Setenv(fakeQEMUEnv, tc.mode)
			t.Setenv(fakeQEMUEnv+"_ARGS", argsFile)
			// The deadline a hang would wait out; the test checks the
			// wait ended because the VM failed, not because of it.
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
			defer cancel()
			n, err := NewNetwork(ctx, NetworkConfig{OutDir: t.TempDir(), NoCapture: true, Accel: Accel{AccelKVM, "test"}})
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			vm, err := n.NewVM(ctx, VMConfig{Name: "dead", MaxBoots: 1})
			if err != nil {
				t.Fatal(err)
			}
			if err := vm.Start(ctx); err != nil {
				if strings.Contains(err.Error(), tc.want) {
					return // failed at launch, with QEMU's line
				}
				t.Fatal(err)
			}
			_, err = vm.WaitFor(ctx, regexp.MustCompile(`never printed`))
			if ctx.Err() != nil {
				t.Fatalf("the wait ran into its deadline: %v", err)
			}
			if !errors.Is(err, ErrVMStopped) || !errors.Is(err, ErrVMFailed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("WaitFor: %v\nwant ErrVMStopped and ErrVMFailed with %q", err, tc.want)
			}
			args, _ := os.ReadFile(argsFile)
			if !strings.Contains(string(args), "q35,accel=kvm,graphics=off") {
				t.Errorf("QEMU ran without the chosen accelerator:\n%s", args)
			}
			t.Logf("failed as wanted: %v", err)
		})
	}
}

// Command kiln-firstboot is the role OS's first-boot program, run by
// kiln-firstboot.service (installer/firstboot.Unit) at every boot and
// again after a failure; tasks already recorded under
// /var/lib/kiln/firstboot are skipped. It reports its phases to the gate's
// TLS port with the machine's certificate.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/u-root/u-root/pkg/efivarfs"

	"github.com/kilnlab/kiln/installer/cmdline"
	"github.com/kilnlab/kiln/installer/firstboot"
	"github.com/kilnlab/kiln/installer/gateclient"
	"github.com/kilnlab/kiln/pxe/api"
	"github.com/kilnlab/kiln/roles"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kiln-firstboot:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	machinePath := fs.String("machine", "/etc/kiln/machine.json", "the machine's plan and gate URL")
	stateDir := fs.String("state-dir", "/var/lib/kiln/firstboot", "where finished tasks are recorded")
	cmdlinePath := fs.String("cmdline", "/proc/cmdline", "kernel command line (for kiln.state=)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s [flags] [health]\n\nWithout an argument, run the first boot's phases (kiln-firstboot.service).\nhealth: check the services once and report them to the gate (kiln-health.service).\n\n", args[0])
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	health := false
	switch {
	case fs.NArg() == 1 && fs.Arg(0) == "health":
		health = true
	case fs.NArg() > 0:
		fs.Usage()
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	m, err := firstboot.LoadMachine(*machinePath)
	if err != nil {
		return err
	}
	env := &firstboot.Env{Log: log, Console: stdout, Machine: m, StatePartUUID: statePartUUID(*cmdlinePath)}
	env.HTTP, env.HTTPErr = reportClient(m)
	if health {
		env.EFIVars = efiVars(log)
		return env.ReportHealth(ctx, *stateDir)
	}
	runner := firstboot.Runner{Dir: *stateDir, Log: log}
	if env.HTTP != nil {
		runner.Report = env.HTTP
	} else {
		// The first boot goes on without the gate: the machine's own
		// work does not wait for a status page.
		log.Warn("the first-boot phases are not reported to the gate", "err", env.HTTPErr)
	}
	return runner.Run(ctx, env.Phases())
}

// reportClient talks to the gate's TLS port as this machine: its key and
// certificate (installed with its secrets), and the lab CA as the only
// trusted root.
func reportClient(m firstboot.Machine) (*gateclient.Client, error) {
	if m.Gate == "" {
		return nil, errors.New("no gate in machine.json")
	}
	var pem [3][]byte
	for i, p := range []string{roles.CACertPath, roles.MachineCertPath, roles.MachineKeyPath} {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("the machine's identity: %w", err)
		}
		pem[i] = b
	}
	hc, err := gateclient.TLSClient(pem[0], pem[1], pem[2])
	if err != nil {
		return nil, err
	}
	base := "https://" + net.JoinHostPort(m.Gate, strconv.Itoa(api.TLSPort))
	return &gateclient.Client{Base: base, MAC: m.MAC, HTTP: hc}, nil
}

// statePartUUID is the running kernel's kiln.state= (boot mode sets it).
func statePartUUID(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return cmdline.Parse(string(b)).State
}

// efiVars are the firmware's variables when the machine booted by UEFI
// (nil under BIOS, where the kernel has no /sys/firmware/efi).
func efiVars(log *slog.Logger) efivarfs.EFIVar {
	if _, err := os.Stat("/sys/firmware/efi"); err != nil {
		return nil
	}
	v, err := efivarfs.New()
	if err != nil {
		log.Warn("UEFI, but its variables cannot be read", "err", err)
		return nil
	}
	return v
}

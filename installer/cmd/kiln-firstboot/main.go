// Command kiln-firstboot is the role OS's first-boot program, run by
// kiln-firstboot.service (installer/firstboot.Unit) at every boot; tasks
// already recorded under /var/lib/kiln/firstboot are skipped.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/kilnlab/kiln/installer/cmdline"
	"github.com/kilnlab/kiln/installer/firstboot"
	"github.com/kilnlab/kiln/installer/gateclient"
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
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	m, err := firstboot.LoadMachine(*machinePath)
	if err != nil {
		return err
	}
	env := &firstboot.Env{Log: log, Console: stdout, Machine: m, StatePartUUID: statePartUUID(*cmdlinePath)}
	if m.GateURL != "" {
		env.HTTP = &gateclient.Client{Base: m.GateURL, MAC: m.MAC}
	}
	return firstboot.Runner{Dir: *stateDir, Log: log}.Run(ctx, env.Phases())
}

// statePartUUID is the running kernel's kiln.state= (boot mode sets it).
func statePartUUID(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return cmdline.Parse(string(b)).State
}

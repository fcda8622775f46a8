// Command kiln-init is the one kiln program in the initramfs.
//
//	kiln.mode=install  runs as u-root init's uinit: loads modules, gets a
//	                   DHCP lease on the NIC named by kiln.mac, installs
//	                   the machine from the gate, reboots.
//	kiln.mode=boot     runs as PID 1 (rdinit=/bbin/kiln-init): mounts the
//	                   pseudo filesystems, loads modules, mounts the role
//	                   root and state by PARTUUID, switch_roots to systemd.
//
// A failed install does not reboot: a reboot would netboot the installer
// again (or boot a half-written disk) in a loop. kiln-init returns instead,
// and u-root's init then starts its shell on the console, where the marker
// line and the log above it say what went wrong; the gate has been told.
// A failed boot as PID 1 execs that same shell (PID 1 must not exit).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/u-root/u-root/pkg/efivarfs"
	"golang.org/x/sys/unix"

	"github.com/kilnlab/kiln/image/initramfs/kmod"
	"github.com/kilnlab/kiln/installer/bootmode"
	"github.com/kilnlab/kiln/installer/cmdline"
	"github.com/kilnlab/kiln/installer/disks"
	"github.com/kilnlab/kiln/installer/gateclient"
	"github.com/kilnlab/kiln/installer/install"
	"github.com/kilnlab/kiln/installer/netup"
)

func main() {
	if err := run(context.Background(), os.Args, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "kiln-init:", err)
		if os.Getpid() == 1 {
			rescue(os.Stderr)
		}
		os.Exit(1)
	}
}

// rescue replaces a failed PID 1 with u-root's shell, so that the kernel
// does not panic and a person at the console can look around.
func rescue(stderr io.Writer) {
	for _, sh := range []string{"/bin/defaultsh", "/bbin/gosh", "/bin/sh"} {
		fmt.Fprintf(stderr, "kiln-init: starting %s\n", sh)
		_ = unix.Exec(sh, []string{sh}, os.Environ())
	}
	select {} // nothing to exec: stay alive rather than panic the kernel
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	line := fs.String("cmdline", "", "kernel command line to use instead of /proc/cmdline")
	noReboot := fs.Bool("no-reboot", false, "install mode: do not reboot after KILN-INSTALL-OK")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if os.Getpid() == 1 {
		if err := bootmode.PseudoFS("/"); err != nil {
			return err
		}
	}
	if *line == "" {
		b, err := os.ReadFile("/proc/cmdline")
		if err != nil {
			return err
		}
		*line = string(b)
	}
	p := cmdline.Parse(*line)
	loadModules(log)
	switch p.Mode {
	case "install":
		return installMode(ctx, log, p, stdout, stderr, *noReboot)
	case "boot":
		b := &bootmode.Booter{Log: log, Console: stdout, Disks: disks.Host(), NewRoot: "/newroot", Wait: 30 * time.Second, Init: "/sbin/init"}
		return b.Run(ctx, p)
	case "":
		return fmt.Errorf("no kiln.mode on the kernel command line")
	}
	return fmt.Errorf("unknown kiln.mode=%q", p.Mode)
}

// drainConsole waits until the console has shown what was written to
// it: reboot(2) does not wait, and the last lines, KILN-INSTALL-OK among
// them (the rehearsal, and a person at a serial console, wait for it),
// were lost now and then. u-root's init hands kiln-init a pipe, whose
// other end it copies to every console= tty: wait (bounded) until it
// has read the pipe, then until the console tty has sent its output.
func drainConsole(ws ...io.Writer) {
	for _, w := range ws {
		if f, ok := w.(*os.File); ok {
			waitPipeRead(int(f.Fd()), 2*time.Second)
			tcdrain(int(f.Fd()))
		}
	}
	if c, err := os.OpenFile("/dev/console", os.O_WRONLY|unix.O_NOCTTY, 0); err == nil {
		tcdrain(int(c.Fd()))
		c.Close()
	}
}

// waitPipeRead waits until nothing written to fd is left unread, if fd is
// a pipe (FIONREAD, alias TIOCINQ, counts the bytes in it from either
// end), for at most limit; then a moment for the reader to pass them on.
func waitPipeRead(fd int, limit time.Duration) {
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		n, err := unix.IoctlGetInt(fd, unix.TIOCINQ) // FIONREAD
		if err != nil {
			return // not a pipe (nor a socket): nothing queued here
		}
		if n == 0 {
			time.Sleep(100 * time.Millisecond)
			return
		}
	}
}

// tcdrain waits until a tty has sent its output; on anything else
// (ENOTTY) there is nothing to wait for.
func tcdrain(fd int) { _ = unix.IoctlSetInt(fd, unix.TCSBRK, 1) }

func loadModules(log *slog.Logger) {
	dir, err := kmod.Dir("/")
	if err != nil {
		log.Warn("modules", "err", err)
		return
	}
	n, err := kmod.Loader{Dir: dir, Log: log}.LoadAll()
	if err != nil {
		log.Warn("some modules did not load", "err", err)
	}
	log.Info("modules loaded", "count", n, "dir", dir)
}

// efiVars is the UEFI firmware's variable store, nil under BIOS (or when
// it cannot be had: the install goes on, see install.Installer.EFIVars).
// u-root's init mounts efivarfs before kiln-init loads modules, and
// Debian's kernel has efivarfs as a module: so it is mounted here.
func efiVars(log *slog.Logger) efivarfs.EFIVar {
	if _, err := os.Stat("/sys/firmware/efi"); err != nil {
		return nil
	}
	v, err := efivarfs.New()
	if err != nil {
		if err := unix.Mount("efivarfs", efivarfs.DefaultVarFS, "efivarfs", 0, ""); err != nil {
			log.Warn("mount efivarfs", "err", err)
			return nil
		}
		if v, err = efivarfs.New(); err != nil {
			log.Warn("efivarfs", "err", err)
			return nil
		}
	}
	return v
}

func installMode(ctx context.Context, log *slog.Logger, p cmdline.Params, console, stderr io.Writer, noReboot bool) error {
	in := &install.Installer{
		Log:     log,
		Console: console,
		Gate:    &gateclient.Client{Base: p.Gate, MAC: p.MAC, Token: p.Token, HTTP: gateclient.NewHTTP()},
		Disks:   disks.Host(),
		Name:    p.MAC,
		Secrets: install.MountApply(disks.Host(), "/run/kiln-state"),
		EFIVars: efiVars(log),
	}
	if err := p.Need("kiln.gate", "kiln.mac", "kiln.token"); err != nil {
		if in.Name == "" {
			in.Name = "unknown"
		}
		return in.Refuse(ctx, err)
	}
	if _, _, err := netup.DHCP(ctx, log, p.MAC); err != nil {
		return in.Refuse(ctx, err)
	}
	if err := in.Run(ctx); err != nil {
		return err
	}
	if noReboot {
		return nil
	}
	drainConsole(console, stderr)
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
		return fmt.Errorf("reboot: %w", err)
	}
	return nil
}

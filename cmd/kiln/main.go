// Command kiln turns one lab profile into a running bare-metal lab: it
// validates and plans the profile, builds the netboot bundle and role
// images, serves them from the gate, and rehearses the whole lab in QEMU.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		os.Exit(exitCode(err)) // run has said it
	}
}

// Command upstream builds the rehearsals' Consul and Vault and puts a
// lab's upstream programs into its record (package upstream), for
// `make demo` and `make upstream`:
//
//	go run ./qemu-tests/upstream/cmd build -out DIR
//	go run ./qemu-tests/upstream/cmd prepare -kiln KILN -bin DIR -lab-dir DIR [PROFILE]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/qemu-tests/upstream"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "upstream:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: upstream build -out DIR | prepare -kiln KILN -bin DIR -lab-dir DIR [PROFILE]")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "out/upstream", "build: where the programs go (NAME-VERSION)")
	src := fs.String("src", ".", "build: kiln's source tree")
	kiln := fs.String("kiln", "out/bin/kiln", "prepare: the kiln binary")
	bin := fs.String("bin", "out/upstream", "prepare: where build put the programs")
	labDir := fs.String("lab-dir", "", "prepare: the lab's state directory (kiln build --secrets)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	switch args[0] {
	case "build":
		return upstream.Build(ctx, *src, *out, stdout)
	case "prepare":
		if *labDir == "" {
			return errors.New("prepare needs -lab-dir")
		}
		p, err := profiles.Default()
		if fs.NArg() == 1 {
			p, err = profiles.Load(fs.Arg(0))
		}
		if err != nil {
			return err
		}
		work, err := os.MkdirTemp("", "kiln-upstream-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(work)
		return upstream.Prepare(ctx, *kiln, *labDir, *bin, work, upstream.NeedsOf(p), stdout)
	}
	return fmt.Errorf("unknown command %q (build or prepare)", args[0])
}

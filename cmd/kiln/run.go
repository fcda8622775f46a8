package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// command is one kiln subcommand. Commands with subcommands of their own
// (gate, artifacts) dispatch again with the same table shape.
type command struct {
	usage   string // one line: "validate [PROFILE]"
	summary string
	run     func(ctx context.Context, env *cli, args []string) error
}

// cli carries the output streams down to the commands; there is no
// package-level state.
type cli struct {
	stdout, stderr io.Writer
	verbose        bool   // -v
	logFormat      string // --log-format: logText or logJSON
}

// usageError marks errors of the command line itself: exit code 2, and the
// command's usage is printed.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

func commands() map[string]command {
	return map[string]command{
		"validate":  {"validate [PROFILE]", "check a profile; exits non-zero on any problem", runValidate},
		"plan":      {"plan [--json] [PROFILE]", "show what kiln will do to each machine and disk", runPlan},
		"lock":      {"lock [--lock FILE]", "re-pin every Debian input (needs the network)", runLock},
		"build":     {"build [-o DIR] [PROFILE]", "build the netboot bundle, role images and the gate's SD image", runBuild},
		"gate":      {"gate run|serve|machines|reinstall|wireguard-peer", "the gate: appliance, netboot service, states, tunnel", runGate},
		"flash":     {"flash [--force] IMAGE DEVICE", "write the gate's SD card image to a card, then read it back", runFlash},
		"rehearse":  {"rehearse [--bundle DIR] [PROFILE]", "the lab in QEMU: the gate from its image, the servers netbooted and installed", runRehearse},
		"artifacts": {"artifacts list|fetch|import", "upstream release files (Consul, Vault, k3s): pins, fetch + verify, import", runArtifacts},
		"schema":    {"schema", "print the profile's JSON Schema (for editors: completion and checks)", runSchema},
		"vault":     {"vault status|unseal|root-token", "the lab's Vault as the gate keeps it: seal status, unseal, root token", runVault},
	}
}

// run runs the kiln command line args; an error it returns it has
// already said on stderr (main only exits with its code).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	env := &cli{stdout: stdout, stderr: stderr, logFormat: logText}
	err := runCommand(ctx, env, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		reportError(env, err)
	}
	return err
}

func runCommand(ctx context.Context, env *cli, args []string) error {
	cmds := commands()
	global := flag.NewFlagSet("kiln", flag.ContinueOnError)
	global.SetOutput(env.stderr)
	global.Usage = func() { printUsage(env.stdout, "kiln", cmds) }
	addLogFlags(env, global)
	if err := global.Parse(args); err != nil {
		return flagError(err)
	}
	args = global.Args()
	if len(args) == 0 || args[0] == "help" {
		printUsage(env.stdout, "kiln", cmds)
		return nil
	}
	c, ok := cmds[args[0]]
	if !ok {
		printUsage(env.stderr, "kiln", cmds)
		return usagef("unknown command %q", args[0])
	}
	return c.run(ctx, env, args[1:])
}

// dispatch runs the subcommand args[0] of a command with subcommands of
// its own (prog is "kiln artifacts"), or prints their usage.
func dispatch(ctx context.Context, env *cli, prog string, cmds map[string]command, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		printUsage(env.stdout, prog, cmds)
		return nil
	}
	c, ok := cmds[args[0]]
	if !ok {
		printUsage(env.stderr, prog, cmds)
		return usagef("unknown %s command %q", strings.TrimPrefix(prog, "kiln "), args[0])
	}
	return c.run(ctx, env, args[1:])
}

func printUsage(w io.Writer, prog string, cmds map[string]command) {
	fmt.Fprintf(w, "usage: %s COMMAND [flags]\n\n", prog)
	fmt.Fprintf(w, "PROFILE defaults to the embedded reference lab (homelab.yaml).\n\ncommands:\n")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	width := 0
	for _, n := range names {
		width = max(width, len(cmds[n].usage))
	}
	for _, n := range names {
		fmt.Fprintf(w, "  %-*s  %s\n", width, cmds[n].usage, cmds[n].summary)
	}
	fmt.Fprintf(w, "\nRun '%s COMMAND -h' for a command's flags; they may come before or after its\narguments, and -- ends them. Every command also takes -v (log debug detail)\nand --log-format text|json (the structured log on stderr; progress and\nresults go to stdout).\n", prog)
}

// newFlags returns a FlagSet that reports errors instead of exiting and
// prints its usage to stderr.
func newFlags(env *cli, usage, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet(strings.Fields(usage)[0], flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	addLogFlags(env, fs)
	fs.Usage = func() {
		fmt.Fprintf(env.stderr, "usage: kiln %s\n\n%s\n", usage, summary)
		if hasFlags(fs) {
			fmt.Fprintln(env.stderr, "\nflags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// parseFlags parses args, flags before or after the positional arguments
// (`kiln build PROFILE -o DIR`, as most CLIs allow); "--" ends the flags.
// fs.Args() is then the positional arguments, in order. A usage error
// carries the flag package's message.
func parseFlags(fs *flag.FlagSet, args []string) error {
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return flagError(err)
		}
		rest := fs.Args()
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			pos = append(pos, rest...) // everything after "--" is positional
			break
		}
		if len(rest) == 0 {
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	// Parse stops at "--" without touching the flags already set: this
	// leaves fs.Args() holding the positional arguments.
	return fs.Parse(append([]string{"--"}, pos...))
}

// flagError is a flag package error as kiln returns it: ErrHelp as is,
// anything else a usage error carrying the flag package's message.
func flagError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	return usageError{err.Error()}
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

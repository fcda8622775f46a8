package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/kilnlab/kiln/profiles"
)

// Output: the structured log (log/slog, what a program or a bug report
// reads) goes to stderr, as text or JSON lines (--log-format), at info
// level, debug with -v; human progress and results go to stdout. So
// `kiln build 2>log.json` leaves a clean terminal and a log a program can
// read.

const (
	logText = "text"
	logJSON = "json"
)

// addLogFlags registers -v and --log-format on fs, bound to env: the kiln
// command line takes them before the command, every command after it.
// Each starts from env's current value, so a command's own flag set
// does not undo the global flags.
func addLogFlags(env *cli, fs *flag.FlagSet) {
	fs.BoolVar(&env.verbose, "v", env.verbose, "log debug detail")
	fs.Func("log-format", "the structured log on stderr: text or json (default text)", func(s string) error {
		if s != logText && s != logJSON {
			return fmt.Errorf("want text or json, got %q", s)
		}
		env.logFormat = s
		return nil
	})
}

// logger is the structured log on stderr, at info level (debug with -v).
func (env *cli) logger() *slog.Logger { return env.loggerTo(env.stderr, slog.LevelInfo) }

// loggerTo is the structured log on w from level on (debug with -v), in
// the --log-format.
func (env *cli) loggerTo(w io.Writer, level slog.Level) *slog.Logger {
	if env.verbose {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	if env.logFormat == logJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// printWarnings says what validation found questionable but valid, one
// located line each on stderr as compilers print warnings; with
// --log-format json, one warning record each, with the place as fields.
func printWarnings(env *cli, p *profiles.Profile) {
	for _, pr := range p.Warnings {
		if env.logFormat == logJSON {
			env.logger().Warn(pr.Msg, "file", pr.File, "line", pr.Line, "col", pr.Col, "field", pr.Field)
			continue
		}
		fmt.Fprintf(env.stderr, "warning: %s\n", pr)
	}
}

// reportError says err on stderr: "kiln: ERR", or an error record with
// --log-format json.
func reportError(env *cli, err error) {
	if env.logFormat == logJSON {
		env.loggerTo(env.stderr, slog.LevelError).Error(err.Error(), "exit", exitCode(err))
		return
	}
	fmt.Fprintln(env.stderr, "kiln:", err)
}

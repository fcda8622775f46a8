// Command k3s is a STAND-IN for k3s, openly labelled: it is not
// Kubernetes. k3s cannot be had on the machine kiln is developed on (the Go
// module proxy refuses it, Debian does not package it, GitHub is
// unreachable), so kiln's rehearsal proves its k3s path (fetch, verify,
// install, config, unit, airgap images, manifests) with this program in
// k3s's place, served as a "release" laid out like k3s's (package
// standin, Release). Stdlib only; it builds for linux/amd64 and arm64
// with CGO_ENABLED=0.
//
//	k3s --version    k3s version v0.0.0-kiln-standin (STAND-IN: ...)
//	k3s server       check what kiln installed, as the server, then run
//	k3s agent        the same, as an agent
//	k3s check        print the status; exit 0 when every check passed
//
// server and agent read /etc/rancher/k3s/config.yaml (or --config FILE,
// or $K3S_CONFIG_FILE) and the token file it names (non-empty, mode 0600,
// never shown), check that the airgap images directory holds a tarball
// and, as the server, that every manifest of the auto-deploy directory is
// YAML of objects with apiVersion, kind and metadata.name; they write what
// they checked to /run/k3s-standin/status.json ("standin": true), tell
// systemd READY=1 (Type=notify, as k3s does) and run until SIGTERM,
// whatever the checks found: the status says it, for `k3s check`.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// Version is what the stand-in reports, and Banner what it says it is.
const (
	Version = "v0.0.0-kiln-standin"
	Banner  = "STAND-IN: not Kubernetes; kiln's rehearsal only"
)

// Default paths, as k3s and kiln use them.
const (
	defaultConfig = "/etc/rancher/k3s/config.yaml"
	statusPath    = "/run/k3s-standin/status.json"
)

// Status is status.json.
type Status struct {
	Standin bool   `json:"standin"`
	Note    string `json:"note"`
	Version string `json:"version"`
	Role    string `json:"role"`
	// OK: every check passed.
	OK      bool      `json:"ok"`
	Checks  []Check   `json:"checks"`
	Started time.Time `json:"started"`
	PID     int       `json:"pid"`
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the command line; it returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "usage: k3s --version | server | agent | check (%s)\n", Banner)
		return 2
	}
	switch args[0] {
	case "--version", "-v", "version":
		fmt.Fprintf(stdout, "k3s version %s (%s)\n", Version, Banner)
		return 0
	case "check":
		return check(statusPath, stdout, stderr)
	case "server", "agent":
		config, err := configPath(args[1:])
		if err != nil {
			fmt.Fprintf(stderr, "k3s %s: %v\n", args[0], err)
			return 2
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		if err := serve(ctx, args[0], config, statusPath, stderr); err != nil {
			fmt.Fprintf(stderr, "k3s %s: %v\n", args[0], err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "k3s: %q is not something the stand-in does (%s)\n", args[0], Banner)
	return 2
}

// configPath takes --config/-c FILE, else $K3S_CONFIG_FILE, else k3s's
// default. Other flags are refused: kiln configures k3s in config.yaml.
func configPath(args []string) (string, error) {
	path := os.Getenv("K3S_CONFIG_FILE")
	for len(args) > 0 {
		switch {
		case (args[0] == "--config" || args[0] == "-c") && len(args) > 1:
			path, args = args[1], args[2:]
		default:
			return "", fmt.Errorf("flag %q: the stand-in reads its configuration from config.yaml only", args[0])
		}
	}
	if path == "" {
		path = defaultConfig
	}
	return path, nil
}

// serve checks, writes the status, tells systemd it is ready and waits
// for the end; the status goes away with the stand-in, so that `k3s
// check` never reports a stopped one as running.
func serve(ctx context.Context, role, config, status string, stderr io.Writer) error {
	fmt.Fprintf(stderr, "k3s %s %s: %s\n", role, Version, Banner)
	st := checks(role, config)
	for _, c := range st.Checks {
		fmt.Fprintf(stderr, "check %s: %s: %s\n", c.Name, map[bool]string{true: "ok", false: "FAILED"}[c.OK], c.Detail)
	}
	if err := writeStatus(status, st); err != nil {
		return err
	}
	defer os.Remove(status)
	summary := fmt.Sprintf("%s (stand-in): %d of %d checks passed", role, passed(st.Checks), len(st.Checks))
	if err := notify("READY=1\nSTATUS=" + summary); err != nil {
		return err
	}
	fmt.Fprintln(stderr, summary)
	<-ctx.Done()
	notify("STOPPING=1")
	return nil
}

// checks runs the role's checks in order; each runs even when one before
// it failed, so the status shows everything wrong at once.
func checks(role, config string) Status {
	c, conf := checkConfig(role, config)
	st := Status{
		Standin: true, Note: Banner, Version: Version, Role: role,
		Started: time.Now().UTC(), PID: os.Getpid(),
		Checks: []Check{conf, checkToken(c.TokenFile), checkImages(filepath.Join(c.DataDir, "agent", "images"))},
	}
	if role == "server" {
		st.Checks = append(st.Checks, checkManifests(filepath.Join(c.DataDir, "server", "manifests")))
	}
	st.OK = passed(st.Checks) == len(st.Checks)
	return st
}

func passed(cs []Check) int {
	n := 0
	for _, c := range cs {
		if c.OK {
			n++
		}
	}
	return n
}

// writeStatus writes the status whole (a reader never sees half of it).
func writeStatus(path string, st Status) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// notify sends state to systemd's notification socket, as sd_notify(3)
// does; nothing when not started by systemd as Type=notify. Go's net
// maps a leading @ to Linux's abstract namespace.
func notify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	return nil
}

// check prints the running stand-in's status; 0 when every check passed.
func check(path string, stdout, stderr io.Writer) int {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(stderr, "k3s check: no %s: the stand-in is not running (%s)\n", path, Banner)
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "k3s check: %v\n", err)
		return 1
	}
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		fmt.Fprintf(stderr, "k3s check: %s: %v\n", path, err)
		return 1
	}
	stdout.Write(b)
	if !st.Standin || !st.OK || len(st.Checks) == 0 || slices.ContainsFunc(st.Checks, func(c Check) bool { return !c.OK }) {
		return 1
	}
	return 0
}

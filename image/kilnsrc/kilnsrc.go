// Package kilnsrc finds the kiln source a build compiles kiln's own
// programs from (the installer's and the gate's initramfs, kiln-firstboot)
// and compiles them. That is the kiln checkout the command runs in, or,
// for a kiln installed on its own (`go install
// github.com/kilnlab/kiln/cmd/kiln@VERSION`), the kiln module at the
// binary's own version, fetched by the Go toolchain through the user's
// GOPROXY and GOFLAGS, as gok builds gokrazy images: the programs on the
// images then match the kiln that built them.
package kilnsrc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
)

// ModulePath is kiln's module.
const ModulePath = "github.com/kilnlab/kiln"

// ErrNoToolchain: the go command is not on PATH.
var ErrNoToolchain = errors.New("kiln build compiles the installer and the gate's programs with the Go toolchain, " +
	"and there is no go command on PATH: install Go (the version kiln's go.mod names, or later) from https://go.dev/dl")

// Source is where a build compiles from.
type Source struct {
	Dir string
	// Version is the module version fetched; "" for a checkout.
	Version string
	// Remove deletes the fetched copy (a no-op for a checkout).
	Remove func() error
}

// Find returns the source: dir when given (--src), else the checkout
// around wd, else the kiln module at version (the binary's own, from
// BinaryVersion) copied into a temporary directory.
func Find(ctx context.Context, dir, wd, version string) (Source, error) {
	if _, err := exec.LookPath("go"); err != nil {
		return Source{}, ErrNoToolchain
	}
	keep := func() error { return nil }
	if dir != "" {
		if !IsModule(dir) {
			return Source{}, fmt.Errorf("%s: no go.mod for %s there", dir, ModulePath)
		}
		abs, err := filepath.Abs(dir)
		return Source{Dir: abs, Remove: keep}, err
	}
	for d := wd; d != ""; d = parent(d) {
		if IsModule(d) {
			return Source{Dir: d, Remove: keep}, nil
		}
	}
	if version == "" {
		return Source{}, errors.New("this kiln was built from a source tree, not installed at a version, and runs outside one: " +
			"run it inside that tree, pass --src DIR, or install a released kiln (go install " + ModulePath + "/cmd/kiln@VERSION)")
	}
	return Fetch(ctx, version)
}

func parent(d string) string {
	if p := filepath.Dir(d); p != d {
		return p
	}
	return ""
}

// BinaryVersion is the kiln module version this program was built from,
// when it was built as a module at a version (go install ...@VERSION);
// "" for a build in a checkout ("(devel)", or a VCS pseudo-version of a
// tree with local changes, which no proxy holds).
func BinaryVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Main.Path != ModulePath {
		return ""
	}
	return moduleVersion(bi.Main.Version)
}

func moduleVersion(v string) string {
	if v == "" || v == "(devel)" || strings.HasSuffix(v, "+dirty") {
		return ""
	}
	return v
}

// Fetch downloads the kiln module at version with `go mod download` (the
// module cache, GOPROXY, GONOSUMDB and GOFLAGS as the user set them) and
// copies it into a temporary directory, writable: the module cache is
// read-only and the builds write beside the sources.
func Fetch(ctx context.Context, version string) (Source, error) {
	empty, err := os.MkdirTemp("", "kiln-src-")
	if err != nil {
		return Source{}, err
	}
	remove := func() error { return os.RemoveAll(empty) }
	// Outside any module: the download must not read or touch a go.mod
	// of the working directory.
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", ModulePath+"@"+version)
	cmd.Dir = empty
	out, err := cmd.Output()
	var m struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &m); jerr == nil && m.Error != "" {
		err = errors.New(m.Error)
	}
	if err == nil && m.Dir == "" {
		err = errors.New("no module directory in go mod download's answer")
	}
	if err != nil {
		remove()
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return Source{}, fmt.Errorf("fetch %s@%s (the source of this kiln, to compile the installer from): %w", ModulePath, version, err)
	}
	dst := filepath.Join(empty, "kiln")
	if err := os.CopyFS(dst, os.DirFS(m.Dir)); err != nil {
		remove()
		return Source{}, fmt.Errorf("copy %s: %w", m.Dir, err)
	}
	return Source{Dir: dst, Version: version, Remove: remove}, nil
}

// IsModule reports whether dir holds kiln's go.mod.
func IsModule(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if fields := strings.Fields(s.Text()); len(fields) == 2 && fields[0] == "module" {
			return fields[1] == ModulePath
		}
	}
	return false
}

// GoBuild compiles the kiln command pkg (./installer/cmd/...) of the
// source in dir, static, for linux/goarch, into out: -trimpath, no build
// ID, no VCS stamp, so that the same source gives the same bytes from a
// checkout or a fetched module.
func GoBuild(ctx context.Context, dir, out, pkg, goarch string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, msg)
	}
	return nil
}

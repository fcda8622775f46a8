// Package upstream brings a rehearsal's lab its upstream programs the way
// a user would, through kiln's own artifact commands:
//
//   - real Consul and Vault, built unpatched from the Go module proxy at
//     MPL-2.0 releases (consul/ and vault/ hold a go.mod each that requires
//     the release and its submodules, and a tools.go importing its main
//     package: the releases' own go.mod files carry replace directives, so
//     `go install` refuses them), then `kiln artifacts import --version`;
//   - k3s, which cannot be had here, as the labelled stand-in of
//     qemu-tests/standin, laid out as a k3s release and served by a local
//     HTTP server to `kiln artifacts fetch --base`, so that kiln's real
//     fetch-and-verify code takes it.
//
// Consul 1.15 and later need consul/envoyextensions and consul/troubleshoot,
// which are not open-source licences, and Vault 1.14.4 and later are not
// MPL-2.0: these are the newest releases that may be built here.
package upstream

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/qemu-tests/standin"
)

// Versions the rehearsals run.
const (
	ConsulVersion = "1.14.8"
	VaultVersion  = "1.13.2"
	// K3sStandinVersion names the stand-in's release: no real k3s has it,
	// so a lab's record can never mistake it for one.
	K3sStandinVersion = "v0.0.0-kiln-standin+k3s1"
)

// programs are the upstream programs built here: artifact name, version,
// module directory (under this package) and main package.
var programs = []struct{ name, version, dir, pkg string }{
	{"consul", ConsulVersion, "consul", "github.com/hashicorp/consul"},
	{"vault", VaultVersion, "vault", "github.com/hashicorp/vault"},
}

// Binary is where Build puts an upstream program in out.
func Binary(out, name, version string) string {
	return filepath.Join(out, name+"-"+version)
}

// Build compiles Consul and Vault into out (CGO_ENABLED=0, -trimpath,
// stripped) unless already there; src is kiln's source tree. Each takes a
// few minutes and about 1.5 GB of memory the first time.
func Build(ctx context.Context, src, out string, log io.Writer) error {
	// go build runs in the module's directory: a relative -o would land there.
	out, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, p := range programs {
		bin := Binary(out, p.name, p.version)
		if _, err := os.Stat(bin); err == nil {
			fmt.Fprintf(log, "upstream: %s %s already built: %s\n", p.name, p.version, bin)
			continue
		}
		fmt.Fprintf(log, "upstream: building %s %s from the Go module proxy (a few minutes)...\n", p.name, p.version)
		tmp := bin + ".tmp"
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", tmp, p.pkg)
		cmd.Dir = filepath.Join(src, "qemu-tests", "upstream", p.dir)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Run(); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("build %s %s: %w", p.name, p.version, err)
		}
		if err := checkVersion(ctx, tmp, p.version, log); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("built %s %s: %w", p.name, p.version, err)
		}
		if err := os.Rename(tmp, bin); err != nil {
			return err
		}
	}
	return nil
}

// checkVersion runs the program just built, so that one that dies before
// main (as Vault 1.13 did in an init of a dependency, see vault/go.mod)
// is never kept, and checks it says its version.
func checkVersion(ctx context.Context, bin, version string, log io.Writer) error {
	out, err := exec.CommandContext(ctx, bin, "version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s version: %w: %s", bin, err, firstLines(out, 5))
	}
	if !strings.Contains(string(out), "v"+version) {
		return fmt.Errorf("%s version says %q, want v%s", bin, firstLines(out, 1), version)
	}
	fmt.Fprintf(log, "upstream: %s\n", firstLines(out, 1))
	return nil
}

func firstLines(b []byte, n int) string {
	lines := strings.SplitN(strings.TrimSpace(string(b)), "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

// Needs says which upstream programs a lab runs.
type Needs struct{ Consul, Vault, K3s bool }

// Prepare puts what the lab needs into its record (labDir), with the kiln
// binary at kiln: the built Consul and Vault from bin (Build's out) by
// import, the k3s stand-in by fetch from a local server (made under
// work). Each command's output goes to log.
func Prepare(ctx context.Context, kiln, labDir, bin, work string, n Needs, log io.Writer) error {
	kilnCmd := func(args ...string) error {
		cmd := exec.CommandContext(ctx, kiln, args...)
		cmd.Stdout, cmd.Stderr = log, log
		fmt.Fprintf(log, "upstream: kiln %s\n", strings.Join(args, " "))
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("kiln %s: %w", strings.Join(args, " "), err)
		}
		return nil
	}
	for _, p := range programs {
		if (p.name == "consul" && !n.Consul) || (p.name == "vault" && !n.Vault) {
			continue
		}
		file := Binary(bin, p.name, p.version)
		if _, err := os.Stat(file); err != nil {
			return fmt.Errorf("%s %s is not built (make upstream, or upstream.Build): %w", p.name, p.version, err)
		}
		if err := kilnCmd("artifacts", "import", "--lab-dir", labDir, "--version", p.version, p.name+"="+file); err != nil {
			return err
		}
	}
	if !n.K3s {
		return nil
	}
	return fetchStandin(ctx, kilnCmd, labDir, work)
}

// fetchStandin serves the stand-in k3s release on loopback while kiln
// fetches it through its real fetch-and-verify code.
func fetchStandin(ctx context.Context, kilnCmd func(...string) error, labDir, work string) error {
	root := filepath.Join(work, "k3s-release")
	if _, err := standin.K3sRelease(ctx, filepath.Join(root, K3sStandinVersion)); err != nil {
		return fmt.Errorf("k3s stand-in release: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(root))}
	go srv.Serve(ln)
	defer srv.Close()
	return kilnCmd("artifacts", "fetch", "--lab-dir", labDir, "--base", "k3s=http://"+ln.Addr().String(),
		"--version", K3sStandinVersion, "k3s")
}

// NeedsOf says what lab p runs.
func NeedsOf(p *profiles.Profile) Needs {
	s := p.Services
	if s == nil {
		return Needs{}
	}
	return Needs{Consul: s.Consul != nil, Vault: s.Vault != nil, K3s: s.K3s != nil && len(p.K3sNodes()) > 0}
}

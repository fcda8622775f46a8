// Package standin makes stand-ins for upstream releases that cannot be
// fetched where kiln is developed, so that kiln's real fetch, verify and
// install code runs on them in tests and the rehearsal, served from a
// local HTTP server. Every stand-in says what it is.
//
// K3sRelease is k3s's: the stand-in program of ./k3s (not Kubernetes) and
// an airgap images tarball holding a README, laid out and checksummed as
// a k3s GitHub release is.
package standin

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// K3sProgram is the stand-in k3s's Go package.
const K3sProgram = "github.com/kilnlab/kiln/qemu-tests/standin/k3s"

// k3sArches are the arches kiln pins k3s for.
var k3sArches = []string{"amd64", "arm64"}

// K3sFiles are the names of a k3s release's files for arch, as k3s's
// scripts (validate-artifacts, install.sh) name them: the binary, the
// airgap images and the checksum list covering both.
func K3sFiles(arch string) (binary, images, sums string) {
	binary = "k3s"
	if arch != "amd64" {
		binary += "-" + arch
	}
	return binary, "k3s-airgap-images-" + arch + ".tar.zst", "sha256sum-" + arch + ".txt"
}

// K3sRelease writes a stand-in k3s release into dir (made if missing):
// for amd64 and arm64 the stand-in program built with CGO_ENABLED=0,
// k3s-airgap-images-ARCH.tar.zst, and sha256sum-ARCH.txt with
// "<sha256>  <name>" lines as k3s publishes them. Served as
// BASE/<version>/ (a directory named like the tag, v1.33.6+k3s1, which
// URLs spell v1.33.6%2Bk3s1), it is what kiln's fetch expects of
// https://github.com/k3s-io/k3s/releases/download.
//
// It needs the Go toolchain (the go on PATH), run inside kiln's module,
// and Debian's zstd. It returns each file's sha256 by name.
func K3sRelease(ctx context.Context, dir string) (map[string]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	sums := map[string]string{}
	for _, arch := range k3sArches {
		binary, images, list := K3sFiles(arch)
		if err := buildK3s(ctx, arch, filepath.Join(dir, binary)); err != nil {
			return nil, err
		}
		if err := airgapImages(ctx, arch, filepath.Join(dir, images)); err != nil {
			return nil, err
		}
		lines, err := sumLines(dir, binary, images)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, list), []byte(lines), 0o644); err != nil {
			return nil, err
		}
		for _, name := range []string{binary, images, list} {
			if sums[name], err = fileSHA256(filepath.Join(dir, name)); err != nil {
				return nil, err
			}
		}
	}
	return sums, nil
}

// buildK3s builds the stand-in for arch; -trimpath and no build ID make
// two builds of the same source the same bytes.
func buildK3s(ctx context.Context, arch, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=", "-o", out, K3sProgram)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("standin: build k3s for %s: %w: %s", arch, err, bytes.TrimSpace(b))
	}
	return nil
}

// readme is the one file of the stand-in airgap images.
func readme(arch string) string {
	return fmt.Sprintf(`STAND-IN airgap images for kiln's rehearsal (%s): no container images.
A real k3s-airgap-images-%s.tar.zst holds k3s's system images (pause,
coredns, ...), which k3s imports from /var/lib/rancher/k3s/agent/images/.
The k3s beside this file is a stand-in too: not Kubernetes.
`, arch, arch)
}

// airgapImages writes a zstd tar holding the README. The tar has fixed
// times and owners and zstd is deterministic, so the bytes are too.
func airgapImages(ctx context.Context, arch, out string) error {
	var t bytes.Buffer
	tw := tar.NewWriter(&t)
	body := readme(arch)
	hdr := &tar.Header{Name: "README", Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := tw.Write([]byte(body)); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "zstd", "-q", "-c", "--no-progress")
	cmd.Stdin = &t
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	z, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("standin: zstd: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	return os.WriteFile(out, z, 0o644)
}

// sumLines is sha256sum's output for names in dir, sorted by name.
func sumLines(dir string, names ...string) (string, error) {
	names = slices.Sorted(slices.Values(names))
	var b strings.Builder
	for _, n := range names {
		sum, err := fileSHA256(filepath.Join(dir, n))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s  %s\n", sum, n)
	}
	return b.String(), nil
}

func fileSHA256(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

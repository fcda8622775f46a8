package qemutests

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// kilnCache is kiln's download cache: $KILN_CACHE, else <user cache>/kiln.
func kilnCache() (string, error) {
	if d := os.Getenv("KILN_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "kiln"), nil
}

// debianKernel returns a Debian amd64 kernel (vmlinuz) for tests that only
// need a kernel: $KILN_TEST_KERNEL, else one extracted earlier, else from a
// linux-image-*-amd64 .deb already in kiln's cache, else from one
// `apt-get download`ed into the cache (the only network use, once).
func debianKernel(t *testing.T, ctx context.Context) string {
	t.Helper()
	if k := os.Getenv("KILN_TEST_KERNEL"); k != "" {
		return k
	}
	cache, err := kilnCache()
	if err != nil {
		skipOrFail(t, "no cache folder for the test kernel: %v", err)
	}
	dir := filepath.Join(cache, "qemu-tests")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if ks, _ := filepath.Glob(filepath.Join(dir, "vmlinuz-*-amd64")); len(ks) > 0 {
		return ks[len(ks)-1]
	}
	deb, err := findKernelDeb(cache)
	if err != nil {
		t.Fatal(err)
	}
	if deb == "" {
		if deb, err = downloadKernelDeb(ctx, dir); err != nil {
			skipOrFail(t, "no Debian kernel: %v", err)
		}
	}
	k, err := extractVmlinuz(ctx, deb, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("test kernel %s (from %s)", k, deb)
	return k
}

var kernelDeb = regexp.MustCompile(`^linux-image-[0-9.]+-[0-9]+-amd64_.*_amd64\.deb$`)

// findKernelDeb looks anywhere under the cache for a signed amd64 kernel
// package (the artifact fetcher's or a previous download).
func findKernelDeb(cache string) (string, error) {
	var found string
	err := filepath.WalkDir(cache, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return fs.SkipAll
		}
		if err != nil {
			return err
		}
		if !d.IsDir() && kernelDeb.MatchString(d.Name()) {
			found = p
		}
		return nil
	})
	return found, err
}

// downloadKernelDeb fetches the package linux-image-amd64 depends on today
// (e.g. linux-image-6.1.0-56-amd64) with apt-get, into dir.
func downloadKernelDeb(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", "linux-image-amd64").Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends linux-image-amd64: %w", err)
	}
	m := regexp.MustCompile(`Depends: (linux-image-[0-9.]+-[0-9]+-amd64)\b`).FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("apt-cache depends linux-image-amd64: no kernel package in %q", out)
	}
	download := func() error {
		cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", string(m[1]))
		cmd.Dir = dir
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get download %s: %w\n%s", m[1], err, b)
		}
		return nil
	}
	if err := download(); err != nil {
		// Stale package lists name a version the mirror no longer has.
		if b, uerr := exec.CommandContext(ctx, "apt-get", "update", "-q").CombinedOutput(); uerr != nil {
			return "", errors.Join(err, fmt.Errorf("apt-get update: %w\n%s", uerr, b))
		}
		if err := download(); err != nil {
			return "", err
		}
	}
	debs, _ := filepath.Glob(filepath.Join(dir, string(m[1])+"_*_amd64.deb"))
	if len(debs) == 0 {
		return "", fmt.Errorf("apt-get download %s: no .deb in %s", m[1], dir)
	}
	return debs[len(debs)-1], nil
}

// extractVmlinuz copies ./boot/vmlinuz-* out of the package's data tar
// (dpkg-deb --fsys-tarfile) into dir, without unpacking the modules.
func extractVmlinuz(ctx context.Context, deb, dir string) (string, error) {
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", deb)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("dpkg-deb: %w", err)
	}
	k, ferr := copyVmlinuz(tar.NewReader(stdout), dir)
	_, _ = io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil {
		return "", fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w", deb, err)
	}
	return k, ferr
}

func copyVmlinuz(tr *tar.Reader, dir string) (string, error) {
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return "", errors.New("no ./boot/vmlinuz-* in the kernel package")
		}
		if err != nil {
			return "", err
		}
		name := strings.TrimPrefix(h.Name, "./")
		if !strings.HasPrefix(name, "boot/vmlinuz-") || h.Typeflag != tar.TypeReg {
			continue
		}
		dst := filepath.Join(dir, filepath.Base(name))
		tmp, err := os.CreateTemp(dir, ".vmlinuz-*")
		if err != nil {
			return "", err
		}
		_, err = io.Copy(tmp, tr)
		if err = errors.Join(err, tmp.Chmod(0o644), tmp.Close()); err != nil {
			os.Remove(tmp.Name())
			return "", err
		}
		return dst, os.Rename(tmp.Name(), dst)
	}
}

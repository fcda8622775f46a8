package gateimg

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/kilnlab/kiln/image/hosttool"
)

// xzArgs make xz's output independent of the machine: the multi-threaded
// compressor with a fixed block size writes the same bytes for any thread
// count (measured with xz 5.4.1: -T0, -T+1, -T2, -T3 agree; -T1, the
// single-threaded compressor, differs), and --no-adjust forbids xz to fall
// back to that single-threaded mode when memory is short.
func xzArgs() []string {
	return []string{"-T0", "--no-adjust", "--block-size=16MiB", "-6", "--check=crc64", "-c"}
}

// Compress writes img.xz beside img (replaced atomically) and returns its
// path. img is kept: kiln flash and QEMU read it.
func Compress(ctx context.Context, img string) (string, error) {
	out := img + ".xz"
	err := replaceFile(out, func(f *os.File) error {
		return hosttool.Run(ctx, hosttool.Cmd{Name: "xz", Args: append(xzArgs(), "--", img), Stdout: f})
	})
	if err != nil {
		return "", fmt.Errorf("compress %s: %w", img, err)
	}
	return out, nil
}

// replaceFile writes path through write into a temporary file beside it,
// then renames it into place, so path is either old or whole.
func replaceFile(path string, write func(*os.File) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // fails harmlessly after the rename
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// WriteSHA256SUMS writes dir/SHA256SUMS in the format `sha256sum -c` reads
// there: one "<hex>  <name>" line per file, names relative to dir, in the
// order given.
func WriteSHA256SUMS(dir string, files ...string) error {
	var b strings.Builder
	for _, p := range files {
		name, err := filepath.Rel(dir, p)
		if err != nil || strings.HasPrefix(name, "..") || strings.ContainsAny(name, "\\\n") {
			return fmt.Errorf("SHA256SUMS: %s is not a plain name below %s", p, dir)
		}
		sum, err := fileSHA256(p)
		if err != nil {
			return fmt.Errorf("SHA256SUMS: %w", err)
		}
		fmt.Fprintf(&b, "%s  %s\n", sum, filepath.ToSlash(name))
	}
	err := replaceFile(filepath.Join(dir, "SHA256SUMS"), func(f *os.File) error {
		_, err := f.WriteString(b.String())
		return err
	})
	if err != nil {
		return fmt.Errorf("SHA256SUMS: %w", err)
	}
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

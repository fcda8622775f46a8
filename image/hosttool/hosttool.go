// Package hosttool runs the Debian tools that kiln's build-host image
// writers shell out to (mkfs.vfat, mtools, syslinux, mke2fs, mmdebstrap,
// mksquashfs, ...): it says which Debian package a missing tool comes from,
// gives every run the same locale, time zone and SOURCE_DATE_EPOCH so that
// outputs are reproducible, and puts the tool's own words into errors.
// The installer never imports it: it runs no host tools.
package hosttool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// ErrMissing is wrapped when a tool is not installed; callers (and tests)
// decide whether that means skip or fail.
var ErrMissing = errors.New("host tool not installed")

// debianPackage names the Debian package that ships tool ("" if unknown).
func debianPackage(tool string) string {
	switch tool {
	case "mkfs.vfat", "fsck.vfat":
		return "dosfstools"
	case "mcopy", "mmd", "mdir", "mtype":
		return "mtools"
	case "mke2fs", "e2fsck", "debugfs", "dumpe2fs":
		return "e2fsprogs"
	case "mksquashfs", "unsquashfs":
		return "squashfs-tools"
	case "apt-ftparchive":
		return "apt-utils"
	case "sfdisk":
		return "fdisk"
	case "chronyd":
		return "chrony"
	case "ntpdig":
		return "ntpsec-ntpdig"
	case "chromium":
		return "chromium"
	case "xz":
		return "xz-utils"
	case "wg":
		return "wireguard-tools"
	case "sgdisk":
		return "gdisk"
	case "syslinux", "mmdebstrap":
		return tool
	}
	return ""
}

// Check reports every tool of names that is not on PATH, in one error
// wrapping ErrMissing that names the Debian packages to install.
func Check(names ...string) error {
	var missing []string
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			if p := debianPackage(n); p != "" {
				n += " (Debian package " + p + ")"
			}
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", ErrMissing, strings.Join(missing, ", "))
	}
	return nil
}

// Cmd is one tool run.
type Cmd struct {
	Name string
	Args []string
	// Epoch is exported as SOURCE_DATE_EPOCH (mtools, mmdebstrap and
	// mksquashfs honour it).
	Epoch int64
	// Env is added after the reproducible base environment.
	Env []string
	// Dir is the working directory ("" means the caller's).
	Dir string
	// Output, when set, also receives the tool's stdout and stderr as
	// they come (progress for people).
	Output io.Writer
	// Stdout, when set, receives stdout instead (e.g. debugfs cat).
	Stdout io.Writer
}

// tailSize is how much of a failing tool's output an error carries.
const tailSize = 2048

// Run runs c and returns an error carrying the end of its output when it
// fails.
func Run(ctx context.Context, c Cmd) error {
	if err := Check(c.Name); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, c.Name, c.Args...)
	cmd.Env = append(Env(c.Epoch), c.Env...)
	cmd.Dir = c.Dir
	var out tail
	var w io.Writer = &out
	if c.Output != nil {
		w = io.MultiWriter(&out, c.Output)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if c.Stdout != nil {
		cmd.Stdout = c.Stdout
	}
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", c.Name, ctx.Err())
		}
		return fmt.Errorf("%s %s: %w: %s", c.Name, strings.Join(c.Args, " "), err, bytes.TrimSpace(out.b))
	}
	return nil
}

// Env is the environment tools run with: the caller's, minus anything that
// changes output with the host's settings (locale, time zone, mtools
// configuration), plus LC_ALL=C.UTF-8, TZ=UTC and SOURCE_DATE_EPOCH.
func Env(epoch int64) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "TZ", k == "LANG", k == "LANGUAGE", strings.HasPrefix(k, "LC_"),
			k == "SOURCE_DATE_EPOCH", k == "MTOOLSRC", strings.HasPrefix(k, "MTOOLS_"):
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C.UTF-8", "TZ=UTC", "SOURCE_DATE_EPOCH="+strconv.FormatInt(epoch, 10),
		// Ignore any host mtools.conf; image files have no real geometry.
		"MTOOLSRC=/dev/null", "MTOOLS_SKIP_CHECK=1")
}

// tail keeps the last tailSize bytes written to it.
type tail struct{ b []byte }

func (t *tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > tailSize {
		t.b = append(t.b[:0], t.b[len(t.b)-tailSize:]...)
	}
	return len(p), nil
}

// Package secrets owns the lab's secrets directory on the build host
// (DESIGN.md §10): where it is, its permissions, and the secrets in it,
// generated once and never again while present. It also writes and reads
// the gate's share of them (the payload's secrets/), which is all the gate
// carries. Nothing here prints or logs a secret: the key types redact
// themselves in fmt and slog output.
package secrets

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Modes of the directory and of every file in it, as ssh wants them.
const (
	DirMode  fs.FileMode = 0o700
	FileMode fs.FileMode = 0o600
)

// ErrPermissions is wrapped when a secrets directory or file is open to
// group or others; kiln refuses to use (or add to) it until it is fixed.
var ErrPermissions = errors.New("secrets readable by group or others")

// DefaultDir is the lab's secrets directory: $XDG_STATE_HOME/kiln/<lab>,
// else ~/.local/state/kiln/<lab>.
func DefaultDir(lab string) (string, error) {
	if lab == "" || lab != filepath.Base(lab) || lab == "." || lab == ".." {
		return "", fmt.Errorf("secrets: lab name %q is not a directory name", lab)
	}
	if s := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(s) {
		return filepath.Join(s, "kiln", lab), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("secrets: %w", err)
	}
	return filepath.Join(home, ".local", "state", "kiln", lab), nil
}

// ensureDir creates dir (and its parents) private, or checks an existing
// one is.
func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	return checkMode(dir)
}

// checkMode refuses a file or directory that group or others can use.
func checkMode(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		want := FileMode
		if st.IsDir() {
			want = DirMode
		}
		return fmt.Errorf("%w: %s has mode %04o; run chmod %04o %s", ErrPermissions, path, st.Mode().Perm(), want, path)
	}
	return nil
}

// readPrivate reads a secrets file after checking it and its directory.
func readPrivate(path string) ([]byte, error) {
	if err := checkMode(filepath.Dir(path)); err != nil {
		return nil, err
	}
	if err := checkMode(path); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	return b, nil
}

// writeTemp writes data to a new private file in dir, synced, and
// returns its name; the caller links or renames it into place, so no
// reader ever sees a half-written secret.
func writeTemp(dir string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", fmt.Errorf("secrets: %w", err)
	}
	name := f.Name()
	err = f.Chmod(FileMode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", fmt.Errorf("secrets: %w", err)
	}
	return name, nil
}

// createOnce puts data at path unless a file is already there: a hard
// link of a complete temporary file either creates path whole or fails
// because it exists, so two kiln runs racing to generate a secret cannot
// both win. It reports whether it created the file.
func createOnce(path string, data []byte) (bool, error) {
	dir := filepath.Dir(path)
	tmp, err := writeTemp(dir, data)
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, fmt.Errorf("secrets: %w", err)
	}
	return true, syncDir(dir)
}

// replace puts data at path atomically, replacing any file there.
func replace(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := writeTemp(dir, data)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("secrets: %w", err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("secrets: sync %s: %w", dir, err)
	}
	return nil
}

// Package secrets owns the lab's secrets directory on the build host
// (DESIGN.md §10): where it is, its permissions, and the secrets in it,
// generated once and never again while present. It also writes and reads
// the gate's share of them (the payload's secrets/), which is all the gate
// carries. Nothing here prints or logs a secret: the key types redact
// themselves in fmt and slog output.
//
// The directory (0700, every file 0600) holds:
//
//	wireguard.json       the tunnel's keys (WireGuard)
//	ceph.json            the Ceph cluster's fsid and its mon., client.admin
//	                     and client.bootstrap-osd keys (Ceph)
//	ceph-mgr/HOST.key    one mgr.HOST key per storage node (Ceph)
//	consul.json          the Consul cluster's gossip key, its initial
//	                     management token and Vault's storage token (Consul)
//	consul-agent/HOST.json
//	                     one agent token per Consul server (Consul)
//	k3s.json             the k3s cluster's join token (k3s)
//	ca.pem               the lab CA: certificate + ECDSA P-256 key (LabCA)
//	tls/HOST.pem         one certificate + key per machine, signed by the
//	                     lab CA, for mutual TLS and Consul/Vault (MachineCerts)
//
// Beside them, image/artifacts keeps the lab's record of its upstream
// programs (artifacts.lock.json): not secret, but the lab's own.
//
// Each of these files is created whole or not at all, and never rewritten:
// adding a machine adds its files, removing one leaves every file where it
// is. A file kiln cannot use is refused (ErrCorrupt, ErrStale,
// ErrPermissions) with the way out in the message, never silently replaced.
package secrets

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
)

// Modes of the directory and of every file in it, as ssh wants them.
const (
	DirMode  fs.FileMode = 0o700
	FileMode fs.FileMode = 0o600
)

// ErrPermissions is wrapped when a secrets directory or file is open to
// group or others; kiln refuses to use (or add to) it until it is fixed.
var ErrPermissions = errors.New("secrets readable by group or others")

// ErrStale is wrapped when a secrets file is sound but no longer fits the
// lab: a certificate whose names or addresses the profile changed, one the
// lab CA did not sign, one past its end, or a CA made for another lab.
// Like a damaged file it is never replaced behind the user's back.
var ErrStale = errors.New("secrets file no longer fits the lab")

// damaged wraps ErrCorrupt; err names what is wrong, never a value, and
// remedy says how to get out.
func damaged(path string, err error, remedy string) error {
	return fmt.Errorf("%w: %s: %v (kiln never regenerates keys: %s)", ErrCorrupt, path, err, remedy)
}

// stale wraps ErrStale, like damaged.
func stale(path string, err error, remedy string) error {
	return fmt.Errorf("%w: %s: %v (%s)", ErrStale, path, err, remedy)
}

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

// encodeJSON is a secrets file's JSON, indented, with a final newline.
func encodeJSON(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	return append(b, '\n'), nil
}

// readJSON reads a secrets file of JSON into v after checking its
// permissions, refusing unknown fields: a file that does not decode is
// damaged, with remedy as the way out.
func readJSON(path string, v any, remedy string) error {
	b, err := readPrivate(path)
	if err != nil {
		return err
	}
	if err := strictJSON(b, v); err != nil {
		return damaged(path, err, remedy)
	}
	return nil
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

// once returns load(path), first creating path with gen's data if there
// is no file there (createOnce: a racing kiln's file wins). An existing
// file is only ever read.
func once[T any](path string, gen func() ([]byte, error), load func(path string) (T, error)) (T, error) {
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		data, err := gen()
		if err != nil {
			var zero T
			return zero, err
		}
		if _, err := createOnce(path, data); err != nil {
			var zero T
			return zero, err
		}
	}
	return load(path)
}

// perHost returns load(dir/sub/HOST<ext>, HOST) for each of hosts, first
// creating the missing files with gen's data (once): one file per
// machine, so that adding a machine adds its file and changes no other.
// The directory is made only when there is a host.
func perHost[T any](dir, sub, ext string, hosts []string, gen func() ([]byte, error), load func(path, host string) (T, error)) (map[string]T, error) {
	out := make(map[string]T, len(hosts))
	if len(hosts) == 0 {
		return out, nil
	}
	d := filepath.Join(dir, sub)
	if err := ensureDir(d); err != nil {
		return nil, err
	}
	for _, h := range hosts {
		v, err := once(filepath.Join(d, h+ext), gen, func(path string) (T, error) { return load(path, h) })
		if err != nil {
			return nil, err
		}
		out[h] = v
	}
	return out, nil
}

// hostRE is an RFC 1123 label, as the profile validates machine names;
// host names are also file names here.
var hostRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// checkHosts refuses a list of host names with a bad or repeated name.
func checkHosts(hosts []string) error {
	seen := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		if !hostRE.MatchString(h) {
			return fmt.Errorf("secrets: %q is not a host name (an RFC 1123 label)", h)
		}
		if seen[h] {
			return fmt.Errorf("secrets: host %s is listed twice", h)
		}
		seen[h] = true
	}
	return nil
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

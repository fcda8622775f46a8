package roles

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/coreos/ignition/v2/config/v3_5/types"
	"github.com/vincent-petithory/dataurl"
)

// Apply writes the subset of an Ignition config that kiln supports into the
// tree at dir, as if dir were "/": storage.directories, storage.files (data:
// URLs), storage.links (symbolic) and systemd.units (contents, drop-ins,
// mask, and enable through the unit's own [Install] section). Anything else
// is refused with ErrUnsupported rather than dropped. All writes go through
// an os.Root, so no path or link in the config can reach outside dir.
//
// Enabling follows `systemctl enable`: links in <WantedBy>.wants/ and
// <RequiredBy>.requires/, and Alias= names. A unit that is enabled must
// carry its contents; to enable a unit of the base image, add the links.
func Apply(cfg types.Config, dir string) error {
	if err := supported(cfg); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	defer root.Close()
	for _, d := range cfg.Storage.Directories {
		if err := applyDir(root, d); err != nil {
			return fmt.Errorf("apply directory %s: %w", d.Path, err)
		}
	}
	for _, f := range cfg.Storage.Files {
		if err := applyFile(root, f); err != nil {
			return fmt.Errorf("apply file %s: %w", f.Path, err)
		}
	}
	for _, l := range cfg.Storage.Links {
		if err := applyLink(root, l); err != nil {
			return fmt.Errorf("apply link %s: %w", l.Path, err)
		}
	}
	for _, u := range cfg.Systemd.Units {
		if err := applyUnit(root, u); err != nil {
			return fmt.Errorf("apply unit %s: %w", u.Name, err)
		}
	}
	return nil
}

// ErrUnsupported marks parts of an Ignition config that Apply does not do.
var ErrUnsupported = errors.New("not supported by kiln's ignition apply")

// ErrExists is returned for a node that exists and is not to be overwritten.
var ErrExists = errors.New("exists and overwrite is not set")

func supported(cfg types.Config) error {
	s := cfg.Storage
	var parts []string
	for name, used := range map[string]bool{
		"storage.disks": len(s.Disks) > 0, "storage.filesystems": len(s.Filesystems) > 0,
		"storage.raid": len(s.Raid) > 0, "storage.luks": len(s.Luks) > 0,
		"passwd":          len(cfg.Passwd.Users)+len(cfg.Passwd.Groups) > 0,
		"kernelArguments": len(cfg.KernelArguments.ShouldExist)+len(cfg.KernelArguments.ShouldNotExist) > 0,
		"ignition.config": len(cfg.Ignition.Config.Merge) > 0 || cfg.Ignition.Config.Replace.Source != nil,
	} {
		if used {
			parts = append(parts, name)
		}
	}
	if len(parts) > 0 {
		slices.Sort(parts)
		return fmt.Errorf("%w: %s", ErrUnsupported, strings.Join(parts, ", "))
	}
	return nil
}

func applyDir(root *os.Root, d types.Directory) error {
	if err := rootOwned(d.Node); err != nil {
		return err
	}
	p := rel(d.Path)
	if err := root.MkdirAll(p, 0o755); err != nil {
		return err
	}
	return root.Chmod(p, fileMode(d.Mode, 0o755))
}

func applyFile(root *os.Root, f types.File) error {
	if err := rootOwned(f.Node); err != nil {
		return err
	}
	if len(f.Append) > 0 || f.Contents.Compression != nil && *f.Contents.Compression != "" ||
		f.Contents.Verification.Hash != nil || len(f.Contents.HTTPHeaders) > 0 {
		return fmt.Errorf("%w: append, compression, verification or headers", ErrUnsupported)
	}
	data, err := contents(f.Contents.Source)
	if err != nil {
		return err
	}
	p, err := prepare(root, f.Node)
	if err != nil {
		return err
	}
	if err := root.WriteFile(p, data, 0o600); err != nil {
		return err
	}
	return root.Chmod(p, fileMode(f.Mode, 0o644))
}

func applyLink(root *os.Root, l types.Link) error {
	if err := rootOwned(l.Node); err != nil {
		return err
	}
	if l.Hard != nil && *l.Hard || l.Target == nil {
		return fmt.Errorf("%w: hard links and links without target", ErrUnsupported)
	}
	p, err := prepare(root, l.Node)
	if err != nil {
		return err
	}
	return root.Symlink(*l.Target, p)
}

// prepare makes the parents of node's path and clears the path itself when
// overwriting is allowed; it returns the path relative to root.
func prepare(root *os.Root, n types.Node) (string, error) {
	p := rel(n.Path)
	if err := root.MkdirAll(path.Dir(p), 0o755); err != nil {
		return "", err
	}
	if _, err := root.Lstat(p); err == nil {
		if n.Overwrite == nil || !*n.Overwrite {
			return "", ErrExists
		}
		if err := root.Remove(p); err != nil {
			return "", err
		}
	}
	return p, nil
}

// contents decodes a data: URL; kiln fetches nothing while applying.
func contents(src *string) ([]byte, error) {
	if src == nil {
		return nil, nil
	}
	u, err := dataurl.DecodeString(*src)
	if err != nil {
		return nil, fmt.Errorf("%w: source must be a data: URL: %v", ErrUnsupported, err)
	}
	return u.Data, nil
}

// rootOwned refuses other owners: kiln's images are written as root.
func rootOwned(n types.Node) error {
	ok := func(id *int, name *string) bool {
		return (id == nil || *id == 0) && (name == nil || *name == "" || *name == "root")
	}
	if !ok(n.User.ID, n.User.Name) || !ok(n.Group.ID, n.Group.Name) {
		return fmt.Errorf("%w: owners other than root", ErrUnsupported)
	}
	return nil
}

// rel turns an absolute config path into one relative to the root.
func rel(p string) string {
	return strings.TrimPrefix(path.Clean("/"+p), "/")
}

// fileMode converts an Ignition mode (Unix permission bits as a number).
func fileMode(mode *int, def int) fs.FileMode {
	m := def
	if mode != nil {
		m = *mode
	}
	fm := fs.FileMode(m) & fs.ModePerm
	for bit, flag := range map[int]fs.FileMode{0o4000: fs.ModeSetuid, 0o2000: fs.ModeSetgid, 0o1000: fs.ModeSticky} {
		if m&bit != 0 {
			fm |= flag
		}
	}
	return fm
}

// installSection reads the [Install] keys of a unit file.
func installSection(unit string) map[string][]string {
	keys := map[string][]string{}
	in := false
	sc := bufio.NewScanner(strings.NewReader(unit))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			in = line == "[Install]"
		case in:
			k, v, _ := strings.Cut(line, "=")
			k = strings.TrimSpace(k)
			keys[k] = append(keys[k], strings.Fields(v)...)
		}
	}
	return keys
}

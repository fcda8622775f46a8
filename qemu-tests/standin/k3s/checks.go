package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// What the stand-in checks of what kiln installed, in the order k3s itself
// would trip over them: its config, the token file it names, the airgap
// images, and (server) the manifests it would deploy.

// Check is one check's result. Detail never holds a secret.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// config is what the stand-in reads of config.yaml: k3s's flags without
// their dashes.
type config struct {
	TokenFile, NodeName, NodeIP, Server, DataDir string
}

// defaultDataDir is k3s's data directory when config.yaml names none.
const defaultDataDir = "/var/lib/rancher/k3s"

// checkConfig reads config.yaml and checks what kiln writes into it: a
// token file, the node's name and address, and on an agent the server's
// https:// URL (a server with one would join another server instead).
func checkConfig(role, path string) (config, Check) {
	c := config{DataDir: defaultDataDir}
	fail := func(format string, args ...any) (config, Check) {
		return c, Check{"config", false, path + ": " + fmt.Sprintf(format, args...)}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fail("%v", err)
	}
	docs, err := parseYAML(string(data))
	if err != nil {
		return fail("%v", err)
	}
	m, ok := oneMapping(docs)
	if !ok {
		return fail("not one YAML mapping")
	}
	for key, dst := range map[string]*string{
		"token-file": &c.TokenFile, "node-name": &c.NodeName, "node-ip": &c.NodeIP,
		"server": &c.Server, "data-dir": &c.DataDir,
	} {
		if v, ok := m[key]; ok {
			s, isString := v.(string)
			if !isString || s == "" {
				return fail("%s is not a non-empty string", key)
			}
			*dst = s
		}
	}
	switch {
	case c.TokenFile == "" || c.NodeName == "" || c.NodeIP == "":
		return fail("token-file, node-name and node-ip are required")
	case !validIP(c.NodeIP):
		return fail("node-ip %q is not an IP address", c.NodeIP)
	case role == "agent" && !validServer(c.Server):
		return fail("an agent needs server: https://<address>:6443, not %q", c.Server)
	case role == "server" && c.Server != "":
		return fail("a server with server: %s would join another server", c.Server)
	}
	detail := fmt.Sprintf("%s: node %s at %s", path, c.NodeName, c.NodeIP)
	if c.Server != "" {
		detail += ", server " + c.Server
	}
	return c, Check{"config", true, detail}
}

func oneMapping(docs []any) (map[string]any, bool) {
	if len(docs) != 1 {
		return nil, false
	}
	m, ok := docs[0].(map[string]any)
	return m, ok
}

func validIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

func validServer(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme == "https" && u.Port() != "" && u.Path == "" && validIP(u.Hostname())
}

// checkToken checks the token file without ever showing its contents: a
// regular file, root-only (0600), not empty.
func checkToken(path string) Check {
	fail := func(format string, args ...any) Check {
		return Check{"token", false, path + ": " + fmt.Sprintf(format, args...)}
	}
	if path == "" {
		return fail("no token file configured")
	}
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return fail("%v", err)
	case !fi.Mode().IsRegular():
		return fail("not a regular file")
	case fi.Mode().Perm() != 0o600:
		return fail("mode %04o, want 0600", fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fail("%v", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return fail("empty")
	}
	return Check{"token", true, fmt.Sprintf("%s: mode 0600, %d bytes (not shown)", path, len(bytes.TrimSpace(data)))}
}

type imageKind struct {
	suffix string
	magic  []byte
}

// imageKinds are the airgap tarballs k3s imports, by suffix, with the
// magic bytes their compression starts with (none for a bare tar).
var imageKinds = []imageKind{
	{".tar.zst", []byte{0x28, 0xb5, 0x2f, 0xfd}},
	{".tar.gz", []byte{0x1f, 0x8b}},
	{".tgz", []byte{0x1f, 0x8b}},
	{".tar.lz4", []byte{0x04, 0x22, 0x4d, 0x18}},
	{".tar.bz2", []byte("BZh")},
	{".tar", nil},
}

// checkImages checks the airgap images directory holds at least one
// tarball k3s would import, and that each is what its name says.
func checkImages(dir string) Check {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return Check{"images", false, err.Error()}
	}
	var found []string
	for _, e := range ents {
		i := slices.IndexFunc(imageKinds, func(k imageKind) bool { return strings.HasSuffix(e.Name(), k.suffix) })
		if i < 0 || !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		head, err := readHead(path, 4)
		if err != nil {
			return Check{"images", false, err.Error()}
		}
		if len(head) == 0 || !bytes.HasPrefix(head, imageKinds[i].magic) {
			return Check{"images", false, fmt.Sprintf("%s is empty or not %s", path, imageKinds[i].suffix)}
		}
		found = append(found, e.Name())
	}
	if len(found) == 0 {
		return Check{"images", false, dir + ": no airgap images tarball (.tar, .tar.gz, .tar.zst, ...)"}
	}
	return Check{"images", true, dir + ": " + strings.Join(found, ", ")}
}

func readHead(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	k, err := io.ReadFull(f, b)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, err
	}
	return b[:k], nil
}

// checkManifests checks every manifest k3s's deploy controller would
// apply from dir (recursively: .yaml, .yml and .json files that are not
// dotfiles nor skipped by a FILE.skip beside them) parses, and that each
// of its documents is an object: apiVersion, kind and metadata.name,
// strings. A missing or empty directory passes (a server without GitOps).
func checkManifests(dir string) Check {
	var files, skips []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		switch {
		case errors.Is(err, fs.ErrNotExist) && path == dir:
			return filepath.SkipAll
		case err != nil:
			return err
		case d.IsDir():
			return nil
		case strings.HasSuffix(d.Name(), ".skip"):
			skips = append(skips, strings.TrimSuffix(path, ".skip"))
		case !strings.HasPrefix(d.Name(), ".") && hasSuffix(d.Name(), ".yaml", ".yml", ".json"):
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return Check{"manifests", false, err.Error()}
	}
	var seen []string
	for _, f := range files {
		if slices.Contains(skips, f) {
			continue
		}
		objs, err := manifestObjects(f)
		if err != nil {
			return Check{"manifests", false, err.Error()}
		}
		rel, _ := filepath.Rel(dir, f)
		seen = append(seen, fmt.Sprintf("%s (%s)", rel, strings.Join(objs, ", ")))
	}
	if len(seen) == 0 {
		return Check{"manifests", true, dir + ": no manifests"}
	}
	return Check{"manifests", true, fmt.Sprintf("%s: %d: %s", dir, len(seen), strings.Join(seen, "; "))}
}

func hasSuffix(s string, suffixes ...string) bool {
	return slices.ContainsFunc(suffixes, func(x string) bool { return strings.HasSuffix(strings.ToLower(s), x) })
}

// manifestObjects parses one manifest and names its objects ("Kind name").
func manifestObjects(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var docs []any
	if strings.HasSuffix(strings.ToLower(path), ".json") {
		var v any
		err = json.Unmarshal(data, &v)
		docs = []any{v}
	} else {
		docs, err = parseYAML(string(data))
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("%s: no object in it", path)
	}
	var out []string
	for i, d := range docs {
		name, err := object(d)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", path, i+1, err)
		}
		out = append(out, name)
	}
	return out, nil
}

// object checks one document is a Kubernetes object and names it.
func object(doc any) (string, error) {
	m, ok := doc.(map[string]any)
	if !ok {
		return "", errors.New("not a mapping")
	}
	meta, _ := m["metadata"].(map[string]any)
	for _, f := range []struct {
		name string
		v    any
	}{{"apiVersion", m["apiVersion"]}, {"kind", m["kind"]}, {"metadata.name", meta["name"]}} {
		if s, ok := f.v.(string); !ok || s == "" {
			return "", fmt.Errorf("%s is missing or not a string", f.name)
		}
	}
	return fmt.Sprintf("%s %s", m["kind"], meta["name"]), nil
}

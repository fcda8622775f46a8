package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sort"
	"strings"

	"github.com/kilnlab/kiln/image/artifacts"
	"github.com/kilnlab/kiln/image/secrets"
)

func artifactsCommands() map[string]command {
	return map[string]command{
		"list":   {"artifacts list [flags] [PROFILE]", "the pinned release files, what the lab recorded of them, and which version it uses", runArtifactsList},
		"fetch":  {"artifacts fetch [flags] NAME...", "fetch release files into the cache, verify them and record them for the lab", runArtifactsFetch},
		"import": {"artifacts import [flags] NAME=FILE...", "put release files obtained some other way into the cache and record them", runArtifactsImport},
	}
}

func runArtifacts(ctx context.Context, env *cli, args []string) error {
	return dispatch(ctx, env, "kiln artifacts", artifactsCommands(), args)
}

// artifactFlags are the flags every artifacts command shares.
type artifactFlags struct {
	labDir, cacheDir, lockPath, profile string
}

// register adds the shared flags; withProfile adds --profile, for the
// commands whose arguments are not a PROFILE.
func (a *artifactFlags) register(fs *flag.FlagSet, withProfile bool) {
	fs.StringVar(&a.labDir, "lab-dir", "", "the lab's state directory, holding its record artifacts.lock.json (default: the profile's lab's, $XDG_STATE_HOME/kiln/LAB or ~/.local/state/kiln/LAB, where its secrets are)")
	fs.StringVar(&a.cacheDir, "cache", "", "download cache (default $XDG_CACHE_HOME/kiln or ~/.cache/kiln)")
	fs.StringVar(&a.lockPath, "lock", "", "lockfile (default: the one built into kiln)")
	if withProfile {
		fs.StringVar(&a.profile, "profile", "", "lab profile whose lab's state directory is the default --lab-dir (default: the embedded reference lab)")
	}
}

// store opens the lab's artifacts; profileArgs name the profile (the
// --profile flag or the PROFILE argument) when --lab-dir is not given.
func (a *artifactFlags) store(env *cli, profileArgs []string) (*artifacts.Store, error) {
	if a.profile != "" {
		profileArgs = []string{a.profile}
	}
	if a.labDir == "" {
		p, err := loadProfile(profileArgs)
		if err != nil {
			return nil, err
		}
		if a.labDir, err = secrets.DefaultDir(p.Name); err != nil {
			return nil, err
		}
	}
	lk, err := loadLock(a.lockPath)
	if err != nil {
		return nil, err
	}
	c, err := openCache(env, a.cacheDir)
	if err != nil {
		return nil, err
	}
	return &artifacts.Store{Pins: lk.Artifacts, Cache: c, LabDir: a.labDir, Progress: env.stdout, Log: c.Log}, nil
}

func runArtifactsList(ctx context.Context, env *cli, args []string) error {
	fs := newFlags(env, "artifacts list [--lab-dir DIR] [--cache DIR] [PROFILE]",
		"List the upstream release files the lock pins (Consul, Vault, k3s: its binary and\nits airgap images) for each architecture, and every file the lab's record\n(DIR/artifacts.lock.json) holds: its origin (verified: fetched and matched the\nupstream's checksum list, signed by HashiCorp for Consul and Vault; imported:\ncopied from a local file), the start of its sha256, and whether the cache holds\nit. A pinned file the lab has not recorded shows as \"not fetched\". Then, per\nartifact, the version the lab uses: the one last named by an import or a fetch\nwith --version, else the lock's pin. Needs no network.")
	var a artifactFlags
	a.register(fs, false)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	s, err := a.store(env, fs.Args())
	if err != nil {
		return err
	}
	return s.WriteList(env.stdout)
}

func runArtifactsFetch(ctx context.Context, env *cli, args []string) error {
	fs := newFlags(env, "artifacts fetch [--lab-dir DIR] [--cache DIR] [--base NAME=URL] [--version V] [--arch A] NAME...",
		"Fetch the release files of each NAME (consul, vault, k3s: k3s's binary and its\nairgap images) into the cache, verify them against the upstream's checksum list\n(for Consul and Vault, NAME_VERSION_SHA256SUMS and its signature by HashiCorp's\nrelease key, C874 011F 0AB4 0511 0D02 1055 3436 5D94 72D7 468F, built into\nkiln; k3s publishes no signature, so its sha256sum-ARCH.txt is taken as GitHub\nserves it), and record their sha256 in the lab's DIR/artifacts.lock.json.\nA file's sha256 is recorded on its first fetch: a later fetch of other bytes,\nor of bytes other than a sha256 the lock pins, is refused with both hashes.\nA file recorded and cached is not fetched again: a second run needs no network.\n--version V fetches version V, one the lock need not pin: that is you choosing\nV for this lab, which then uses it in place of the lock's pin (as after an\nimport; kiln artifacts list shows which). --base NAME=URL fetches from a mirror\nof the upstream's release layout (NAME an artifact or a source: hashicorp, k3s).")
	var a artifactFlags
	a.register(fs, true)
	bases := baseFlag{}
	fs.Var(bases, "base", "NAME=URL: fetch from URL in place of the lock's base URL, e.g. a mirror; NAME is an artifact (consul) or a source (hashicorp, k3s); repeatable")
	version := fs.String("version", "", "version to fetch (default: the lock's pin); with one NAME only")
	arch := fs.String("arch", "", "architecture, amd64 or arm64 (default: each the lock pins)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	names := fs.Args()
	switch {
	case len(names) == 0:
		return usagef("artifacts fetch needs at least one NAME")
	case *version != "" && len(names) > 1:
		return usagef("--version applies to one NAME, got %d", len(names))
	}
	s, err := a.store(env, nil)
	if err != nil {
		return err
	}
	s.Bases = bases
	for _, name := range names {
		if err := fetchArtifact(ctx, env, s, name, *version, *arch); err != nil {
			return err
		}
	}
	return nil
}

// fetchArtifact fetches one artifact for the arch asked for, or each its
// pin lists.
func fetchArtifact(ctx context.Context, env *cli, s *artifacts.Store, name, version, arch string) error {
	pin, ok := s.Pins[name]
	if !ok {
		return usagef("no artifact %q in the lock (it pins %s)", name, strings.Join(s.Names(), ", "))
	}
	arches := pin.Arches
	if arch != "" {
		arches = []string{arch}
	}
	for _, a := range arches {
		entries, err := s.Fetch(ctx, name, version, a)
		if errors.Is(err, artifacts.ErrUnknown) {
			return usagef("%v", err)
		}
		if err != nil {
			return err
		}
		printEntries(env, entries...)
	}
	return nil
}

func runArtifactsImport(ctx context.Context, env *cli, args []string) error {
	fs := newFlags(env, "artifacts import [--lab-dir DIR] [--cache DIR] [--version V] [--arch A] NAME=FILE...",
		"Put release files obtained some other way into the cache and record them in the\nlab's DIR/artifacts.lock.json as imported. NAME is consul, vault or k3s for the\nprogram, k3s-images for k3s's airgap images (k3s-airgap-images-ARCH.tar.zst).\nFor Consul and Vault, FILE is the release zip (NAME_VERSION_linux_ARCH.zip,\nthe file whose sha256 HashiCorp's SHA256SUMS lists) or the bare program; for\nk3s, the bare program.\nWithout --version FILE is the version the lock pins, and is checked against\nthe sha256 the lab recorded for it, or the lock's sha256 where the lock pins\nthat version: other bytes are refused, with both hashes. When neither holds a\nsha256 (the pin not fetched yet), nothing can check FILE and it is refused:\nfetch it once where the release is reachable, or name the version with\n--version to take FILE unverified. A bare program can\nnever match the sha256 of a release zip. A release zip whose name says another\nversion (consul_1.22.7_linux_amd64.zip) is refused.\n--version V takes FILE as version V, one the lock need not pin: that is you\nchoosing V for this lab. The lab uses the version last named by an import or\na fetch with --version in place of the lock's pin (kiln artifacts list shows\nwhich); to go back, import the pinned version again or remove the entries from\nthe record.\nThe architecture is read from FILE (its ELF header, or its upstream name);\n--arch must agree with it.")
	var a artifactFlags
	a.register(fs, true)
	version := fs.String("version", "", "the version FILE is, when it is not the lock's pin; choosing it for the lab")
	arch := fs.String("arch", "", "architecture of FILE, amd64 or arm64 (default: read from FILE)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	specs, err := importSpecs(fs.Args(), *version)
	if err != nil {
		return err
	}
	s, err := a.store(env, nil)
	if err != nil {
		return err
	}
	for _, sp := range specs {
		e, err := s.Import(sp.name, sp.file, *version, *arch, sp.role)
		if errors.Is(err, artifacts.ErrUnknown) {
			return usagef("%v", err)
		}
		if err != nil {
			return err
		}
		printEntries(env, e)
	}
	return nil
}

// importSpec is one NAME=FILE of artifacts import.
type importSpec struct{ name, role, file string }

// importSpecs parses NAME=FILE arguments; a --version applies to the
// files of one artifact only.
func importSpecs(args []string, version string) ([]importSpec, error) {
	if len(args) == 0 {
		return nil, usagef("artifacts import needs at least one NAME=FILE")
	}
	specs := make([]importSpec, 0, len(args))
	for _, arg := range args {
		name, file, ok := strings.Cut(arg, "=")
		if !ok || name == "" || file == "" {
			return nil, usagef("artifacts import: want NAME=FILE, got %q", arg)
		}
		sp := importSpec{file: file}
		sp.name, sp.role = artifacts.SplitImportName(name)
		specs = append(specs, sp)
	}
	for _, sp := range specs[1:] {
		if version != "" && sp.name != specs[0].name {
			return nil, usagef("--version applies to one artifact's files, got %s and %s", specs[0].name, sp.name)
		}
	}
	return specs, nil
}

// printEntries writes one line per recorded file to stdout, for scripts.
func printEntries(env *cli, entries ...artifacts.Entry) {
	for _, e := range entries {
		fmt.Fprintf(env.stdout, "%s %s %s %s %s sha256:%s\n", e.Name, e.Version, e.Arch, e.File, e.Origin, e.SHA256)
	}
}

// baseFlag collects --base NAME=URL.
type baseFlag map[string]string

func (b baseFlag) String() string {
	kv := make([]string, 0, len(b))
	for k, v := range b {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

func (b baseFlag) Set(s string) error {
	name, url, ok := strings.Cut(s, "=")
	if !ok || name == "" || !strings.Contains(url, "://") {
		return fmt.Errorf("want NAME=URL, got %q", s)
	}
	b[name] = url
	return nil
}

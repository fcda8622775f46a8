package main

import (
	"context"

	"github.com/kilnlab/kiln/image/cache"
	"github.com/kilnlab/kiln/image/lock"
	"github.com/kilnlab/kiln/roles"
)

func runLock(ctx context.Context, env *cli, args []string) error {
	fs := newFlags(env, "lock [--lock FILE] [--cache DIR]",
		"Re-pin every Debian input (kernels, boot loaders, each role's root filesystem\nclosure) from the signed archive index, and rewrite the lockfile. Needs the\nnetwork; builds afterwards use exactly these files.")
	path := fs.String("lock", lock.DefaultPath, "lockfile to rewrite (run from the kiln source tree)")
	cacheDir := fs.String("cache", "", "download cache (default $XDG_CACHE_HOME/kiln or ~/.cache/kiln)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("lock takes no arguments")
	}
	c, err := openCache(env, *cacheDir)
	if err != nil {
		return err
	}
	return lock.Refresh(ctx, lock.RefreshOptions{
		Options: lock.Options{Cache: c, Log: c.Log},
		Path:    *path,
		Specs:   lock.DefaultSpecs(rolePackages()),
	})
}

// rolePackages maps each role that has a root filesystem to its packages.
func rolePackages() map[string][]string {
	m := map[string][]string{}
	for _, r := range roles.All() {
		if r.HasRootfs() {
			m[r.Name] = r.Packages
		}
	}
	return m
}

// openCache opens the download cache; progress goes to stderr, apart from
// the log.
func openCache(env *cli, dir string) (*cache.Cache, error) {
	if dir == "" {
		d, err := cache.DefaultDir()
		if err != nil {
			return nil, err
		}
		dir = d
	}
	return &cache.Cache{Dir: dir, Progress: env.stdout, Log: env.logger()}, nil
}

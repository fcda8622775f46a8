package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kilnlab/kiln/image/build"
	"github.com/kilnlab/kiln/image/lock"
)

const modulePath = "github.com/kilnlab/kiln"

func runBuild(ctx context.Context, env *cli, args []string) error {
	fs := newFlags(env, "build [-o DIR] [PROFILE]",
		"Build the netboot bundle for the lab's amd64 servers: the pinned Debian kernel,\nthe installer initramfs, iPXE, one role image per role and each machine's ESP\nand state image. Inputs come from the lockfile, fetched once into the cache and\nverified; a second build needs no network. Needs root (mmdebstrap), the Go\ntoolchain and the kiln source tree (the initramfs is compiled from it).")
	out := fs.String("o", "out/bundle", "output directory")
	lockPath := fs.String("lock", "", "lockfile (default: the one built into kiln)")
	cacheDir := fs.String("cache", "", "download cache (default $XDG_CACHE_HOME/kiln or ~/.cache/kiln)")
	src := fs.String("src", "", "kiln source tree (default: found from the current directory)")
	only := fs.String("machines", "", "comma-separated machine names to build images for (default: all)")
	verbose := fs.Bool("v", false, "log debug detail")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	p, pl, err := loadPlan(fs.Args())
	if err != nil {
		return err
	}
	lk, err := loadLock(*lockPath)
	if err != nil {
		return err
	}
	c, err := openCache(env, *cacheDir, *verbose)
	if err != nil {
		return err
	}
	srcDir, err := sourceDir(*src)
	if err != nil {
		return err
	}
	var machines []string
	if *only != "" {
		machines = strings.Split(*only, ",")
		for _, m := range machines {
			if _, ok := pl.Machine(m); !ok {
				return usagef("--machines: no machine %q in %s", m, p.Source)
			}
		}
	}
	start := time.Now()
	err = build.Build(ctx, build.Options{
		Profile: p, Plan: pl, Lock: lk, Cache: c, Out: *out, Machines: machines,
		SourceDir: srcDir, Progress: env.stderr, Log: c.Log,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "bundle for lab %s written to %s in %s\n", pl.Lab, *out, time.Since(start).Round(time.Second))
	return nil
}

func loadLock(path string) (*lock.File, error) {
	if path == "" {
		return lock.Default()
	}
	return lock.Read(path)
}

// sourceDir finds the kiln source tree: the given directory, or the nearest
// parent of the working directory whose go.mod declares kiln's module.
func sourceDir(dir string) (string, error) {
	if dir != "" {
		if !isKilnModule(dir) {
			return "", fmt.Errorf("--src %s: no go.mod for %s there", dir, modulePath)
		}
		return filepath.Abs(dir)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if isKilnModule(d) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("not inside the kiln source tree: run from it or pass --src (the initramfs is compiled from source)")
		}
	}
}

func isKilnModule(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if fields := strings.Fields(s.Text()); len(fields) == 2 && fields[0] == "module" {
			return fields[1] == modulePath
		}
	}
	return false
}

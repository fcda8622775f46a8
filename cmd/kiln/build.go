package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kilnlab/kiln/image/build"
	"github.com/kilnlab/kiln/image/gateimg"
	"github.com/kilnlab/kiln/image/lock"
	"github.com/kilnlab/kiln/profiles"
)

const modulePath = "github.com/kilnlab/kiln"

func runBuild(ctx context.Context, env *cli, args []string) error {
	fs := newFlags(env, "build [-o DIR] [PROFILE]",
		"Build everything the lab boots from, into DIR:\n  DIR/bundle/       the netboot bundle for the amd64 servers: the pinned Debian\n                    kernel, the installer initramfs, iPXE, one role image per\n                    role and each machine's ESP and state image\n  DIR/<gate>.img    the Raspberry Pi gate's SD image (boot, /perm, payload with\n                    the bundle), DIR/<gate>.img.xz and DIR/SHA256SUMS,\n                    and DIR/rpi-imager.json: Raspberry Pi Imager's repository\n                    file for it (rpi-imager --repo DIR/rpi-imager.json)\nInputs come from the lockfile, fetched once into the cache and verified; a\nsecond build needs no network. SOURCE_DATE_EPOCH, when set, stamps the images\n(two builds of the same inputs are then byte-identical). Needs root\n(mmdebstrap), the Go toolchain and the kiln source tree (the initramfs is\ncompiled from it).")
	out := fs.String("o", "out", "output directory")
	lockPath := fs.String("lock", "", "lockfile (default: the one built into kiln)")
	cacheDir := fs.String("cache", "", "download cache (default $XDG_CACHE_HOME/kiln or ~/.cache/kiln)")
	src := fs.String("src", "", "kiln source tree (default: found from the current directory)")
	secretsDir := fs.String("secrets", "", "the lab's secrets directory, 0700 (default $XDG_STATE_HOME/kiln/LAB or ~/.local/state/kiln/LAB); the gate image carries the gate's share")
	only := fs.String("machines", "", "comma-separated machine names to build images for (default: all)")
	imageURL := fs.String("image-url", "", "where DIR/<gate>.img.xz will be published (http:// or https://), for Raspberry Pi Imager's DIR/rpi-imager.json (default: the file itself, file://)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *imageURL != "" {
		if err := gateimg.CheckBaseURL(*imageURL); err != nil {
			return usagef("--image-url: %v", err)
		}
	}
	p, pl, err := loadPlan(fs.Args())
	if err != nil {
		return err
	}
	printWarnings(env, p)
	lk, err := loadLock(*lockPath)
	if err != nil {
		return err
	}
	c, err := openCache(env, *cacheDir)
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
	yml, err := profileText(fs.Args())
	if err != nil {
		return err
	}
	stamp, err := buildTime(time.Now())
	if err != nil {
		return err
	}
	start := time.Now()
	err = build.Build(ctx, build.Options{
		Profile: p, Plan: pl, Lock: lk, Cache: c, Out: *out, Machines: machines,
		ProfileYAML: yml, BuildTime: stamp, SecretsDir: *secretsDir,
		SourceDir: srcDir, ImageBaseURL: *imageURL, Progress: env.stdout, Log: c.Log,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "lab %s built into %s in %s\n", pl.Lab, *out, time.Since(start).Round(time.Second))
	return nil
}

// profileText is the profile's text as loadPlan read it.
func profileText(args []string) ([]byte, error) {
	if len(args) == 0 {
		return profiles.DefaultYAML(), nil
	}
	return os.ReadFile(args[0])
}

// buildTime is SOURCE_DATE_EPOCH when set (reproducible builds), else now.
func buildTime(now time.Time) (time.Time, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return now.UTC().Truncate(time.Second), nil
	}
	sec, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", v, err)
	}
	return time.Unix(sec, 0).UTC(), nil
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

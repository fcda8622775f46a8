package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kilnlab/kiln/image/build"
	"github.com/kilnlab/kiln/image/gateimg"
	"github.com/kilnlab/kiln/image/kilnsrc"
	"github.com/kilnlab/kiln/image/lock"
	"github.com/kilnlab/kiln/profiles"
)

func runBuild(ctx context.Context, env *cli, args []string) error {
	fs := newFlags(env, "build [-o DIR] [PROFILE]",
		"Build everything the lab boots from, into DIR:\n  DIR/bundle/       the netboot bundle for the amd64 servers: the pinned Debian\n                    kernel, the installer initramfs, iPXE, one role image per\n                    role and each machine's ESP and state image\n  DIR/<gate>.img    the Raspberry Pi gate's SD image (boot, /perm, payload with\n                    the bundle), DIR/<gate>.img.xz and DIR/SHA256SUMS,\n                    and DIR/rpi-imager.json: Raspberry Pi Imager's repository\n                    file for it (rpi-imager --repo DIR/rpi-imager.json)\nInputs come from the lockfile, fetched once into the cache and verified; a\nsecond build needs no network. SOURCE_DATE_EPOCH, when set, stamps the images\n(two builds of the same inputs are then byte-identical). Needs root\n(mmdebstrap) and the Go toolchain: kiln's own programs (the installer and the\ngate's initramfs, kiln-firstboot) are compiled from the kiln checkout around the\ncurrent directory, or, outside one, from the kiln module at this kiln's version\n(go mod download, through GOPROXY), as gok does.")
	out := fs.String("o", "out", "output directory")
	lockPath := fs.String("lock", "", "lockfile (default: the one built into kiln)")
	cacheDir := fs.String("cache", "", "download cache (default $XDG_CACHE_HOME/kiln or ~/.cache/kiln)")
	srcFlag := fs.String("src", "", "kiln source tree to compile kiln's programs from (default: the checkout around the current directory, else the kiln module at this kiln's own version, fetched with go mod download)")
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
	src, err := kilnSource(ctx, env, *srcFlag)
	if err != nil {
		return err
	}
	defer src.Remove()
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
		SourceDir: src.Dir, ImageBaseURL: *imageURL, Progress: env.stdout, Log: c.Log,
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

// kilnSource is the kiln source the build compiles kiln's programs from
// (package kilnsrc), said on the progress output when it is fetched.
func kilnSource(ctx context.Context, env *cli, dir string) (kilnsrc.Source, error) {
	wd, err := os.Getwd()
	if err != nil {
		return kilnsrc.Source{}, err
	}
	src, err := kilnsrc.Find(ctx, dir, wd, kilnsrc.BinaryVersion())
	if err != nil {
		return src, err
	}
	if src.Version != "" {
		fmt.Fprintf(env.stdout, "compiling kiln's programs from %s@%s (fetched into %s)\n", kilnsrc.ModulePath, src.Version, src.Dir)
	}
	return src, nil
}

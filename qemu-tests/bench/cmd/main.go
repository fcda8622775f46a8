// Command cmd is `make bench`'s QEMU figures: it boots the gate SD image
// and a Debian arm64 systemd of the same kernel in the same QEMU VM shape,
// one after the other on a lab network, and prints boot-to-ready times and
// idle memory side by side with ratios (package bench); with -bundle, it
// then netboots a BIOS VM to the installer from kiln and from dnsmasq
// (package vmboot) and times the installer's write of the bundle's largest
// role image against dd (package diskwrite). With -build-only it times
// `kiln build` with a warm cache against a hand-rolled mmdebstrap,
// mksquashfs, mkfs.vfat and mcopy pipeline, and the gate image's build on
// its own (package imagebuild; no VM). Needs root (namespaces, taps, the
// Debian disk's device nodes, mmdebstrap --mode=root).
//
//	go run ./qemu-tests/bench/cmd -gate out/gate-1.img -bundle out/bundle
//	go run ./qemu-tests/bench/cmd -standin     # before a real gate image exists
//	go run ./qemu-tests/bench/cmd -write-only -bundle out/bundle
//	go run ./qemu-tests/bench/cmd -netboot-only -bundle out/bundle
//	go run ./qemu-tests/bench/cmd -build-only -kiln out/bin/kiln -secrets out/demo-lab
//
// KILN_ACCEL=auto|kvm|tcg chooses the accelerator as for the tests (the
// arm64 VMs run under TCG on an amd64 host whatever the choice).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/kilnlab/kiln/image/bundle"
	"github.com/kilnlab/kiln/image/cache"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/qemu-tests/bench"
	"github.com/kilnlab/kiln/qemu-tests/bench/diskwrite"
	"github.com/kilnlab/kiln/qemu-tests/bench/imagebuild"
	"github.com/kilnlab/kiln/qemu-tests/bench/netboot"
	"github.com/kilnlab/kiln/qemu-tests/bench/vmboot"
	"github.com/kilnlab/kiln/qemu-tests/lab"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		image   = flag.String("gate", "", "the gate SD image (kiln build writes gate-1.img next to the bundle)")
		standIn = flag.Bool("standin", false, "boot a stand-in gate image (tiny Go init playing the appliance) instead of -gate")
		profile = flag.String("profile", "", "the profile the image was built from (default: the embedded one)")
		out     = flag.String("out", "out/bench", "folder for serial logs, the pcap and the Debian disk")
		settle  = flag.Duration("settle", 20*time.Second, "idle time after ready before memory is read")
		memory  = flag.Int("memory", 1024, "MiB of memory of both VMs")
		cpus    = flag.Int("cpus", 1, "vCPUs of both VMs")
		offline = flag.Bool("offline", false, "never download (kernel .deb, Debian rootfs): fail if not cached")
		verbose = flag.Bool("v", false, "log what the lab does")
		bundleD = flag.String("bundle", "", "the netboot bundle of the same build: also time a netboot to the installer (kiln against dnsmasq) and the install write (the installer's writer against dd)")
		kiln    = flag.String("kiln", "out/bin/kiln", "with -bundle: the kiln binary whose gate serve boots the VM; with -build-only: the kiln binary timed")
		rounds  = flag.Int("rounds", 5, "with -bundle: netboots per server, and writes per side; with -build-only: builds per side; the sides alternating")
		writes  = flag.Bool("write-only", false, "with -bundle: only the install write figure (no gate boot, no netboot)")
		netOnly = flag.Bool("netboot-only", false, "with -bundle: only the netboot figures, kiln against dnsmasq (no gate boot, no install write)")
		builds  = flag.Bool("build-only", false, "only the image build figures: kiln build (the -kiln binary) of -profile, warm cache, against a hand-rolled pipeline, alternating over -rounds (no VM)")
		secrets = flag.String("secrets", "", "with -build-only: kiln build --secrets (the lab's secrets and artifact record; make bench: out/demo-lab)")
		warmup  = flag.Bool("warmup", true, "with -build-only: one untimed kiln build first (make bench has just built)")
	)
	flag.Parse()
	if *builds {
		return imageBuild(*kiln, *profile, *secrets, filepath.Join(*out, "imagebuild"), *rounds, *warmup)
	}
	if *writes && *bundleD == "" {
		return errors.New("-write-only needs -bundle (its largest role image is what gets written)")
	}
	if *netOnly && *bundleD == "" {
		return errors.New("-netboot-only needs -bundle (its kernel and initramfs are what both servers serve)")
	}
	if !*writes && !*netOnly && (*image == "") == !*standIn {
		return errors.New("give -gate IMAGE (e.g. out/bundle/gate-1.img from `kiln build -o out/bundle`) or -standin")
	}
	if *image != "" {
		if _, err := os.Stat(*image); err != nil {
			return fmt.Errorf("gate image: %w (kiln build -o DIR writes DIR/gate-1.img)", err)
		}
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	gate, err := gateMachine(*profile)
	if err != nil {
		return err
	}
	cdir, err := cache.DefaultDir()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 45*time.Minute)
	defer cancel()
	mode, err := lab.AccelModeFromEnv()
	if err != nil {
		return err
	}
	accel, err := lab.ChooseAccel(ctx, mode)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: accelerator %s\n", accel)
	w := installWrite{bundle: *bundleD, out: filepath.Join(*out, "diskwrite"), cache: cdir, fetch: !*offline,
		rounds: *rounds, accel: accel, log: log}
	if *writes {
		return w.run(ctx)
	}
	if *netOnly {
		return netbootToInstaller(ctx, *profile, *bundleD, *kiln, filepath.Join(*out, "vmboot"), *rounds, accel)
	}
	r, err := bench.Run(ctx, bench.Options{
		Image: *image, StandIn: *standIn,
		GateMAC: gate.MAC, GateAddr: gate.Address,
		Out: *out, Cache: cdir, Fetch: !*offline,
		Settle: *settle, MemoryMiB: *memory, CPUs: *cpus, Accel: accel, Log: log,
	})
	if err != nil {
		return err
	}
	if *standIn {
		fmt.Println("NOTE: gate side is the STAND-IN image (tiny Go init), not kiln's gate-1.img")
	}
	bench.Print(os.Stdout, r)
	if r.Gate.Err != nil || r.Debian.Err != nil {
		return errors.New("a side failed (see above)")
	}
	if *bundleD == "" {
		return nil
	}
	if err := netbootToInstaller(ctx, *profile, *bundleD, *kiln, filepath.Join(*out, "vmboot"), *rounds, accel); err != nil {
		return err
	}
	return w.run(ctx)
}

// installWrite is package diskwrite's figure on a bundle's largest role
// image.
type installWrite struct {
	bundle, out, cache string
	fetch              bool
	rounds             int
	accel              lab.Accel
	log                *slog.Logger
}

func (w installWrite) run(ctx context.Context) error {
	image, err := largestRole(w.bundle)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: install write of %s, the installer's writer against dd, %d rounds\n", image, w.rounds)
	f, err := diskwrite.Run(ctx, diskwrite.Options{
		Image: image, Out: w.out, Cache: w.cache, Fetch: w.fetch, Rounds: w.rounds,
		MemoryMiB: 1024, CPUs: 2, Accel: w.accel, Log: w.log,
	})
	if err != nil {
		return err
	}
	netboot.Print(os.Stdout, &netboot.Report{Figures: f}, w.rounds)
	return nil
}

// imageBuild runs and prints package imagebuild's figures.
func imageBuild(kiln, profile, secrets, out string, rounds int, warmup bool) error {
	cdir, err := cache.DefaultDir()
	if err != nil {
		return err
	}
	pl, err := loadPlan(profile)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	fmt.Fprintf(os.Stderr, "bench: image build, %s against a hand-rolled pipeline, %d rounds\n", kiln, rounds)
	f, err := imagebuild.Run(ctx, imagebuild.Options{
		Kiln: kiln, Profile: profile, Plan: pl, Secrets: secrets, Out: out, Cache: cdir,
		Rounds: rounds, Warmup: warmup, Progress: os.Stderr,
	})
	if err != nil {
		return err
	}
	netboot.Print(os.Stdout, &netboot.Report{Figures: f}, rounds)
	return nil
}

// largestRole is the bundle's biggest role image.
func largestRole(bundleDir string) (string, error) {
	roles, err := filepath.Glob(filepath.Join(bundleDir, bundle.Role("*")))
	if err != nil || len(roles) == 0 {
		return "", fmt.Errorf("no role image in bundle %s", bundleDir)
	}
	best, size := "", int64(-1)
	for _, r := range roles {
		fi, err := os.Stat(r)
		if err != nil {
			return "", err
		}
		if fi.Size() > size {
			best, size = r, fi.Size()
		}
	}
	return best, nil
}

// netbootToInstaller runs and prints package vmboot's figures.
func netbootToInstaller(ctx context.Context, profile, bundleDir, kiln, out string, rounds int, accel lab.Accel) error {
	p, err := loadPlan(profile)
	if err != nil {
		return err
	}
	for _, s := range []*string{&profile, &bundleDir, &kiln, &out} {
		if *s == "" {
			continue
		}
		if *s, err = filepath.Abs(*s); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(out); err != nil {
		return err
	}
	figs, err := vmboot.Run(ctx, vmboot.Options{
		Plan: p, Profile: profile, Bundle: bundleDir, Kiln: kiln,
		Out: out, Rounds: rounds, Accel: accel, Progress: os.Stderr,
	})
	if err != nil {
		return err
	}
	netboot.Print(os.Stdout, &netboot.Report{Figures: figs}, rounds)
	return nil
}

// gateMachine is the profile's gate: its MAC and address.
func gateMachine(path string) (plan.Machine, error) {
	pl, err := loadPlan(path)
	if err != nil {
		return plan.Machine{}, err
	}
	for _, m := range pl.Machines {
		if m.Name == pl.Gate.Name {
			return m, nil
		}
	}
	return plan.Machine{}, fmt.Errorf("profile has no gate machine %q", pl.Gate.Name)
}

// loadPlan computes the plan of the profile file, or of the embedded
// default profile.
func loadPlan(path string) (*plan.Plan, error) {
	var p *profiles.Profile
	var err error
	if path == "" {
		p, err = profiles.Default()
	} else {
		p, err = profiles.Load(path)
	}
	if err != nil {
		return nil, err
	}
	return plan.Compute(p)
}

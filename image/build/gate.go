package build

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/kilnlab/kiln/image/fatimg"
	"github.com/kilnlab/kiln/image/gateimg"
	"github.com/kilnlab/kiln/image/initramfs"
	"github.com/kilnlab/kiln/image/kernel"
	"github.com/kilnlab/kiln/image/payload"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/profiles"
)

// The gate's SD image: the Pi firmware and the Debian arm64 kernel on a
// FAT boot partition with the gate initramfs (u-root + kiln), the whole
// netboot bundle on a read-only payload partition, and an empty /perm.

const gateArch = "arm64"

// gateDTBs are the device trees of the boards the gate image boots: the
// Pi 4 B, the Pi 400 and the CM4 on its IO board (the firmware picks one).
var gateDTBs = []string{"bcm2711-rpi-4-b.dtb", "bcm2711-rpi-400.dtb", "bcm2711-rpi-cm4-io.dtb"}

// gateSets are the lock sets only the gate image needs.
var gateSets = []string{"kernel-" + gateArch, "firmware-" + gateArch}

// gate returns the plan's gate when this build makes its image.
func (b *builder) gate() (plan.Machine, bool) {
	for _, m := range b.Plan.Machines {
		if m.Board != profiles.BoardRPi4 {
			continue
		}
		if b.Machines != nil && !slices.Contains(b.Machines, m.Name) {
			return plan.Machine{}, false
		}
		return m, true
	}
	return plan.Machine{}, false
}

// checkGateCard refuses, before any work, a card that cannot even hold
// the boot and /perm partitions; the payload's own size is checked when
// it is known, still before the image is written.
func (b *builder) checkGateCard(g plan.Machine) error {
	l, err := gateimg.NewLayout(1 << 20)
	if err != nil {
		return err
	}
	if err := l.Fits(b.gateCardSize(g.Name)); err != nil {
		return fmt.Errorf("%s: %w", g.Name, err)
	}
	return nil
}

// gateBoot unpacks the arm64 kernel (vmlinuz, modules, Pi DTBs) and the
// Pi firmware.
func (b *builder) gateBoot(ctx context.Context) error {
	debs := b.debs["kernel-"+gateArch]
	if len(debs) != 1 {
		return fmt.Errorf("lock set kernel-%s pins %d packages, want 1", gateArch, len(debs))
	}
	k, err := kernel.Extract(ctx, debs[0].Path, filepath.Join(b.work, "gate-kernel"))
	if err != nil {
		return err
	}
	b.gateKern = k
	fw := filepath.Join(b.work, "gate-firmware")
	for _, d := range b.debs["firmware-"+gateArch] {
		if err := run(ctx, "dpkg-deb", "-x", d.Path, fw); err != nil {
			return err
		}
	}
	b.gateFW = filepath.Join(fw, "usr/lib/raspi-firmware")
	return nil
}

func (b *builder) gateInitramfs(ctx context.Context) error {
	b.gateInitrd = filepath.Join(b.work, "gate-initrd.gz")
	return initramfs.Build(ctx, initramfs.Options{
		Arch:       gateArch,
		Out:        b.gateInitrd,
		ModulesDir: filepath.Dir(b.gateKern.ModulesDir()),
		Modules:    initramfs.GateModules(),
		Commands:   initramfs.GateCommands(),
		Uinit:      initramfs.GateUinit,
		SourceDir:  b.SourceDir,
		Log:        b.Log,
	})
}

// gateBootFiles lists the boot partition: where the Pi 4 firmware looks
// for each file (the partition's root).
func (b *builder) gateBootFiles() []fatimg.File {
	dtbs := filepath.Join(b.gateKern.Root, "usr/lib/linux-image-"+b.gateKern.Version, "broadcom")
	files := []fatimg.File{
		{Dest: "/start4.elf", Src: filepath.Join(b.gateFW, "start4.elf")},
		{Dest: "/fixup4.dat", Src: filepath.Join(b.gateFW, "fixup4.dat")},
		{Dest: gateimg.KernelPath, Src: b.gateKern.Vmlinuz()},
		{Dest: gateimg.InitrdPath, Src: b.gateInitrd},
	}
	for _, d := range gateDTBs {
		files = append(files, fatimg.File{Dest: "/" + d, Src: filepath.Join(dtbs, d)})
	}
	return files
}

// gatePayload stages the payload tree: gate.json, the profile, the
// bundle and the gate's secrets, then squashes it.
func (b *builder) gatePayload(ctx context.Context, g plan.Machine) (string, error) {
	tree := filepath.Join(b.work, "payload")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		return "", err
	}
	info := payload.Info{Lab: b.Plan.Lab, Machine: g.Name, BuildTime: b.BuildTime.UTC(),
		InterfaceMAC: g.MAC, Profile: payload.ProfileFile}
	if err := payload.WriteInfo(tree, info); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tree, payload.ProfileFile), b.ProfileYAML, 0o644); err != nil {
		return "", err
	}
	// A hard-linked copy: the squashfs reads the bundle once, and the
	// bundle on disk stays what `kiln gate serve` serves.
	if err := run(ctx, "cp", "-al", b.bundleDir(), filepath.Join(tree, payload.BundleDir)); err != nil {
		return "", err
	}
	if err := b.gateSecrets(ctx, tree); err != nil {
		return "", err
	}
	out := filepath.Join(b.work, "payload.squashfs")
	return out, gateimg.Payload(ctx, tree, out, b.BuildTime.Unix())
}

// gateSecrets copies the gate's share of the lab's secrets (staged by
// machineSecrets) into the payload as secrets/.
func (b *builder) gateSecrets(ctx context.Context, tree string) error {
	return run(ctx, "cp", "-a", b.gateSecretsDir(), filepath.Join(tree, payload.SecretsDir))
}

func (b *builder) gateImage(ctx context.Context) error {
	g, _ := b.gate()
	sig := gateimg.Signature(b.Plan.Lab, g.Name)
	pay, err := b.gatePayload(ctx, g)
	if err != nil {
		return err
	}
	img := filepath.Join(b.Out, g.Name+".img")
	b.progressf("      %s: boot + /perm + payload\n", img)
	err = gateimg.Build(ctx, gateimg.Options{
		Out: img, Signature: sig, CardSize: b.gateCardSize(g.Name), Boot: b.gateBootFiles(),
		Payload: pay, Epoch: b.BuildTime.Unix(),
	})
	if err != nil {
		return fmt.Errorf("%s: %w", g.Name, err)
	}
	b.progressf("      %s.xz (xz, a minute or two)\n", img)
	xz, err := gateimg.Compress(ctx, img)
	if err != nil {
		return err
	}
	if err := gateimg.WriteSHA256SUMS(b.Out, img, xz); err != nil {
		return err
	}
	return gateimg.WriteImagerList(b.Out, gateimg.ImagerOptions{
		Lab: b.Plan.Lab, Gate: g.Name, Img: img, XZ: xz, BaseURL: b.ImageBaseURL, Release: b.BuildTime,
	})
}

// gateCardSize is the gate's system disk size from the profile (its SD
// card); 0 when the profile does not say.
func (b *builder) gateCardSize(name string) int64 {
	m := b.profileMachine(name)
	if m == nil {
		return 0
	}
	for _, d := range m.Disks {
		if d.Use == profiles.UseSystem {
			return int64(d.Size)
		}
	}
	return 0
}

// bundleDir is where the netboot bundle goes inside Options.Out.
func (b *builder) bundleDir() string { return filepath.Join(b.Out, OutBundle) }

// OutBundle is the netboot bundle's directory inside the build output.
const OutBundle = "bundle"

package build

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"

	"github.com/kilnlab/kiln/image/bundle"
	"github.com/kilnlab/kiln/image/esp"
	"github.com/kilnlab/kiln/image/initramfs"
	"github.com/kilnlab/kiln/image/kernel"
	"github.com/kilnlab/kiln/image/kilnsrc"
	"github.com/kilnlab/kiln/image/lock"
	"github.com/kilnlab/kiln/image/rootfs"
	"github.com/kilnlab/kiln/image/stateimg"
	"github.com/kilnlab/kiln/installer/firstboot"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/roles"
)

// builder carries one build's inputs and intermediate results between the
// steps of Build.
type builder struct {
	Options
	work string

	debs     map[string][]lock.Local // lock set -> verified local files
	kern     *kernel.Kernel
	sdbootEF string // systemd-bootx64.efi from the pinned systemd-boot-efi

	gateKern   *kernel.Kernel // the arm64 kernel, for the gate
	gateFW     string         // raspi-firmware's files
	gateInitrd string         // the gate initramfs
}

// machines returns the plan machines this build makes images for: the
// netbooted amd64 servers, limited to Options.Machines when given.
func (b *builder) machines() []plan.Machine {
	var out []plan.Machine
	for _, m := range b.Plan.Machines {
		if m.Board != profiles.BoardPC || m.Arch != arch {
			continue
		}
		if b.Machines != nil && !slices.Contains(b.Machines, m.Name) {
			continue
		}
		out = append(out, m)
	}
	return out
}

// roles returns the roles of the machines built, each once, in plan order.
func (b *builder) roles() []string {
	var out []string
	for _, m := range b.machines() {
		if !slices.Contains(out, m.Role) {
			out = append(out, m.Role)
		}
	}
	return out
}

// arch is the only architecture the bundle is built for (the netbooted
// pc machines).
const arch = "amd64"

func rootfsSet(role string) string { return "rootfs-" + role + "-" + arch }

func (b *builder) fetch(ctx context.Context) error {
	// The upstream programs first: the one input a user may have to
	// import by hand, so a build without it stops at once.
	if err := b.fetchArtifacts(ctx); err != nil {
		return err
	}
	sets := []string{"kernel-amd64", "boot-amd64"}
	for _, r := range b.roles() {
		sets = append(sets, rootfsSet(r))
	}
	if g, ok := b.gate(); ok {
		if err := b.checkGateCard(g); err != nil {
			return err
		}
		sets = append(sets, gateSets...)
	}
	b.debs = map[string][]lock.Local{}
	for _, s := range sets {
		files, err := lock.Fetch(ctx, b.Cache, b.Lock, s)
		if err != nil {
			return err
		}
		b.debs[s] = files
	}
	return nil
}

func (b *builder) kernel(ctx context.Context) error {
	debs := b.debs["kernel-amd64"]
	if len(debs) != 1 {
		return fmt.Errorf("lock set kernel-amd64 pins %d packages, want 1", len(debs))
	}
	k, err := kernel.Extract(ctx, debs[0].Path, filepath.Join(b.work, "kernel"))
	if err != nil {
		return err
	}
	b.kern = k
	dst, err := b.out(bundle.Kernel(arch))
	if err != nil {
		return err
	}
	return copyFile(k.Vmlinuz(), dst, 0o644)
}

// bootFiles unpacks the pinned ipxe, syslinux-common and systemd-boot-efi
// packages and takes the few files kiln serves or installs from them.
func (b *builder) bootFiles(ctx context.Context) error {
	root := filepath.Join(b.work, "boot")
	for _, d := range b.debs["boot-amd64"] {
		if err := run(ctx, "dpkg-deb", "-x", d.Path, root); err != nil {
			return err
		}
	}
	copies := map[string]string{bundle.GPTMBR: "usr/lib/syslinux/mbr/gptmbr.bin"}
	for _, f := range bundle.TFTPFiles {
		copies[bundle.TFTP(f)] = "usr/lib/ipxe/" + f
	}
	for dst, src := range copies {
		out, err := b.out(dst)
		if err != nil {
			return err
		}
		if err := copyFile(filepath.Join(root, src), out, 0o644); err != nil {
			return err
		}
	}
	b.sdbootEF = filepath.Join(root, "usr/lib/systemd/boot/efi/systemd-bootx64.efi")
	_, err := os.Stat(b.sdbootEF)
	return err
}

func (b *builder) initramfs(ctx context.Context) error {
	out, err := b.out(bundle.Initramfs(arch))
	if err != nil {
		return err
	}
	return initramfs.Build(ctx, initramfs.Options{
		Arch:       arch,
		Out:        out,
		ModulesDir: filepath.Dir(b.kern.ModulesDir()),
		SourceDir:  b.SourceDir,
		Log:        b.Log,
	})
}

// roleImages builds one squashfs per role, each with kiln-firstboot and
// its units (the first boot; the health report and its timer) baked in.
func (b *builder) roleImages(ctx context.Context) error {
	bin := filepath.Join(b.work, "kiln-firstboot")
	if err := b.goBuild(ctx, bin, "./installer/cmd/kiln-firstboot"); err != nil {
		return err
	}
	// image path -> file in the work dir
	extra := map[string]string{firstboot.BinaryPath: bin}
	for name, text := range map[string]string{
		firstboot.UnitName:        firstboot.Unit,
		firstboot.HealthUnitName:  firstboot.HealthUnit,
		firstboot.HealthTimerName: firstboot.HealthTimer,
	} {
		f := filepath.Join(b.work, name)
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			return err
		}
		extra["/etc/systemd/system/"+name] = f
	}
	for _, name := range b.roles() {
		role, err := roles.Lookup(name)
		if err != nil {
			return err
		}
		out, err := b.out(bundle.Role(name))
		if err != nil {
			return err
		}
		logPath, logFile, err := b.toolLog("rootfs-" + name)
		if err != nil {
			return err
		}
		b.progressf("      %s: mmdebstrap + mksquashfs (a few minutes; log %s)\n", out, logPath)
		upstream, err := b.roleArtifacts(ctx, name)
		if err != nil {
			logFile.Close()
			return fmt.Errorf("role %s: %w", name, err)
		}
		err = rootfs.Build(ctx, rootfs.Options{
			Debs:       localPaths(b.debs[rootfsSet(name)]),
			Packages:   role.Packages,
			Arch:       arch,
			Suite:      b.Lock.Suite,
			ExtraFiles: mergeFiles(extra, upstream),
			Units:      []string{firstboot.UnitName, firstboot.HealthTimerName},
			Out:        out,
			Progress:   logFile,
		})
		logFile.Close()
		if err != nil {
			return fmt.Errorf("role %s (full log: %s): %w", name, logPath, err)
		}
	}
	return nil
}

// machineImages writes each machine's ESP (boot-mode kernel command line
// naming its own partitions) and state image (its identity).
func (b *builder) machineImages(ctx context.Context) error {
	for _, m := range b.machines() {
		espOut, err := b.out(bundle.ESP(m.Name))
		if err != nil {
			return err
		}
		err = esp.Build(ctx, esp.Options{
			Out:            espOut,
			Kernel:         filepath.Join(b.bundleDir(), bundle.Kernel(arch)),
			Initramfs:      filepath.Join(b.bundleDir(), bundle.Initramfs(arch)),
			Cmdline:        m.Cmdline,
			SystemdBootEFI: b.sdbootEF,
		})
		if err != nil {
			return fmt.Errorf("%s: esp: %w", m.Name, err)
		}
		if err := b.stateImage(ctx, m); err != nil {
			return fmt.Errorf("%s: state: %w", m.Name, err)
		}
	}
	return nil
}

func (b *builder) stateImage(ctx context.Context, m plan.Machine) error {
	pm := b.profileMachine(m.Name)
	if pm == nil {
		return fmt.Errorf("machine %s is in the plan but not the profile", m.Name)
	}
	cfg, err := roles.Render(b.Profile, pm)
	if err != nil {
		return err
	}
	tree := filepath.Join(b.work, "state", m.Name)
	if err := os.MkdirAll(tree, 0o755); err != nil {
		return err
	}
	if err := roles.Apply(cfg, tree); err != nil {
		return err
	}
	if err := onlyEtc(tree); err != nil {
		return err
	}
	out, err := b.out(bundle.State(m.Name))
	if err != nil {
		return err
	}
	return stateimg.Build(ctx, stateimg.Options{
		Out:  out,
		Tree: filepath.Join(tree, "etc"),
		UUID: plan.GUID(b.Plan.Lab, m.Name, "state", "ext4"),
	})
}

// onlyEtc refuses a machine config that writes outside /etc: the state
// image carries /etc only, and anything else would be silently lost.
func onlyEtc(tree string) error {
	entries, err := os.ReadDir(tree)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() != "etc" {
			return fmt.Errorf("machine config writes /%s: only /etc is carried by the state image", e.Name())
		}
	}
	return nil
}

func (b *builder) profileMachine(name string) *profiles.Machine {
	for i := range b.Profile.Machines {
		if b.Profile.Machines[i].Name == name {
			return &b.Profile.Machines[i]
		}
	}
	return nil
}

func (b *builder) finish(ctx context.Context) error {
	out, err := b.out(bundle.PlanFile)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := plan.WriteJSON(&buf, b.Plan); err != nil {
		return err
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		return err
	}
	return bundle.WriteManifest(b.bundleDir())
}

// toolLog opens the log file of a long tool run, kept next to the bundle
// (not in it: the gate serves the bundle) so that a failure can be read.
func (b *builder) toolLog(name string) (string, *os.File, error) {
	dir := filepath.Join(b.Out, "logs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	path := filepath.Join(dir, name+".log")
	f, err := os.Create(path)
	return path, f, err
}

// goBuild compiles a static kiln command from the source tree.
func (b *builder) goBuild(ctx context.Context, out, pkg string) error {
	return kilnsrc.GoBuild(ctx, b.SourceDir, out, pkg, "amd64")
}

func run(ctx context.Context, name string, args ...string) error {
	if msg, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w\n%s", name, err, msg)
	}
	return nil
}

func localPaths(ls []lock.Local) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.Path
	}
	return out
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}

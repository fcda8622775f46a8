// Package imagebuild measures `kiln build` with a warm cache against the
// hand-rolled pipeline a user would script for the same netboot bundle:
// a flat repository of the same cached .debs, mmdebstrap with the same
// options and customisations, mksquashfs with the same compression, an ESP
// per machine made with mkfs.vfat, syslinux and mcopy, a state image per
// machine made with mke2fs -d, the kernel and installer initramfs copied,
// and a checksum list. It owns that pipeline (a shell script kept here),
// the preparation of its inputs from kiln's own output (the files kiln
// adds to each role image, each machine's /etc tree, systemd-boot), and
// the reading of kiln's per-step times from its progress lines. kiln and
// the pipeline alternate over rounds; the gate SD image's build time is
// kiln's alone (the pipeline makes no gate image). No VM runs; it needs
// root (mmdebstrap --mode=root, as kiln's build does).
package imagebuild

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kilnlab/kiln/image/bundle"
	"github.com/kilnlab/kiln/image/cache"
	"github.com/kilnlab/kiln/image/esp"
	"github.com/kilnlab/kiln/image/lock"
	"github.com/kilnlab/kiln/image/rootfs"
	"github.com/kilnlab/kiln/installer/firstboot"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/qemu-tests/bench/netboot"
	"github.com/kilnlab/kiln/roles"
)

// arch is the bundle's one architecture (image/build's).
const arch = "amd64"

// Options are one run's inputs.
type Options struct {
	Kiln    string     // the kiln binary
	Profile string     // profile file; "" is the embedded default lab
	Plan    *plan.Plan // Profile's plan
	Secrets string     // kiln build --secrets; "" is kiln's default
	Out     string     // scratch folder: both sides' outputs and logs
	Cache   string     // kiln's cache folder (the pinned .debs)
	Rounds  int
	// Warmup runs one untimed `kiln build` first (the pipeline's inputs
	// are prepared from it); without it, the first timed build is used.
	Warmup   bool
	Progress io.Writer
}

// kilnRun is one `kiln build`: its steps' times, in its order.
type kilnRun struct {
	steps map[string]time.Duration
	order []string
	wall  time.Duration
}

// pipelineRun is one run of the script: its phases' times and its wall.
type pipelineRun struct {
	phases map[string]float64
	wall   time.Duration
}

// kiln's step names (image/build) that the figures sum.
const (
	stepRoles     = "role images"
	stepMachines  = "machine images"
	stepInitramfs = "installer initramfs"
	stepGateBoot  = "gate kernel and firmware"
	stepGateInit  = "gate initramfs"
	stepGateImage = "gate SD image"
)

var gateSteps = []string{stepGateBoot, stepGateInit, stepGateImage}

// Run alternates kiln's build and the pipeline over o.Rounds and returns
// the figures (seconds, lower is better).
func Run(ctx context.Context, o Options) ([]netboot.Figure, error) {
	if o.Rounds <= 0 || o.Kiln == "" || o.Out == "" || o.Plan == nil {
		return nil, errors.New("imagebuild: Kiln, Out, Plan and a positive Rounds are required")
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if os.Geteuid() != 0 {
		return nil, rootfs.ErrNeedRoot
	}
	var err error
	for _, p := range []*string{&o.Kiln, &o.Out, &o.Profile, &o.Secrets} {
		if *p == "" {
			continue
		}
		if *p, err = filepath.Abs(*p); err != nil {
			return nil, fmt.Errorf("imagebuild: %w", err)
		}
	}
	pl := o.Plan
	lk, err := lock.Default()
	if err != nil {
		return nil, fmt.Errorf("imagebuild: lock: %w", err)
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, fmt.Errorf("imagebuild: %w", err)
	}
	kilnOut := filepath.Join(o.Out, "kiln")
	inputs := filepath.Join(o.Out, "pipeline-inputs")
	prepared := false
	prepare := func() error {
		fmt.Fprintf(o.Progress, "imagebuild: preparing the pipeline's inputs from %s (untimed)\n", kilnOut)
		if err := prepareInputs(ctx, pl, lk, o.Cache, filepath.Join(kilnOut, "bundle"), inputs); err != nil {
			return fmt.Errorf("imagebuild: pipeline inputs: %w", err)
		}
		prepared = true
		return nil
	}
	if o.Warmup {
		fmt.Fprintln(o.Progress, "imagebuild: warm-up kiln build (untimed)")
		if _, err := buildKiln(ctx, o, kilnOut, filepath.Join(o.Out, "kiln-warmup.log")); err != nil {
			return nil, err
		}
		if err := prepare(); err != nil {
			return nil, err
		}
	}
	var ks []kilnRun
	var ps []pipelineRun
	for i := 1; i <= o.Rounds; i++ {
		fmt.Fprintf(o.Progress, "imagebuild: round %d/%d: kiln build\n", i, o.Rounds)
		k, err := buildKiln(ctx, o, kilnOut, filepath.Join(o.Out, fmt.Sprintf("kiln-round%d.log", i)))
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(o.Progress, "imagebuild: kiln build took %s\n", k.wall.Round(100*time.Millisecond))
		ks = append(ks, k)
		if !prepared {
			if err := prepare(); err != nil {
				return nil, err
			}
		}
		fmt.Fprintf(o.Progress, "imagebuild: round %d/%d: the pipeline\n", i, o.Rounds)
		p, err := runPipeline(ctx, inputs, filepath.Join(o.Out, "pipeline"), lk.Suite,
			filepath.Join(o.Out, fmt.Sprintf("pipeline-round%d.log", i)))
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(o.Progress, "imagebuild: pipeline took %s\n", p.wall.Round(100*time.Millisecond))
		ps = append(ps, p)
	}
	// Both sides' last outputs are large: keep the logs only.
	for _, d := range []string{kilnOut, filepath.Join(o.Out, "pipeline")} {
		if err := os.RemoveAll(d); err != nil {
			return nil, fmt.Errorf("imagebuild: %w", err)
		}
	}
	return figures(ks, ps, len(roleNames(pl)), len(machines(pl))), nil
}

// buildKiln runs `kiln build` into a fresh dir and reads its step times
// from its progress lines ("[i/n] step", then "done in 1m2.3s").
func buildKiln(ctx context.Context, o Options, dir, logPath string) (kilnRun, error) {
	r := kilnRun{steps: map[string]time.Duration{}}
	if err := os.RemoveAll(dir); err != nil {
		return r, fmt.Errorf("imagebuild: %w", err)
	}
	args := []string{"build", "-o", dir}
	if o.Secrets != "" {
		args = append(args, "--secrets", o.Secrets)
	}
	if o.Profile != "" {
		args = append(args, o.Profile)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return r, fmt.Errorf("imagebuild: %w", err)
	}
	defer logf.Close()
	var stdout bytes.Buffer
	cmd := exec.CommandContext(ctx, o.Kiln, args...)
	cmd.Stdout = io.MultiWriter(&stdout, logf)
	cmd.Stderr = logf
	start := time.Now()
	err = cmd.Run()
	r.wall = time.Since(start)
	if err != nil {
		return r, fmt.Errorf("imagebuild: %s %s: %w (log %s)", o.Kiln, strings.Join(args, " "), err, logPath)
	}
	if err := parseSteps(&stdout, &r); err != nil {
		return r, fmt.Errorf("imagebuild: kiln build's progress (log %s): %w", logPath, err)
	}
	return r, nil
}

var (
	stepRe = regexp.MustCompile(`^\[(\d+)/(\d+)\] (.+)$`)
	doneRe = regexp.MustCompile(`^\s+done in (\S+)$`)
)

func parseSteps(rd io.Reader, r *kilnRun) error {
	sc := bufio.NewScanner(rd)
	cur := ""
	for sc.Scan() {
		l := sc.Text()
		if m := stepRe.FindStringSubmatch(l); m != nil {
			cur = m[3]
			continue
		}
		if m := doneRe.FindStringSubmatch(l); m != nil && cur != "" {
			d, err := time.ParseDuration(m[1])
			if err != nil {
				return fmt.Errorf("step %q: %w", cur, err)
			}
			r.steps[cur] = d
			r.order = append(r.order, cur)
			cur = ""
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	for _, s := range []string{stepRoles, stepMachines} {
		if _, ok := r.steps[s]; !ok {
			return fmt.Errorf("no time for step %q", s)
		}
	}
	return nil
}

// machines are the plan's netbooted amd64 servers, as image/build picks
// them.
func machines(p *plan.Plan) []plan.Machine {
	var out []plan.Machine
	for _, m := range p.Machines {
		if m.Board == profiles.BoardPC && m.Arch == arch {
			out = append(out, m)
		}
	}
	return out
}

// roleNames are the roles of those machines, each once, in plan order.
func roleNames(p *plan.Plan) []string {
	var out []string
	for _, m := range machines(p) {
		if !slices.Contains(out, m.Role) {
			out = append(out, m.Role)
		}
	}
	return out
}

// extraPaths are the files kiln adds to every role image (image/build's
// roleImages and roleArtifacts): the pipeline copies the same ones in.
func extraPaths() []string {
	return []string{
		strings.TrimPrefix(firstboot.BinaryPath, "/"),
		"etc/systemd/system/" + firstboot.UnitName,
		"etc/systemd/system/" + firstboot.HealthUnitName,
		"etc/systemd/system/" + firstboot.HealthTimerName,
		"usr/local/bin",
		"usr/local/share/kiln",
		strings.Trim(roles.K3sImagesDir, "/"),
	}
}

// prepareInputs lays out what the script reads, from kiln's bundle and
// kiln's cache:
//
//	roles.txt              role packages(,-joined or -) units
//	debs-<role>.txt        the role's cached, verified .debs
//	extras-<role>/         the files kiln adds to the role image
//	machines.txt           machine volume-id state-uuid
//	cmdline-<machine>.txt  its boot-mode kernel command line
//	state-<machine>/       its /etc tree (the state image's etc/upper)
//	BOOTX64.EFI            systemd-boot, as on kiln's ESPs
//	bundle/                kernel, initramfs, iPXE, gptmbr.bin, copied as they are
func prepareInputs(ctx context.Context, pl *plan.Plan, lk *lock.File, cacheDir, kilnBundle, dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "bundle"), 0o755); err != nil {
		return err
	}
	c := &cache.Cache{Dir: cacheDir}
	var rolesTxt strings.Builder
	units := firstboot.UnitName + " " + firstboot.HealthTimerName
	for _, name := range roleNames(pl) {
		role, err := roles.Lookup(name)
		if err != nil {
			return err
		}
		debs, err := lock.Cached(c, lk, "rootfs-"+name+"-"+arch)
		if err != nil {
			return fmt.Errorf("role %s: %w", name, err)
		}
		var list strings.Builder
		for _, d := range debs {
			list.WriteString(d.Path + "\n")
		}
		if err := os.WriteFile(filepath.Join(dir, "debs-"+name+".txt"), []byte(list.String()), 0o644); err != nil {
			return err
		}
		args := append([]string{"-n", "-d", filepath.Join(dir, "extras-"+name), filepath.Join(kilnBundle, bundle.Role(name))}, extraPaths()...)
		if err := run(ctx, "unsquashfs", args...); err != nil {
			return err
		}
		pkgs := strings.Join(role.Packages, ",")
		if pkgs == "" {
			pkgs = "-"
		}
		fmt.Fprintf(&rolesTxt, "%s %s %s\n", name, pkgs, units)
	}
	if err := os.WriteFile(filepath.Join(dir, "roles.txt"), []byte(rolesTxt.String()), 0o644); err != nil {
		return err
	}
	var machinesTxt strings.Builder
	ms := machines(pl)
	for _, m := range ms {
		if strings.ContainsAny(m.Cmdline, "\n\r") {
			return fmt.Errorf("%s: command line holds a line break", m.Name)
		}
		fmt.Fprintf(&machinesTxt, "%s 0x%08x %s\n", m.Name, volumeID(m.Cmdline), plan.GUID(pl.Lab, m.Name, "state", "ext4"))
		if err := os.WriteFile(filepath.Join(dir, "cmdline-"+m.Name+".txt"), []byte(m.Cmdline), 0o644); err != nil {
			return err
		}
		state := filepath.Join(dir, "state-"+m.Name)
		if err := os.Mkdir(state, 0o755); err != nil {
			return err
		}
		// rdump writes the directory "upper" into state/.
		if err := run(ctx, "debugfs", "-R", "rdump /etc/upper "+state, filepath.Join(kilnBundle, bundle.State(m.Name))); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "machines.txt"), []byte(machinesTxt.String()), 0o644); err != nil {
		return err
	}
	if len(ms) > 0 {
		err := run(ctx, "mcopy", "-n", "-i", filepath.Join(kilnBundle, bundle.ESP(ms[0].Name)),
			"::"+esp.BootloaderEFI, filepath.Join(dir, "BOOTX64.EFI"))
		if err != nil {
			return err
		}
	}
	for _, d := range []string{arch, "tftp", "bios"} {
		if err := run(ctx, "cp", "-a", filepath.Join(kilnBundle, d), filepath.Join(dir, "bundle", d)); err != nil {
			return err
		}
	}
	return nil
}

// volumeID is image/esp's default FAT serial for a command line.
func volumeID(cmdline string) uint32 {
	sum := sha256.Sum256([]byte("kiln-esp\x00" + esp.DefaultLabel + "\x00" + cmdline))
	return binary.LittleEndian.Uint32(sum[:4])
}

// pipeline is what a user would script over the same inputs; it prints
// one KILN-PIPELINE line per phase. Options mirror kiln's (image/rootfs,
// image/esp, image/stateimg) so that both sides do the same work.
const pipeline = `set -eu
export SOURCE_DATE_EPOCH="$EPOCH" LC_ALL=C.UTF-8 TZ=UTC MTOOLSRC=/dev/null MTOOLS_SKIP_CHECK=1
now() { date +%s.%N; }
lap() { echo "KILN-PIPELINE phase=$1 seconds=$(echo "$(now) $2" | awk '{printf "%.3f", $1-$2}')"; }
rm -rf "$OUTB" "$WORK"
mkdir -p "$OUTB/roles" "$OUTB/machines" "$WORK"

t0=$(now)
cp -a "$REF/bundle/." "$OUTB/"
lap copies "$t0"

t0=$(now)
while read -r role pkgs units; do
	stage="$WORK/stage-$role"
	mkdir -p "$stage/repo"
	while read -r deb; do
		n=$(basename "$deb" .deb)
		ln "$deb" "$stage/repo/$n.deb" 2>/dev/null || cp "$deb" "$stage/repo/$n.deb"
	done < "$REF/debs-$role.txt"
	(cd "$stage/repo" && apt-ftparchive packages . > Packages && apt-ftparchive release . > Release)
	include=
	[ "$pkgs" = - ] || include="--include=$pkgs"
	mmdebstrap --variant=apt --mode=root --format=directory --architectures="$ARCH" \
		--aptopt='Acquire::Languages "none"' --aptopt='APT::Sandbox::User "root"' \
		--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
		'--dpkgopt=path-exclude=/usr/share/man/*' '--dpkgopt=path-exclude=/usr/share/info/*' \
		'--dpkgopt=path-exclude=/usr/share/doc/*' '--dpkgopt=path-include=/usr/share/doc/*/copyright' \
		'--dpkgopt=path-exclude=/usr/share/locale/*' \
		$include \
		--customize-hook="cp -a '$REF/extras-$role/.' \"\$1\"/" \
		--customize-hook='mkdir -p "$1"/kiln/state' \
		--customize-hook="chroot \"\$1\" systemctl enable systemd-networkd.service $units" \
		--customize-hook=': > "$1"/etc/machine-id' \
		--customize-hook='rm -f "$1"/etc/hostname "$1"/etc/resolv.conf' \
		--customize-hook='printf "# kiln: role images are immutable; no package sources.\n" > "$1"/etc/apt/sources.list' \
		"$SUITE" "$stage/root" "deb [trusted=yes] copy://$stage/repo ./" >> "$WORK/$role.log" 2>&1
	mksquashfs "$stage/root" "$OUTB/roles/$role.squashfs" -comp zstd -noappend >> "$WORK/$role.log" 2>&1
	rm -rf "$stage"
done < "$REF/roles.txt"
lap roles "$t0"

t0=$(now)
while read -r m volid uuid; do
	d="$OUTB/machines/$m"
	mkdir -p "$d"
	cmdline=$(cat "$REF/cmdline-$m.txt")
	img="$d/esp.img"
	truncate -s 128M "$img"
	mkfs.vfat -F 32 -n KILN-ESP -i "${volid#0x}" "$img" > /dev/null
	syslinux --install "$img"
	mmd -i "$img" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries
	printf 'SERIAL 0 115200\nDEFAULT kiln\nPROMPT 0\nTIMEOUT 0\n\nLABEL kiln\n  LINUX /vmlinuz\n  INITRD /initrd\n  APPEND %s\n' "$cmdline" > "$WORK/syslinux.cfg"
	printf 'timeout 0\ndefault kiln.conf\n' > "$WORK/loader.conf"
	printf 'title kiln\nlinux /vmlinuz\ninitrd /initrd\noptions %s\n' "$cmdline" > "$WORK/kiln.conf"
	mcopy -i "$img" "$OUTB/$KERNEL" ::/vmlinuz
	mcopy -i "$img" "$OUTB/$INITRD" ::/initrd
	mcopy -i "$img" "$REF/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
	mcopy -i "$img" "$WORK/syslinux.cfg" ::/syslinux.cfg
	mcopy -i "$img" "$WORK/loader.conf" ::/loader/loader.conf
	mcopy -i "$img" "$WORK/kiln.conf" ::/loader/entries/kiln.conf

	st="$WORK/state-$m"
	mkdir -p "$st/etc/work" "$st/var/upper" "$st/var/work"
	cp -a "$REF/state-$m/upper" "$st/etc/upper"
	truncate -s 64M "$d/state.img"
	mke2fs -q -F -t ext4 -T default -b 4096 -I 256 -d "$st" -U "$uuid" -E root_owner=0:0 -L kiln-state "$d/state.img"
	rm -rf "$st"
done < "$REF/machines.txt"
lap machines "$t0"

t0=$(now)
(cd "$OUTB" && find . -type f -print0 | sort -z | xargs -0 sha256sum > "$WORK/SHA256SUMS" && mv "$WORK/SHA256SUMS" .)
lap checksums "$t0"
`

var phaseRe = regexp.MustCompile(`^KILN-PIPELINE phase=(\S+) seconds=([0-9.]+)$`)

// runPipeline runs the script over the prepared inputs into dir/bundle.
func runPipeline(ctx context.Context, inputs, dir, suite, logPath string) (pipelineRun, error) {
	r := pipelineRun{phases: map[string]float64{}}
	logf, err := os.Create(logPath)
	if err != nil {
		return r, fmt.Errorf("imagebuild: %w", err)
	}
	defer logf.Close()
	var stdout bytes.Buffer
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", pipeline)
	cmd.Env = append(os.Environ(),
		"REF="+inputs, "OUTB="+filepath.Join(dir, "bundle"), "WORK="+filepath.Join(dir, "work"),
		"EPOCH="+strconv.FormatInt(rootfs.DefaultEpoch, 10), "ARCH="+arch, "SUITE="+suite,
		"KERNEL="+bundle.Kernel(arch), "INITRD="+bundle.Initramfs(arch))
	cmd.Stdout = io.MultiWriter(&stdout, logf)
	cmd.Stderr = logf
	start := time.Now()
	err = cmd.Run()
	r.wall = time.Since(start)
	if err != nil {
		return r, fmt.Errorf("imagebuild: pipeline: %w (log %s, tools' output in %s)", err, logPath, filepath.Join(dir, "work"))
	}
	for _, l := range strings.Split(stdout.String(), "\n") {
		if m := phaseRe.FindStringSubmatch(strings.TrimSpace(l)); m != nil {
			v, err := strconv.ParseFloat(m[2], 64)
			if err != nil {
				return r, fmt.Errorf("imagebuild: pipeline line %q: %w", l, err)
			}
			r.phases[m[1]] = v
		}
	}
	for _, p := range []string{"roles", "machines"} {
		if _, ok := r.phases[p]; !ok {
			return r, fmt.Errorf("imagebuild: pipeline printed no time for %s (log %s)", p, logPath)
		}
	}
	return r, nil
}

// figures turns the rounds into the report's figures, in seconds.
func figures(ks []kilnRun, ps []pipelineRun, nRoles, nMachines int) []netboot.Figure {
	fig := func(name string, k, p func(int) float64, notes ...string) netboot.Figure {
		f := netboot.Figure{Name: name, Servers: []string{"kiln", "pipeline"}, MiBps: map[string][]float64{},
			Unit: "s", LowerBetter: true}
		for i := range ks {
			f.MiBps["kiln"] = append(f.MiBps["kiln"], k(i))
			f.MiBps["pipeline"] = append(f.MiBps["pipeline"], p(i))
		}
		if km, pm := netboot.Median(f.MiBps["kiln"]), netboot.Median(f.MiBps["pipeline"]); pm > 0 {
			notes = append(notes, fmt.Sprintf("kiln/pipeline time: %.2f× (goal ≤ 1.0×)", km/pm))
		}
		f.Notes = notes
		return f
	}
	step := func(name string) func(int) float64 {
		return func(i int) float64 { return ks[i].steps[name].Seconds() }
	}
	phase := func(name string) func(int) float64 {
		return func(i int) float64 { return ps[i].phases[name] }
	}
	// The bundle as a whole: kiln's steps up to the gate's, but its u-root
	// installer initramfs, which the pipeline takes from kiln.
	bundleSteps := func(i int) float64 {
		var s time.Duration
		for name, d := range ks[i].steps {
			if name != stepInitramfs && !slices.Contains(gateSteps, name) {
				s += d
			}
		}
		return s.Seconds()
	}
	var kilnSteps []string
	if len(ks) > 0 {
		for _, s := range ks[0].order {
			if s != stepInitramfs && !slices.Contains(gateSteps, s) {
				kilnSteps = append(kilnSteps, s)
			}
		}
	}
	out := []netboot.Figure{
		fig(fmt.Sprintf("Image build, warm cache: role images (%d roles), kiln's \"role images\" step vs a flat repo + mmdebstrap + mksquashfs -comp zstd over the same cached .debs", nRoles),
			step(stepRoles), phase("roles"),
			"kiln's step also go-builds kiln-firstboot (Go build cache warm); the pipeline copies kiln's binary, units and upstream programs in with a customize hook"),
		fig(fmt.Sprintf("Image build, warm cache: machine images (%d ESPs + %d state images), kiln's \"machine images\" step vs mkfs.vfat + syslinux + mcopy and mke2fs -d", nMachines, nMachines),
			step(stepMachines), phase("machines"),
			"kiln also fixes every state-image inode's times and owner with debugfs (reproducible bytes); the pipeline does not"),
		fig("Image build, warm cache: the netboot bundle as a whole (kiln build without its installer initramfs and gate steps vs the whole script)",
			bundleSteps, func(i int) float64 { return ps[i].wall.Seconds() },
			"kiln: "+strings.Join(kilnSteps, ", "),
			"pipeline: copies of kernel, initramfs, iPXE and gptmbr.bin from kiln's bundle; role images; machine images; sha256sum of the bundle",
			fmt.Sprintf("kiln's installer initramfs (u-root), which the pipeline takes as it is: median %.1f s", netboot.Median(collect(ks, step(stepInitramfs))))),
	}
	gate := netboot.Figure{Name: "Image build, warm cache: the gate SD image on its own (kiln's gate kernel and firmware, gate initramfs and gate SD image steps; no pipeline)",
		Servers: []string{"kiln"}, MiBps: map[string][]float64{}, Unit: "s", LowerBetter: true}
	for i := range ks {
		var s time.Duration
		for _, n := range gateSteps {
			s += ks[i].steps[n]
		}
		if s > 0 {
			gate.MiBps["kiln"] = append(gate.MiBps["kiln"], s.Seconds())
		}
	}
	if len(gate.MiBps["kiln"]) > 0 {
		for _, n := range gateSteps {
			gate.Notes = append(gate.Notes, fmt.Sprintf("%s: median %.1f s", n, netboot.Median(collect(ks, step(n)))))
		}
		gate.Notes = append(gate.Notes, fmt.Sprintf("whole kiln build: median %.1f s", netboot.Median(collect(ks, func(i int) float64 { return ks[i].wall.Seconds() }))))
		out = append(out, gate)
	}
	return out
}

func collect(ks []kilnRun, f func(int) float64) []float64 {
	v := make([]float64, len(ks))
	for i := range ks {
		v[i] = f(i)
	}
	return v
}

func run(ctx context.Context, name string, args ...string) error {
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

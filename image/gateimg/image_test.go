package gateimg

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/image/fatimg"
	"github.com/kilnlab/kiln/image/hosttool/hosttooltest"
)

const testEpoch = 1767225600 // 2026-01-01 UTC

// standIns writes small stand-ins for the firmware, device trees, kernel
// and initramfs (fixed pseudo-random bytes: the image does not look inside).
func standIns(t *testing.T) []fatimg.File {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(4, 4))
	var files []fatimg.File
	for _, f := range []struct {
		dest string
		size int
	}{
		{"/start4.elf", 300 << 10}, {"/fixup4.dat", 5 << 10}, {"/bcm2711-rpi-4-b.dtb", 50 << 10},
		{"/bcm2711-rpi-400.dtb", 50 << 10}, {"/bcm2711-rpi-cm4-io.dtb", 50 << 10},
		{"/overlays/disable-bt.dtbo", 1 << 10}, {"/vmlinuz", 1 << 20}, {"/initrd.gz", 1<<20 + 3},
	} {
		b := make([]byte, f.size)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		p := filepath.Join(dir, filepath.Base(f.dest))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, fatimg.File{Dest: f.dest, Src: p})
	}
	return files
}

// payloadTree is a stand-in of the payload's contents, secrets included.
func payloadTree(t *testing.T) string {
	dir := t.TempDir()
	for path, c := range map[string]struct {
		text string
		mode os.FileMode
	}{
		"gate.json":               {`{"lab":"homelab","machine":"gate-1"}` + "\n", 0o644},
		"profile.yaml":            {"lab: homelab\n", 0o644},
		"bundle/plan.json":        {"{}\n", 0o644},
		"secrets/wireguard.json":  {`{"gate_private_key":"x"}` + "\n", 0o600},
		"bundle/roles/x.squashfs": {strings.Repeat("role image ", 50000), 0o644},
	} {
		p := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c.text), c.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestBuildReadBack(t *testing.T) {
	hosttooltest.Need(t, append(Tools(), "mksquashfs", "unsquashfs", "sfdisk", "fsck.vfat", "mdir", "mtype",
		"e2fsck", "dumpe2fs", "xz", "sha256sum")...)
	ctx := context.Background()
	dir := t.TempDir()
	payload := filepath.Join(dir, "payload.squashfs")
	if err := Payload(ctx, payloadTree(t), payload, testEpoch); err != nil {
		t.Fatal(err)
	}
	sig := Signature("homelab", "gate-1")
	o := Options{Out: filepath.Join(dir, "gate-1.img"), Signature: sig, CardSize: 16_000_000_000,
		Boot: standIns(t), Payload: payload, Epoch: testEpoch}
	if err := Build(ctx, o); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(payload)
	l, _ := NewLayout(fi.Size())
	checkTable(t, o.Out, sig, l)
	checkBoot(t, o, l)
	checkPerm(t, o.Out, l)
	checkPayload(t, o.Out, l)

	// A second build of the same inputs gives the same bytes.
	again := o
	again.Out = filepath.Join(t.TempDir(), "gate-1.img")
	if err := Build(ctx, again); err != nil {
		t.Fatal(err)
	}
	a, errA := fileSHA256(o.Out)
	b, errB := fileSHA256(again.Out)
	if a != b || errA != nil || errB != nil {
		t.Errorf("two builds differ: %s, %s (%v, %v)", a, b, errA, errB)
	}

	xzPath, err := Compress(ctx, o.Out)
	if err != nil {
		t.Fatal(err)
	}
	run(t, "xz", "-t", xzPath)
	if err := WriteSHA256SUMS(dir, o.Out, xzPath); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sha256sum", "--strict", "-c", "SHA256SUMS")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "gate-1.img.xz: OK") {
		t.Errorf("sha256sum -c: %v\n%s", err, out)
	}
	checkImagerList(t, dir, o.Out, xzPath)
}

// checkImagerList writes Raspberry Pi Imager's repository file for the
// image and checks every size and hash in it with other tools: xz -dc
// piped to sha256sum and wc -c for the image Imager writes, sha256sum and
// stat for the file it downloads.
func checkImagerList(t *testing.T, dir, img, xzPath string) {
	release := time.Unix(testEpoch, 0)
	for _, base := range []string{"", "https://example.net/lab/"} {
		err := WriteImagerList(dir, ImagerOptions{Lab: "homelab", Gate: "gate-1", Img: img, XZ: xzPath, BaseURL: base, Release: release})
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, ImagerListFile))
		if err != nil {
			t.Fatal(err)
		}
		var l ImagerList
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil || len(l.OSList) != 1 {
			t.Fatalf("%s: %v, %d entries", ImagerListFile, err, len(l.OSList))
		}
		got := l.OSList[0]
		xzInfo, err := os.Stat(xzPath)
		if err != nil {
			t.Fatal(err)
		}
		field := func(s string) string { return strings.Fields(s)[0] }
		wantURL := "file://" + xzPath
		if base != "" {
			wantURL = base + "gate-1.img.xz"
		}
		want := ImagerOS{
			Name: "kiln gate gate-1 (lab homelab)", Description: got.Description, URL: wantURL, Website: got.Website,
			ExtractSize:         atoi(t, field(run(t, "sh", "-c", "xz -dc "+xzPath+" | wc -c"))),
			ExtractSHA256:       field(run(t, "sh", "-c", "xz -dc "+xzPath+" | sha256sum")),
			ImageDownloadSize:   xzInfo.Size(),
			ImageDownloadSHA256: field(run(t, "sha256sum", xzPath)),
			ReleaseDate:         release.UTC().Format("2006-01-02"),
			Devices:             []string{"pi4-64bit"},
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s (-want +got):\n%s", ImagerListFile, d)
		}
	}
	if err := WriteImagerList(dir, ImagerOptions{Img: img, XZ: xzPath, BaseURL: "ftp://x/"}); err == nil {
		t.Error("an ftp:// base URL was taken")
	}
}

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// checkTable reads the partition table back with sfdisk.
func checkTable(t *testing.T, img string, sig uint32, l Layout) {
	var got struct {
		PartitionTable struct {
			Label, ID, Unit string
			Partitions      []struct {
				Start, Size int64
				Type        string
			}
		}
	}
	if err := json.Unmarshal([]byte(run(t, "sfdisk", "--json", img)), &got); err != nil {
		t.Fatal(err)
	}
	want := got
	want.PartitionTable.Label, want.PartitionTable.ID, want.PartitionTable.Unit = "dos", fmt.Sprintf("0x%08x", sig), "sectors"
	want.PartitionTable.Partitions = want.PartitionTable.Partitions[:0:0]
	for _, p := range l.Partitions {
		want.PartitionTable.Partitions = append(want.PartitionTable.Partitions, struct {
			Start, Size int64
			Type        string
		}{p.Start / 512, p.Size / 512, fmt.Sprintf("%x", p.Type)})
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sfdisk --json (-want +got):\n%s", diff)
	}
	if fi, err := os.Stat(img); err != nil || fi.Size() != l.Size {
		t.Errorf("image size: %v, want %d", err, l.Size)
	}
	if got, want := mbrBytes(t, img), sfdiskMBR(t, sig, l); !bytes.Equal(got, want) {
		t.Errorf("MBR differs from the one sfdisk writes for the same table:\n%x\n%x", got, want)
	}
}

// sfdiskMBR is the signature and partition table sfdisk writes for l
// (CHS fields included).
func sfdiskMBR(t *testing.T, sig uint32, l Layout) []byte {
	img := filepath.Join(t.TempDir(), "sfdisk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil || os.Truncate(img, l.Size) != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("label: dos\nlabel-id: 0x%08x\nunit: sectors\n", sig)
	for _, p := range l.Partitions {
		script += fmt.Sprintf("start=%d, size=%d, type=%x\n", p.Start/512, p.Size/512, p.Type)
	}
	cmd := exec.Command("sfdisk", "--no-reread", "--no-tell-kernel", img)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	return mbrBytes(t, img)
}

// mbrBytes is the MBR from the disk signature to its end.
func mbrBytes(t *testing.T, img string) []byte {
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 512-440)
	if _, err := f.ReadAt(b, 440); err != nil {
		t.Fatal(err)
	}
	return b
}

// checkBoot checks the FAT with fsck.vfat and every file with mtools,
// reading the partition in place (mtools' @@offset).
func checkBoot(t *testing.T, o Options, l Layout) {
	part := extract(t, o.Out, l.Partitions[0])
	out, err := exec.Command("fsck.vfat", "-n", part).CombinedOutput()
	if err != nil || strings.Contains(string(out), "differences") || strings.Contains(string(out), "Dirty") {
		t.Errorf("fsck.vfat -n: %v\n%s", err, out)
	}
	in := fmt.Sprintf("%s@@%d", o.Out, l.Partitions[0].Start)
	listing := run(t, "mdir", "-i", in, "::/")
	if !strings.Contains(listing, "Volume in drive : is KILN-BOOT") {
		t.Errorf("mdir: no label KILN-BOOT:\n%s", listing)
	}
	want := map[string][]byte{ConfigPath: []byte(ConfigTxt()), CmdlinePath: []byte(Cmdline(o.Signature))}
	for _, f := range o.Boot {
		want[f.Dest], _ = os.ReadFile(f.Src)
	}
	for dest, content := range want {
		got, err := exec.Command("mtype", "-i", in, "::"+dest).Output()
		if err != nil || !bytes.Equal(got, content) {
			t.Errorf("%s on the boot partition: %v, %d bytes, want %d", dest, err, len(got), len(content))
		}
	}
}

func checkPerm(t *testing.T, img string, l Layout) {
	dev := fmt.Sprintf("%s?offset=%d", img, l.Partitions[1].Start)
	run(t, "e2fsck", "-fn", dev)
	hdr := run(t, "dumpe2fs", "-h", dev)
	for _, want := range []string{"Filesystem volume name:   KILN-PERM", "Block count:              65536",
		"Filesystem created:       Thu Jan  1 00:00:00 2026"} {
		if !strings.Contains(hdr, want) {
			t.Errorf("dumpe2fs -h lacks %q", want)
		}
	}
}

func checkPayload(t *testing.T, img string, l Layout) {
	off := fmt.Sprint(l.Partitions[2].Start)
	if s := run(t, "unsquashfs", "-o", off, "-s", img); !strings.Contains(s, "Compression zstd") {
		t.Errorf("unsquashfs -s: not zstd:\n%s", s)
	}
	var ls strings.Builder // one space between columns
	for _, line := range strings.Split(run(t, "unsquashfs", "-o", off, "-lln", img), "\n") {
		ls.WriteString(strings.Join(strings.Fields(line), " ") + "\n")
	}
	for _, want := range []string{
		"drwxr-xr-x 0/0 81 2026-01-01 00:00 squashfs-root\n",
		"drwx------ 0/0 37 2026-01-01 00:00 squashfs-root/secrets\n",
		"-rw------- 0/0 25 2026-01-01 00:00 squashfs-root/secrets/wireguard.json\n",
		"-rw-r--r-- 0/0 37 2026-01-01 00:00 squashfs-root/gate.json\n",
		"squashfs-root/bundle/plan.json\n", "squashfs-root/profile.yaml\n",
	} {
		if !strings.Contains(ls.String(), want) {
			t.Errorf("unsquashfs -lln lacks %q:\n%s", want, ls.String())
		}
	}
}

// extract copies partition p of img into a sparse file of its own.
func extract(t *testing.T, img string, p Partition) string {
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := filepath.Join(t.TempDir(), fmt.Sprintf("p%d", p.Number))
	dst, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if err := dst.Truncate(p.Size); err != nil {
		t.Fatal(err)
	}
	if err := copySparse(dst, 0, io.NewSectionReader(f, p.Start, p.Size)); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCompressAnyThreads: Compress's bytes are those of xz with one worker
// thread and with three, so the machine's core count does not matter.
func TestCompressAnyThreads(t *testing.T) {
	hosttooltest.Need(t, "xz")
	img := filepath.Join(t.TempDir(), "x.img")
	r := rand.New(rand.NewPCG(7, 7))
	b := make([]byte, 18<<20) // two blocks of 16 MiB
	for i := 0; i < len(b); i += 4096 {
		b[i] = byte(r.Uint32())
	}
	if err := os.WriteFile(img, b, 0o644); err != nil {
		t.Fatal(err)
	}
	xzPath, err := Compress(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(xzPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, threads := range []string{"-T+1", "-T3"} {
		args := append(xzArgs(), img)
		args[0] = threads
		want, err := exec.Command("xz", args...).Output()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("xz %s gives other bytes (%v)", threads, err)
		}
	}
}

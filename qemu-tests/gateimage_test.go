package qemutests

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnlab/kiln/image/gateimg"
	"github.com/kilnlab/kiln/image/hosttool/hosttooltest"
)

// TestGateImageReadBack reads the gate image that `kiln build` wrote back
// with independent Debian tools: the MBR (sfdisk), the boot partition
// (fsck.vfat, mdir: every file the Pi firmware looks for at its root), the
// payload (unsquashfs: the bundle, the secrets readable by root alone),
// /perm (e2fsck), the compressed image (xz -t) and SHA256SUMS.
func TestGateImageReadBack(t *testing.T) {
	requireLab(t)
	hosttooltest.Need(t, "sfdisk", "fsck.vfat", "mdir", "unsquashfs", "e2fsck", "xz", "sha256sum")
	kilnAndBundle(t)
	out := kilnBuild.out
	img := filepath.Join(out, "gate-1.img")

	parts := sfdiskParts(t, img)
	want := []string{"c", "83", "83"}
	if len(parts) != 3 {
		t.Fatalf("sfdisk: %d partitions, want 3: %+v", len(parts), parts)
	}
	for i, p := range parts {
		if p.Type != want[i] {
			t.Errorf("partition %d: type %s, want %s", i+1, p.Type, want[i])
		}
	}
	if parts[0].Start*512 != gateimg.BootStart || parts[1].Start*512 != gateimg.PermStart {
		t.Errorf("boot at %d, /perm at %d: want the fixed offsets %d and %d",
			parts[0].Start*512, parts[1].Start*512, gateimg.BootStart, gateimg.PermStart)
	}
	dir := t.TempDir()
	boot, perm, pay := extract(t, img, dir, parts[0], "boot"), extract(t, img, dir, parts[1], "perm"), extract(t, img, dir, parts[2], "payload")

	tool(t, "fsck.vfat", "-n", boot)
	listing := tool(t, "mdir", "-i", boot, "-b", "::/")
	for _, f := range append(gateimg.RequiredBootFiles(), gateimg.ConfigPath, gateimg.CmdlinePath,
		"/bcm2711-rpi-400.dtb", "/bcm2711-rpi-cm4-io.dtb") {
		if !strings.Contains(listing, "::"+f) {
			t.Errorf("boot partition lacks %s; it holds:\n%s", f, listing)
		}
	}
	tool(t, "e2fsck", "-fn", perm)
	files := tool(t, "unsquashfs", "-lln", pay)
	for _, want := range []string{
		"squashfs-root/gate.json", "squashfs-root/profile.yaml", "squashfs-root/bundle/plan.json",
		"squashfs-root/bundle/amd64/initramfs.cpio.gz", "squashfs-root/bundle/roles/compute.squashfs",
	} {
		if !strings.Contains(files, want) {
			t.Errorf("payload lacks %s", want)
		}
	}
	for _, line := range strings.Split(files, "\n") {
		if strings.Contains(line, "squashfs-root/secrets") && !strings.HasPrefix(line, "drwx------ 0/0") &&
			!strings.HasPrefix(line, "-rw------- 0/0") {
			t.Errorf("payload secret open to others: %s", line)
		}
	}
	tool(t, "xz", "-t", img+".xz")
	cmd := exec.Command("sha256sum", "--strict", "-c", "SHA256SUMS")
	cmd.Dir = out
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c: %v\n%s", err, b)
	}
}

type sfdiskPart struct {
	Start, Size int64
	Type        string
}

func sfdiskParts(t *testing.T, img string) []sfdiskPart {
	t.Helper()
	var v struct {
		PartitionTable struct {
			Label      string       `json:"label"`
			Partitions []sfdiskPart `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal([]byte(tool(t, "sfdisk", "--json", img)), &v); err != nil {
		t.Fatal(err)
	}
	if v.PartitionTable.Label != "dos" {
		t.Errorf("label %q, want dos (the Pi firmware reads MBR)", v.PartitionTable.Label)
	}
	return v.PartitionTable.Partitions
}

// extract copies one partition out of img (dd: an independent reader).
func extract(t *testing.T, img, dir string, p sfdiskPart, name string) string {
	t.Helper()
	out := filepath.Join(dir, name)
	tool(t, "dd", "if="+img, "of="+out, "bs=512", fmt.Sprintf("skip=%d", p.Start), fmt.Sprintf("count=%d", p.Size), "status=none")
	return out
}

func tool(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, b)
	}
	return string(b)
}

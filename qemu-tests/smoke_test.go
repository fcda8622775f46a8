package qemutests

import (
	"compress/gzip"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/kilnlab/kiln/qemu-tests/lab"
)

// smokeDeadline bounds one smoke VM's whole life (measured ~25 s BIOS on
// 2 cores under TCG; generous for a loaded CI machine).
const smokeDeadline = 4 * time.Minute

// TestSmokePXE proves the harness alone, without any kiln code: dnsmasq in
// the lab is the reference PXE server (DHCP + TFTP), firmware PXE loads
// iPXE, iPXE's script loads a Debian kernel and a tiny initramfs whose init
// prints a marker and powers off. Once under SeaBIOS, once under OVMF.
func TestSmokePXE(t *testing.T) {
	requireLab(t)
	ctx := testContext(t, 2*smokeDeadline)
	root := outputDir(t)
	tftp := filepath.Join(root, "tftp")
	if err := os.MkdirAll(tftp, 0o755); err != nil {
		t.Fatal(err)
	}
	kernel := debianKernel(t, ctx)
	for dst, src := range map[string]string{
		"vmlinuz":       kernel,
		"undionly.kpxe": ipxeDir + "/undionly.kpxe",
		"ipxe.efi":      ipxeDir + "/ipxe.efi",
	} {
		// Copies, not links: dnsmasq serves world-readable files only.
		if err := copyFile(filepath.Join(tftp, dst), src); err != nil {
			t.Fatal(err)
		}
	}
	initBin := filepath.Join(root, "smokeinit")
	goBuild(t, ctx, "./testdata/smokeinit", initBin)
	if err := writeInitramfs(filepath.Join(tftp, "initrd.cpio.gz"), initBin); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		firmware, mac, uuid string
	}{
		{lab.BIOS, "52:54:00:4b:00:01", "4b494c4e-534d-4f4b-8000-000000000b01"},
		{lab.UEFI, "52:54:00:4b:00:02", "4b494c4e-534d-4f4b-8000-000000000e01"},
	} {
		t.Run(tc.firmware, func(t *testing.T) {
			t.Parallel()
			smokeBoot(t, tftp, tc.firmware, tc.mac, tc.uuid)
		})
	}
}

func smokeBoot(t *testing.T, tftp, firmware, mac, uuid string) {
	ctx := testContext(t, smokeDeadline)
	out := outputDir(t)
	nonce := firmware + "-" + randomHex(4)
	// Each run writes its own script: the nonce on the kernel command line
	// proves the marker comes from this boot. initrd= is needed under UEFI:
	// Debian 12's iPXE (2019) hands the initrd to the kernel's EFI stub only
	// by name on the command line (no LoadFile2 initrd protocol yet).
	script := fmt.Sprintf("boot-%s.ipxe", nonce)
	if err := os.WriteFile(filepath.Join(tftp, script), []byte(
		"#!ipxe\n"+
			"kernel vmlinuz initrd=initrd.cpio.gz console=ttyS0,115200 panic=-1 kiln.smoke="+nonce+"\n"+
			"initrd initrd.cpio.gz\n"+
			"boot\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	n := newNetwork(t, ctx, out)
	if _, err := n.StartISP(ctx, lab.ISPConfig{TFTPRoot: tftp, Extra: pxeChain(script)}); err != nil {
		t.Fatal(err)
	}
	vm, err := n.NewVM(ctx, lab.VMConfig{
		Name:     "smoke",
		Firmware: firmware,
		MAC:      mac,
		UUID:     uuid,
		// A profile-sized blank disk, to prove sparse files and the boot
		// order (net first) with a disk attached.
		Disks:    []lab.Disk{{Name: "sys", Size: 1_000_000_000_000, Serial: "KILNSMOKE0001"}},
		MaxBoots: 1, // any reboot is a failure here
		FailOn:   lab.DeadEnds(),
	})
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	if err := vm.Start(ctx); err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`KILN-SMOKE-OK nonce=` + regexp.QuoteMeta(nonce) + ` uuid=(\S+)`)
	line, err := vm.WaitFor(ctx, re)
	if err != nil {
		t.Fatal(err)
	}
	toMarker := time.Since(start)
	if got := re.FindStringSubmatch(line)[1]; got != uuid {
		t.Errorf("SMBIOS uuid seen by the guest = %s, want %s", got, uuid)
	}
	if err := vm.Wait(ctx); err != nil {
		t.Fatalf("after the marker: %v", err)
	}
	// A measurement for the report, not an assertion.
	t.Logf("%s: QEMU start -> marker %.1fs, -> power-off %.1fs (%d boot, exits %v; log %s)",
		firmware, toMarker.Seconds(), time.Since(start).Seconds(), vm.Boots(), vm.Exits(), vm.SerialLog())
	if ex := vm.Exits(); len(ex) != 1 || ex[0].Reason != lab.ReasonGuestShutdown {
		t.Errorf("exits = %v, want one %s", ex, lab.ReasonGuestShutdown)
	}
}

// pxeChain are the dnsmasq options of a classic chainload: BIOS PXE gets
// undionly.kpxe, UEFI x64 PXE gets ipxe.efi, and iPXE itself (user class
// "iPXE") gets the script, so it does not load itself again.
func pxeChain(script string) []string {
	return []string{
		"--dhcp-userclass=set:ipxe,iPXE",
		"--dhcp-match=set:efi64,option:client-arch,7",
		"--dhcp-match=set:efi64,option:client-arch,9",
		"--dhcp-boot=tag:ipxe," + script,
		"--dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi",
		"--dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe",
	}
}

// writeInitramfs writes a gzipped newc cpio holding init as /init, plus the
// folders it mounts on and /dev/console.
func writeInitramfs(path, init string) error {
	bin, err := os.ReadFile(init)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	w := cpio.Newc.Writer(zw)
	err = cpio.WriteRecords(w, []cpio.Record{
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.Directory("proc", 0o755),
		cpio.Directory("sys", 0o755),
		cpio.StaticFile("init", string(bin), 0o755),
	})
	if err == nil {
		err = cpio.WriteTrailer(w)
	}
	return errors.Join(err, zw.Close(), f.Close())
}

func copyFile(dst, src string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

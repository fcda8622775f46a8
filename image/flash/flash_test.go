package flash

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/image/hosttool/hosttooltest"

	"github.com/kilnlab/kiln/image/gateimg"
)

// Test card layout, in MiB: p1 at 1 (2 MiB), p2 "/perm" at 3 (2 MiB),
// p3 at 5 (3 MiB and a bit), like the gate's at a smaller scale.
var permRange = Range{3 * mib, 2 * mib}

// testImage is an image with a DOS table of disk signature sig, an ext4
// magic in p2 and seed-dependent bytes everywhere else; its length is
// deliberately not a multiple of a block or a MiB.
func testImage(sig uint32, seed uint64) []byte {
	img := make([]byte, 8*mib+12345)
	for i := range img { // cheap to xz, different for each seed, never all zero
		img[i] = byte(uint64(i)*7 + uint64(i>>12)*13 + seed)
	}
	mbrBytes := img[:sectorSize]
	clear(mbrBytes[440:])
	binary.LittleEndian.PutUint32(mbrBytes[440:], sig)
	for i, p := range []gateimg.MBREntry{{Type: 0x0c, Start: 2048, Sectors: 4096}, {Type: 0x83, Start: 6144, Sectors: 4096}, {Type: 0x83, Start: 10240, Sectors: 6144}} {
		e := mbrBytes[446+16*i:]
		e[4] = p.Type
		binary.LittleEndian.PutUint32(e[8:], p.Start)
		binary.LittleEndian.PutUint32(e[12:], p.Sectors)
	}
	mbrBytes[510], mbrBytes[511] = 0x55, 0xaa
	binary.LittleEndian.PutUint16(img[permRange.Off+ext4Magic:], 0xef53)
	return img
}

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// card is a regular file standing in for an SD card with old data on it.
func card(t *testing.T, size int) string {
	old := make([]byte, size)
	for i := range old {
		old[i] = 0xa5
	}
	return writeFile(t, "card", old)
}

func flashFile(t *testing.T, img, dev string, mod func(*Options)) (*Result, string, error) {
	t.Helper()
	var out bytes.Buffer
	o := Options{Image: img, Device: dev, Force: true, Host: noHost(t), Out: &out}
	if mod != nil {
		mod(&o)
	}
	res, err := Flash(context.Background(), o)
	return res, out.String(), err
}

// noHost is a host with no loop devices, so real ones never matter.
func noHost(t *testing.T) Host {
	return Host{Proc: t.TempDir(), Sys: t.TempDir(), Dev: t.TempDir()}
}

func TestFlashFile(t *testing.T) {
	img := testImage(0x1a2b3c4d, 1)
	for _, tc := range []struct {
		name     string
		cardSize int
	}{
		{"card larger than the image", 12 * mib},
		{"empty file grows", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := card(t, tc.cardSize)
			res, out, err := flashFile(t, writeFile(t, "gate-1.img", img), dev, nil)
			if err != nil {
				t.Fatal(err)
			}
			got := readFile(t, dev)
			if !bytes.Equal(got[:len(img)], img) {
				t.Fatal("the file does not hold the image")
			}
			if tc.cardSize > len(img) && !bytes.Equal(got[len(img):], bytes.Repeat([]byte{0xa5}, tc.cardSize-len(img))) {
				t.Error("bytes beyond the image changed")
			}
			want := &Result{Size: int64(len(img)), Written: int64(len(img)), SHA256: sha(img), Verified: sha(img)}
			if diff := cmp.Diff(want, res); diff != "" {
				t.Error(diff)
			}
			for _, s := range []string{"/perm: writing it fresh", "write ", "verify ", "100%"} {
				if !strings.Contains(out, s) {
					t.Errorf("output does not say %q:\n%s", s, out)
				}
			}
		})
	}
}

func sha(b []byte) string {
	d := newDigest(Range{})
	d.add(0, b)
	return d.sum()
}

func TestFlashFileRefusedWithoutForce(t *testing.T) {
	dev := card(t, 12*mib)
	_, _, err := flashFile(t, writeFile(t, "gate-1.img", testImage(1, 1)), dev, func(o *Options) { o.Force = false })
	if !errors.Is(err, ErrNotBlockDevice) {
		t.Fatalf("err = %v, want ErrNotBlockDevice", err)
	}
	if !bytes.Equal(readFile(t, dev), bytes.Repeat([]byte{0xa5}, 12*mib)) {
		t.Fatal("a refused flash wrote")
	}
	img := writeFile(t, "gate-1.img", testImage(1, 1))
	if _, _, err := flashFile(t, img, img, nil); !errors.Is(err, ErrInUse) {
		t.Fatalf("image onto itself: err = %v, want ErrInUse", err)
	}
}

func TestFlashXZ(t *testing.T) {
	hosttooltest.Need(t, "xz")
	img := testImage(7, 2)
	plain := writeFile(t, "gate-1.img", img)
	if err := exec.Command("xz", "-k", "-0", "-T1", plain).Run(); err != nil {
		t.Fatal(err)
	}
	xzPath := plain + ".xz"
	if n, err := ImageSize(context.Background(), xzPath); err != nil || n != int64(len(img)) {
		t.Fatalf("ImageSize = %d, %v; want %d", n, err, len(img))
	}
	dev := card(t, 10*mib)
	res, _, err := flashFile(t, xzPath, dev, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, dev); !bytes.Equal(got[:len(img)], img) || res.SHA256 != sha(img) {
		t.Fatal("the file does not hold the decompressed image")
	}

	// A corrupt block: the index (and so the size) is intact, the
	// decompression fails, and Flash says so rather than verifying.
	x := readFile(t, xzPath)
	x[len(x)/2] ^= 0xff
	_, _, err = flashFile(t, writeFile(t, "bad.img.xz", x), card(t, 10*mib), nil)
	if err == nil || !strings.Contains(err.Error(), "xz -dc") {
		t.Fatalf("corrupt .xz: err = %v", err)
	}
}

func TestFlashKeepsPerm(t *testing.T) {
	const sig = 0xc0ffee01
	old, next := testImage(sig, 3), testImage(sig, 4)
	state := bytes.Repeat([]byte("machine states and leases "), 1000)
	part := func(b []byte) []byte { return b[permRange.Off:permRange.end()] }
	for _, tc := range []struct {
		name     string
		image    []byte
		wipe     bool
		breakExt bool
		keep     bool
		say      string
	}{
		{name: "same lab", image: next, keep: true, say: "/perm: keeping the card's partition 2 (2.0 MiB at 3.0 MiB)"},
		{name: "--wipe-perm", image: next, wipe: true, say: "--wipe-perm"},
		{name: "another lab", image: testImage(sig+1, 4), say: "disk signature c0ffee01 is not the image's c0ffee02"},
		{name: "perm is no ext4", image: next, breakExt: true, say: "holds no ext4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := card(t, 12*mib)
			if _, _, err := flashFile(t, writeFile(t, "old.img", old), dev, func(o *Options) { o.WipePerm = true }); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(dev, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteAt(state, permRange.Off+2048) // the gate wrote to /perm
			if tc.breakExt {
				f.WriteAt([]byte{0, 0}, permRange.Off+ext4Magic)
			}
			f.Close()
			before := bytes.Clone(part(readFile(t, dev)))

			res, out, err := flashFile(t, writeFile(t, "new.img", tc.image), dev, func(o *Options) { o.WipePerm = tc.wipe })
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, tc.say) {
				t.Errorf("output does not say %q:\n%s", tc.say, out)
			}
			got := readFile(t, dev)
			wantPerm, wantKept := part(tc.image), Range{}
			if tc.keep {
				wantPerm, wantKept = before, permRange
			}
			if !bytes.Equal(part(got), wantPerm) {
				t.Error("partition 2 holds the wrong bytes")
			}
			if !bytes.Equal(got[:permRange.Off], tc.image[:permRange.Off]) || !bytes.Equal(got[permRange.end():len(tc.image)], tc.image[permRange.end():]) {
				t.Error("outside partition 2 the card does not hold the image")
			}
			if res.Kept != wantKept || res.Written != int64(len(tc.image))-wantKept.Len || res.SHA256 != sha(tc.image) {
				t.Errorf("result %+v, want kept %v", res, wantKept)
			}
		})
	}
}

// corrupter flips one byte at off as it passes through WriteAt.
type corrupter struct {
	w   io.WriterAt
	off int64
}

func (c corrupter) WriteAt(b []byte, off int64) (int, error) {
	if c.off >= off && c.off < off+int64(len(b)) {
		b = bytes.Clone(b)
		b[c.off-off] ^= 1
	}
	return c.w.WriteAt(b, off)
}

func TestFlashReadBackMismatch(t *testing.T) {
	img := testImage(9, 5)
	for _, tc := range []struct {
		off  int64
		want string
	}{
		{0, "first difference in MiB 0 (bytes 0..1048575)"},
		{6*mib + 5, "first difference in MiB 6 ("},
		{int64(len(img)) - 1, "first difference in MiB 8 ("},
	} {
		t.Run(fmt.Sprint(tc.off), func(t *testing.T) {
			_, _, err := flashFile(t, writeFile(t, "gate-1.img", img), card(t, 9*mib), func(o *Options) {
				o.wrap = func(w io.WriterAt) io.WriterAt { return corrupter{w, tc.off} }
			})
			if !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrVerify saying %q", err, tc.want)
			}
		})
	}
}

// TestParseMBRAgainstSfdisk reads a table that Debian's sfdisk wrote.
func TestParseMBRAgainstSfdisk(t *testing.T) {
	hosttooltest.Need(t, "sfdisk")
	p := writeFile(t, "disk", make([]byte, 20*mib))
	cmd := exec.Command("sfdisk", "--no-reread", "--no-tell-kernel", p)
	cmd.Stdin = strings.NewReader("label: dos\nlabel-id: 0x1a2b3c4d\nstart=2048, size=8192, type=c\nstart=10240, size=8192, type=83\nstart=18432, size=2048, type=83\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	m, ok := gateimg.ParseMBR(readFile(t, p))
	if !ok {
		t.Fatal("no MBR")
	}
	want := gateimg.MBR{Signature: 0x1a2b3c4d, Entries: [4]gateimg.MBREntry{{Type: 0x0c, Start: 2048, Sectors: 8192}, {Type: 0x83, Start: 10240, Sectors: 8192}, {Type: 0x83, Start: 18432, Sectors: 2048}}}
	if diff := cmp.Diff(want, m); diff != "" {
		t.Error(diff)
	}
	out, err := exec.Command("sfdisk", "--json", p).Output()
	if err != nil {
		t.Fatal(err)
	}
	var js struct {
		PartitionTable struct{ ID string } `json:"partitiontable"`
	}
	if err := json.Unmarshal(out, &js); err != nil || js.PartitionTable.ID != fmt.Sprintf("0x%08x", m.Signature) {
		t.Errorf("sfdisk says label-id %q, parseMBR %08x (%v)", js.PartitionTable.ID, m.Signature, err)
	}
}

func TestParseXZList(t *testing.T) {
	n, err := parseXZList("name\tx.xz\nfile\t1\t1\t3000212\t3000000\t1.000\tCRC64\t0\ntotals\t1\t1\t3000212\t3000000\t1.000\tCRC64\t0\t1\n")
	if err != nil || n != 3000000 {
		t.Fatalf("= %d, %v", n, err)
	}
	if _, err := parseXZList("name\tx\n"); err == nil {
		t.Fatal("no totals: no error")
	}
}

func TestOutside(t *testing.T) {
	skip := Range{10, 5}
	for _, tc := range []struct {
		off, n int64
		want   []Range
	}{
		{0, 10, []Range{{0, 10}}},
		{0, 12, []Range{{0, 10}}},
		{0, 20, []Range{{0, 10}, {15, 5}}},
		{11, 2, nil},
		{12, 8, []Range{{15, 5}}},
		{15, 5, []Range{{15, 5}}},
	} {
		if diff := cmp.Diff(tc.want, outside(tc.off, tc.n, skip)); diff != "" {
			t.Errorf("outside(%d, %d): %s", tc.off, tc.n, diff)
		}
	}
}

func TestProgress(t *testing.T) {
	now := time.Unix(0, 0)
	clock := func() time.Time { return now }
	var log bytes.Buffer
	p := newProgress(&log, false, "write", 100*mib, clock)
	for done := int64(0); done <= 100*mib; done += 4 * mib {
		now = now.Add(time.Second)
		p.update(done)
	}
	p.finish(100 * mib)
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 10 {
		t.Errorf("%d lines, want one per tenth:\n%s", len(lines), log.String())
	}
	if want := "write  12.0 MiB / 100.0 MiB  12%  3.0 MiB/s  ETA 0:29"; lines[0] != want {
		t.Errorf("first line %q, want %q", lines[0], want)
	}
	if want := "write  100.0 MiB / 100.0 MiB 100%  3.8 MiB/s  0:26"; lines[9] != want {
		t.Errorf("last line %q, want %q", lines[9], want)
	}

	var term bytes.Buffer
	p = newProgress(&term, true, "verify", 10*mib, clock)
	now = now.Add(time.Second)
	p.update(5 * mib)
	p.finish(10 * mib)
	if s := term.String(); strings.Count(s, "\r") != 2 || strings.Count(s, "\n") != 1 || !strings.HasSuffix(s, "\n") {
		t.Errorf("terminal output %q: want two \\r redraws and one final newline", s)
	}
}

func FuzzParseMBR(f *testing.F) {
	f.Add(testImage(1, 1)[:sectorSize])
	f.Fuzz(func(t *testing.T, b []byte) {
		m, ok := gateimg.ParseMBR(b)
		if ok && len(b) < sectorSize {
			t.Fatal("accepted a short sector")
		}
		_ = m
		permToKeep(b, b, 1<<30, 1<<30, bytes.NewReader(b))
	})
}

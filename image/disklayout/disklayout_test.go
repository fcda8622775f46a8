package disklayout

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/kilnlab/kiln/plan"
)

const (
	mib         = 1 << 20
	gib         = 1 << 30
	espType     = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	linuxFSType = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
	gptmbrPath  = "/usr/lib/syslinux/mbr/gptmbr.bin"
)

// needTool skips when a checking tool is missing, except under CI.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed (required under CI=true)", name)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

func guid(parts ...string) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("kiln:"+strings.Join(parts, ":"))).String()
}

// storageLayout is the contract's system disk: ESP, root, state up to
// systemSize, a data partition for the rest.
func storageLayout(size, systemSize uint64) *plan.Layout {
	const ss = 512
	end := (size - 34*ss) / mib * mib // last usable byte, aligned down
	return &plan.Layout{
		DiskGUID:   guid("lab", "ceph-1", "disk1"),
		SectorSize: ss,
		Partitions: []plan.Partition{
			{Number: 1, Name: "kiln-esp", Type: espType, GUID: guid("lab", "ceph-1", "disk1", "esp"),
				Start: 1 * mib, Size: 128 * mib, Content: plan.ContentESP, LegacyBIOSBootable: true},
			{Number: 2, Name: "kiln-root", Type: linuxFSType, GUID: guid("lab", "ceph-1", "disk1", "root"),
				Start: 129 * mib, Size: 2 * gib, Content: plan.ContentRoot},
			{Number: 3, Name: "kiln-state", Type: linuxFSType, GUID: guid("lab", "ceph-1", "disk1", "state"),
				Start: 129*mib + 2*gib, Size: systemSize - 129*mib - 2*gib, Content: plan.ContentState},
			{Number: 4, Name: "kiln-osd", Type: linuxFSType, GUID: guid("lab", "ceph-1", "disk1", "osd"),
				Start: systemSize, Size: end - systemSize, Content: plan.ContentEmpty},
		},
	}
}

func bootCode(t *testing.T) []byte {
	b, err := os.ReadFile(gptmbrPath)
	if err != nil {
		b = bytes.Repeat([]byte{0xb8}, BootCodeSize) // stand-in when syslinux-common is absent
	}
	return b
}

func writeDisk(t *testing.T, size int64, l *plan.Layout) (string, *os.File) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	f, err := CreateSparse(path, size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := Write(context.Background(), f, size, l, bootCode(t)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return path, f
}

type sfdiskDump struct {
	PartitionTable struct {
		Label      string `json:"label"`
		ID         string `json:"id"`
		Unit       string `json:"unit"`
		FirstLBA   uint64 `json:"firstlba"`
		LastLBA    uint64 `json:"lastlba"`
		SectorSize uint64 `json:"sectorsize"`
		Partitions []struct {
			Start uint64 `json:"start"`
			Size  uint64 `json:"size"`
			Type  string `json:"type"`
			UUID  string `json:"uuid"`
			Name  string `json:"name"`
			Attrs string `json:"attrs"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

// TestWriteCheckedBySfdisk writes the contract's system disk layout onto
// sparse files (1 TB like the reference lab, and 3 TiB to cross the 2 TiB
// limit of the MBR's size field) and checks it with sfdisk and sgdisk.
func TestWriteCheckedBySfdisk(t *testing.T) {
	sfdisk := needTool(t, "sfdisk")
	sgdisk := needTool(t, "sgdisk")
	for _, tc := range []struct {
		name       string
		size       int64
		systemSize uint64
	}{
		{"1TB", 1_000_204_886_016, 50 * gib},
		{"3TiB", 3 << 40, 50 * gib},
		{"small", 4 * gib, 3 * gib},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := storageLayout(uint64(tc.size), tc.systemSize)
			path, f := writeDisk(t, tc.size, l)

			out, err := exec.Command(sfdisk, "--json", path).Output()
			if err != nil {
				t.Fatalf("sfdisk --json: %v", err)
			}
			var d sfdiskDump
			if err := json.Unmarshal(out, &d); err != nil {
				t.Fatalf("sfdisk output: %v\n%s", err, out)
			}
			pt := d.PartitionTable
			if pt.Label != "gpt" || !strings.EqualFold(pt.ID, l.DiskGUID) || pt.SectorSize != 512 || pt.Unit != "sectors" {
				t.Errorf("table: label %q id %q sectorsize %d unit %q", pt.Label, pt.ID, pt.SectorSize, pt.Unit)
			}
			if pt.FirstLBA != 34 || pt.LastLBA != uint64(tc.size)/512-34 {
				t.Errorf("usable LBAs %d..%d", pt.FirstLBA, pt.LastLBA)
			}
			if len(pt.Partitions) != len(l.Partitions) {
				t.Fatalf("sfdisk sees %d partitions, want %d:\n%s", len(pt.Partitions), len(l.Partitions), out)
			}
			for i, p := range l.Partitions {
				got := pt.Partitions[i]
				attrs := ""
				if p.LegacyBIOSBootable {
					attrs = "LegacyBIOSBootable"
				}
				want := []string{p.Name, strings.ToUpper(p.Type), strings.ToUpper(p.GUID), attrs}
				have := []string{got.Name, strings.ToUpper(got.Type), strings.ToUpper(got.UUID), got.Attrs}
				if diff := cmp.Diff(want, have); diff != "" {
					t.Errorf("partition %d (-want +sfdisk):\n%s", p.Number, diff)
				}
				if got.Start*512 != p.Start || got.Size*512 != p.Size {
					t.Errorf("partition %d: sfdisk start %d size %d sectors, want %d %d", p.Number, got.Start, got.Size, p.Start/512, p.Size/512)
				}
			}

			out, err = exec.Command(sgdisk, "-v", path).CombinedOutput()
			if err != nil || !bytes.Contains(out, []byte("No problems found")) {
				t.Errorf("sgdisk -v: %v\n%s", err, out)
			}

			mbr := make([]byte, 512)
			if _, err := f.ReadAt(mbr, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(mbr[:BootCodeSize], bootCode(t)) {
				t.Error("first 440 bytes are not the boot code")
			}

			back, err := ReadLayout(f, tc.size, 512)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(normalized(l), back); diff != "" {
				t.Errorf("ReadLayout (-written +read):\n%s", diff)
			}
		})
	}
}

// normalized is l as ReadLayout returns it: lower-case GUIDs, no Content.
func normalized(l *plan.Layout) *plan.Layout {
	n := *l
	n.DiskGUID = strings.ToLower(n.DiskGUID)
	n.Partitions = nil
	for _, p := range l.Partitions {
		p.Type, p.GUID, p.Content = strings.ToLower(p.Type), strings.ToLower(p.GUID), ""
		n.Partitions = append(n.Partitions, p)
	}
	return &n
}

// TestWriteErasesStaleLabel checks that old bytes outside the partitions
// in the first and last MiB are gone and the partitions are untouched.
func TestWriteErasesStaleLabel(t *testing.T) {
	const size = 4 * gib
	l := storageLayout(size, 3*gib)
	path := filepath.Join(t.TempDir(), "disk.img")
	f, err := CreateSparse(path, size)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	junk := bytes.Repeat([]byte{0xaa}, 2*mib)
	for _, off := range []int64{0, size - 2*mib} {
		if _, err := f.WriteAt(junk, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := Write(context.Background(), f, size, l, nil); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 2*mib)
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[34*512:mib], make([]byte, mib-34*512)) || bytes.Count(got[mib:], []byte{0xaa}) != mib {
		t.Error("first MiB not clean or ESP start touched")
	}
	if _, err := f.ReadAt(got, size-2*mib); err != nil {
		t.Fatal(err)
	}
	if bytes.Count(got, []byte{0xaa}) == 0 {
		t.Error("the data partition's tail was zeroed")
	}
	if bytes.Count(got[2*mib-34*512:], []byte{0xaa}) > 2 {
		t.Error("backup GPT area still holds old bytes")
	}
}

func TestWriteImageAndVerify(t *testing.T) {
	ctx := context.Background()
	const size = 512 * mib
	l := &plan.Layout{DiskGUID: guid("d"), SectorSize: 512, Partitions: []plan.Partition{
		{Number: 1, Name: "p", Type: linuxFSType, GUID: guid("d", "p"), Start: mib, Size: 16 * mib},
	}}
	_, f := writeDisk(t, size, l)
	p := l.Partitions[0]
	img := make([]byte, 9*mib+123) // more than two chunks, not sector-aligned
	rand.Read(img)

	if err := WriteImage(ctx, f, p, bytes.NewReader(img), int64(len(img))); err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(img)
	sum := hex.EncodeToString(h[:])
	if err := VerifyPartition(ctx, f, p, int64(len(img)), sum); err != nil {
		t.Fatalf("VerifyPartition after write: %v", err)
	}
	if _, err := f.WriteAt([]byte{img[5*mib] ^ 1}, int64(p.Start)+5*mib); err != nil {
		t.Fatal(err)
	}
	if err := VerifyPartition(ctx, f, p, int64(len(img)), sum); !errors.Is(err, ErrChecksum) {
		t.Errorf("VerifyPartition after corruption = %v, want ErrChecksum", err)
	}

	for _, tc := range []struct {
		name string
		r    io.Reader
		size int64
		want error
	}{
		{"short reader", bytes.NewReader(img[:mib]), 2 * mib, io.ErrUnexpectedEOF},
		{"too big", bytes.NewReader(img), 17 * mib, ErrInvalidLayout},
		{"negative", bytes.NewReader(img), -1, ErrInvalidLayout},
	} {
		if err := WriteImage(ctx, f, p, tc.r, tc.size); !errors.Is(err, tc.want) {
			t.Errorf("%s: WriteImage = %v, want %v", tc.name, err, tc.want)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := WriteImage(cancelled, f, p, bytes.NewReader(img), int64(len(img))); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled WriteImage = %v", err)
	}
}

func TestClear(t *testing.T) {
	for _, size := range []int64{64 * mib, 3 * mib / 2, 512} {
		dev := &memDisk{b: bytes.Repeat([]byte{0x55}, int(size))}
		if err := Clear(context.Background(), dev, size); err != nil {
			t.Fatal(err)
		}
		for off, c := range dev.b {
			cleared := int64(off) < ClearSize || int64(off) >= size-ClearSize
			if (c == 0) != cleared {
				t.Fatalf("size %d: byte %d is %#x", size, off, c)
			}
		}
	}
}

func TestClearPartition(t *testing.T) {
	const size = 16 * mib
	for _, p := range []plan.Partition{
		{Number: 4, Start: 2 * mib, Size: 8 * mib},
		{Number: 4, Start: 2 * mib, Size: 3 * mib / 2}, // smaller than 2 MiB: all of it
	} {
		dev := &memDisk{b: bytes.Repeat([]byte{0x55}, size)}
		if err := ClearPartition(context.Background(), dev, p); err != nil {
			t.Fatal(err)
		}
		start, end := int64(p.Start), int64(p.Start+p.Size)
		for off, c := range dev.b {
			o := int64(off)
			cleared := o >= start && o < end && (o < start+ClearSize || o >= end-ClearSize)
			if (c == 0) != cleared {
				t.Fatalf("partition %+v: byte %d is %#x", p, off, c)
			}
		}
	}
}

func TestValidate(t *testing.T) {
	const size = 4 * gib
	for _, tc := range []struct {
		name string
		mod  func(l *plan.Layout)
	}{
		{"sector size", func(l *plan.Layout) { l.SectorSize = 1024 }},
		{"disk guid", func(l *plan.Layout) { l.DiskGUID = "nope" }},
		{"number 0", func(l *plan.Layout) { l.Partitions[0].Number = 0 }},
		{"number 129", func(l *plan.Layout) { l.Partitions[0].Number = 129 }},
		{"duplicate number", func(l *plan.Layout) { l.Partitions[1].Number = 1 }},
		{"duplicate guid", func(l *plan.Layout) { l.Partitions[1].GUID = l.Partitions[0].GUID }},
		{"zero type", func(l *plan.Layout) { l.Partitions[0].Type = uuid.Nil.String() }},
		{"long name", func(l *plan.Layout) { l.Partitions[0].Name = strings.Repeat("é", 37) }},
		{"bad utf-8", func(l *plan.Layout) { l.Partitions[0].Name = "\xdb" }},
		{"nul in name", func(l *plan.Layout) { l.Partitions[0].Name = "a\x00b" }},
		{"unaligned", func(l *plan.Layout) { l.Partitions[0].Start += 100 }},
		{"empty", func(l *plan.Layout) { l.Partitions[0].Size = 0 }},
		{"over MBR", func(l *plan.Layout) { l.Partitions[0].Start = 512 }},
		{"overlap", func(l *plan.Layout) { l.Partitions[1].Start -= 512 }},
		{"past end", func(l *plan.Layout) { l.Partitions[3].Size += mib }},
		{"huge", func(l *plan.Layout) { l.Partitions[3].Size = ^uint64(0) - 511 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := storageLayout(size, 3*gib)
			tc.mod(l)
			if err := Validate(l, size); !errors.Is(err, ErrInvalidLayout) {
				t.Errorf("Validate = %v, want ErrInvalidLayout", err)
			}
		})
	}
	if err := Validate(storageLayout(size, 3*gib), size); err != nil {
		t.Errorf("contract layout: %v", err)
	}
}

// FuzzValidate: whatever Validate accepts, Write must write and ReadLayout
// must read back unchanged; whatever it rejects, Write must not touch.
func FuzzValidate(f *testing.F) {
	f.Add(false, uint8(8), uint8(1), uint32(2048), uint32(2048), uint8(2), uint32(4096), uint32(100), "kiln-esp", "a")
	f.Add(true, uint8(8), uint8(128), uint32(6), uint32(1), uint8(3), uint32(7), uint32(1), "", "b")
	f.Add(false, uint8(1), uint8(1), uint32(34), uint32(1), uint8(1), uint32(35), uint32(1), "x", "x")
	f.Fuzz(func(t *testing.T, big bool, diskMiB uint8, n1 uint8, s1, l1 uint32, n2 uint8, s2, l2 uint32, name, seed string) {
		ss := uint64(512)
		if big {
			ss = 4096
		}
		size := int64(diskMiB%4+1) * mib
		l := &plan.Layout{DiskGUID: guid(seed), SectorSize: ss, Partitions: []plan.Partition{
			{Number: int(n1), Name: name, Type: linuxFSType, GUID: guid(seed, "1"), Start: uint64(s1) * ss, Size: uint64(l1) * ss},
			{Number: int(n2), Name: "kiln-" + name, Type: espType, GUID: guid(seed, "2"), Start: uint64(s2) * ss, Size: uint64(l2) * ss, LegacyBIOSBootable: true},
		}}
		dev := &memDisk{b: make([]byte, size)}
		err := Write(context.Background(), dev, size, l, []byte("boot"))
		if Validate(l, size) != nil {
			if !errors.Is(err, ErrInvalidLayout) {
				t.Fatalf("invalid layout, Write = %v", err)
			}
			if dev.writes > 0 {
				t.Fatal("Write touched the disk for an invalid layout")
			}
			return
		}
		if err != nil {
			t.Fatalf("valid layout, Write = %v", err)
		}
		back, err := ReadLayout(dev, size, int(ss))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(normalized(l), back, cmp.Comparer(func(a, b []plan.Partition) bool {
			return cmp.Equal(byNumber(a), byNumber(b))
		})); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s", diff)
		}
	})
}

func byNumber(ps []plan.Partition) map[int]plan.Partition {
	m := map[int]plan.Partition{}
	for _, p := range ps {
		m[p.Number] = p
	}
	return m
}

// memDisk is a Device in memory that counts writes.
type memDisk struct {
	b      []byte
	writes int
}

func (m *memDisk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memDisk) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, errors.New("write past end of disk")
	}
	m.writes++
	return copy(m.b[off:], p), nil
}

// cutDisk is a memDisk whose power is cut after its first n writes: later
// writes fail and change nothing.
type cutDisk struct {
	memDisk
	n int
}

func (c *cutDisk) WriteAt(p []byte, off int64) (int, error) {
	if c.writes >= c.n {
		return 0, errors.New("power cut")
	}
	return c.memDisk.WriteAt(p, off)
}

// TestWriteBootImageCut cuts the power after every possible number of
// writes of WriteBootImage over an earlier, different image: at every cut
// the partition holds the old image untouched (cut before the first
// write), or a zeroed head (no file system a firmware would boot), never
// a head, old or new, on a partly written body.
func TestWriteBootImageCut(t *testing.T) {
	ctx := context.Background()
	p := plan.Partition{Number: 1, Name: "esp", Start: mib, Size: 16 * mib}
	img := make([]byte, 9*mib+123) // head, then more than two chunks
	rand.Read(img)
	sum := fmt.Sprintf("%x", sha256.Sum256(img))
	old := bytes.Repeat([]byte("old boot loader "), 16*mib/16)

	full := &memDisk{b: make([]byte, 32*mib)}
	copy(full.b[p.Start:], old)
	if err := WriteBootImage(ctx, full, p, bytes.NewReader(img), int64(len(img)), sum); err != nil {
		t.Fatal(err)
	}
	if err := VerifyPartition(ctx, full, p, int64(len(img)), sum); err != nil {
		t.Fatal(err)
	}
	zeroHead := make([]byte, HeadSize)
	for n := 0; n < full.writes; n++ {
		d := &cutDisk{memDisk: memDisk{b: make([]byte, 32*mib)}, n: n}
		copy(d.b[p.Start:], old)
		err := WriteBootImage(ctx, d, p, bytes.NewReader(img), int64(len(img)), sum)
		if err == nil {
			t.Fatalf("cut after %d of %d writes: no error", n, full.writes)
		}
		if n == 0 {
			if !bytes.Equal(d.b[p.Start:p.Start+p.Size], old) {
				t.Errorf("cut before the first write: the old image changed")
			}
			continue
		}
		if head := d.b[p.Start : p.Start+HeadSize]; !bytes.Equal(head, zeroHead) {
			t.Errorf("cut after %d of %d writes: the head is not zero (%q...)", n, full.writes, head[:16])
		}
	}
	t.Logf("%d cut points: the old image untouched before the first write, a zero head after each later one", full.writes)

	corrupt := bytes.Clone(img)
	corrupt[5*mib] ^= 1
	d := &memDisk{b: make([]byte, 32*mib)}
	copy(d.b[p.Start:], old)
	if err := WriteBootImage(ctx, d, p, bytes.NewReader(corrupt), int64(len(img)), sum); !errors.Is(err, ErrChecksum) {
		t.Errorf("a corrupt stream: %v, want ErrChecksum", err)
	}
	if !bytes.Equal(d.b[p.Start:p.Start+HeadSize], zeroHead) {
		t.Error("a corrupt stream left a head on the disk")
	}
	small := []byte("tiny")
	if err := WriteBootImage(ctx, d, p, bytes.NewReader(small), 4, fmt.Sprintf("%x", sha256.Sum256(small))); err != nil {
		t.Errorf("an image smaller than the head: %v", err)
	}
}

// failAt is a device whose writes at or past a byte offset fail.
type failAt struct {
	Device
	at int64
}

func (d failAt) WriteAt(b []byte, off int64) (int, error) {
	if off >= d.at {
		return 0, errors.New("disk gone")
	}
	return d.Device.WriteAt(b, off)
}

// watchedReader fails the test if read once its owner has returned.
type watchedReader struct {
	r        io.Reader
	returned atomic.Bool
	t        *testing.T
}

func (w *watchedReader) Read(b []byte) (int, error) {
	if w.returned.Load() {
		w.t.Error("the image was read after WriteImage returned")
	}
	return w.r.Read(b)
}

// TestWriteImageStopsReading: WriteImage reads ahead of its writes, but a
// failed write returns only once nothing reads the image any more (the
// installer closes the gate's stream right after).
func TestWriteImageStopsReading(t *testing.T) {
	img := make([]byte, 5*ChunkSize)
	rand.Read(img)
	f, err := os.Create(filepath.Join(t.TempDir(), "disk"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := plan.Partition{Number: 1, Start: mib, Size: uint64(len(img))}
	r := &watchedReader{r: bytes.NewReader(img), t: t}
	err = WriteImage(context.Background(), failAt{f, mib + 2*ChunkSize}, p, r, int64(len(img)))
	r.returned.Store(true)
	if err == nil || !strings.Contains(err.Error(), "partition 1: write at 8388608: disk gone") {
		t.Fatalf("WriteImage on a failing disk = %v", err)
	}
	// What was written before the failure is the image's start.
	got := make([]byte, 2*ChunkSize)
	if _, err := f.ReadAt(got, mib); err != nil || !bytes.Equal(got, img[:2*ChunkSize]) {
		t.Errorf("the chunks before the failure: %v, equal %v", err, bytes.Equal(got, img[:2*ChunkSize]))
	}
}

package gateimg

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/kilnlab/kiln/image/fatimg"
	"github.com/kilnlab/kiln/internal/golden"
	"github.com/kilnlab/kiln/plan"
)

func TestNewLayout(t *testing.T) {
	for _, tc := range []struct {
		payload, p3, size int64
	}{
		{1, mib, 517 * mib},
		{mib, mib, 517 * mib},
		{mib + 1, 2 * mib, 518 * mib},
		{1500*mib - 4096, 1500 * mib, 2016 * mib},
	} {
		l, err := NewLayout(tc.payload)
		if err != nil {
			t.Fatal(err)
		}
		want := Layout{Size: tc.size, Partitions: [3]Partition{
			{1, 0x0c, 4 * mib, 256 * mib}, {2, 0x83, 260 * mib, 256 * mib}, {3, 0x83, 516 * mib, tc.p3},
		}}
		if diff := cmp.Diff(want, l); diff != "" {
			t.Errorf("NewLayout(%d) (-want +got):\n%s", tc.payload, diff)
		}
	}
	for _, bad := range []int64{0, -1, 1 << 41} {
		if _, err := NewLayout(bad); err == nil {
			t.Errorf("NewLayout(%d) accepted", bad)
		}
	}
}

func TestFits(t *testing.T) {
	l, err := NewLayout(17_200_000_000 - PayloadStart)
	if err != nil {
		t.Fatal(err)
	}
	err = l.Fits(16_000_000_000)
	if !errors.Is(err, ErrCardTooSmall) || !strings.Contains(err.Error(), "card is 16.0 GB, the image needs 17.2 GB") {
		t.Errorf("Fits = %v", err)
	}
	for _, card := range []int64{0, l.Size, 32_000_000_000} {
		if err := l.Fits(card); err != nil {
			t.Errorf("Fits(%d) = %v", card, err)
		}
	}
}

func TestSignature(t *testing.T) {
	sig := Signature("homelab", "gate-1")
	g := uuid.MustParse(plan.GUID("homelab", "gate-1", "sd", ""))
	if got := PartUUID(sig, 2); got != g.String()[:8]+"-02" {
		t.Errorf("PartUUID = %s, GUID %s", got, g)
	}
	if sig == Signature("homelab", "gate-2") || sig == Signature("otherlab", "gate-1") {
		t.Error("signatures of other gates agree")
	}
}

func TestBootText(t *testing.T) {
	golden.Check(t, "testdata/config.txt", []byte(ConfigTxt()))
	c := Cmdline(0x0badcafe)
	golden.Check(t, "testdata/cmdline.txt", []byte(c))
	if strings.Count(c, "\n") != 1 || !strings.HasSuffix(c, "\n") {
		t.Errorf("cmdline.txt is not one line: %q", c)
	}
}

func TestCHS(t *testing.T) {
	for lba, want := range map[int64][3]byte{
		0: {0, 1, 0}, 8192: {130, 3, 0}, 1_057_791: {215, 22, 65}, 1 << 30: {254, 0xff, 0xff},
	} {
		h, s, c := chs(lba)
		if got := [3]byte{h, s, c}; got != want {
			t.Errorf("chs(%d) = %v, want %v", lba, got, want)
		}
	}
}

// fakePayload is a file that passes for a squashfs of size bytes (sparse).
func fakePayload(t *testing.T, size int64) string {
	p := filepath.Join(t.TempDir(), "payload.squashfs")
	if err := os.WriteFile(p, []byte("hsqs"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	return p
}

func requiredBoot() []fatimg.File {
	var fs []fatimg.File
	for _, p := range RequiredBootFiles() {
		fs = append(fs, fatimg.File{Dest: p, Data: []byte(p)})
	}
	return fs
}

// TestCardTooSmall: refused before anything is written, saying the size.
func TestCardTooSmall(t *testing.T) {
	dir := t.TempDir()
	o := Options{Out: filepath.Join(dir, "gate-1.img"), Signature: 1, CardSize: 1_000_000_000,
		Boot: requiredBoot(), Payload: fakePayload(t, 600*mib)}
	err := Build(context.Background(), o)
	if !errors.Is(err, ErrCardTooSmall) || !strings.Contains(err.Error(), "card is 1.0 GB, the image needs 1.2 GB") {
		t.Fatalf("Build = %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("Build left %v", ents)
	}
}

func TestOptionsRejected(t *testing.T) {
	base := Options{Out: filepath.Join(t.TempDir(), "x.img"), Signature: 1, Boot: requiredBoot(), Payload: fakePayload(t, mib)}
	notSquashfs := filepath.Join(t.TempDir(), "p")
	if err := os.WriteFile(notSquashfs, []byte("not a squashfs"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Options){
		"no out":           func(o *Options) { o.Out = "" },
		"no signature":     func(o *Options) { o.Signature = 0 },
		"no payload":       func(o *Options) { o.Payload = "" },
		"not a squashfs":   func(o *Options) { o.Payload = notSquashfs },
		"no start4.elf":    func(o *Options) { o.Boot = o.Boot[1:] },
		"no initrd":        func(o *Options) { o.Boot = o.Boot[:len(o.Boot)-1] },
		"config.txt twice": func(o *Options) { o.Boot = append(o.Boot[:len(o.Boot):len(o.Boot)], fatimg.File{Dest: ConfigPath}) },
	} {
		o := base
		mod(&o)
		if err := Build(context.Background(), o); !errors.Is(err, ErrInvalid) && !errors.Is(err, fatimg.ErrInvalid) {
			t.Errorf("%s: Build = %v, want an options error", name, err)
		}
	}
}

package efiboot

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/u-root/u-root/pkg/efivarfs"
	"github.com/u-root/u-root/pkg/uefivars"
	"github.com/u-root/u-root/pkg/uefivars/boot"

	"github.com/kilnlab/kiln/installer/efiboot/efiboottest"
	"github.com/kilnlab/kiln/plan"
)

var esp = plan.Partition{
	Number: 1, Name: "kiln-esp", GUID: "67654c91-c64e-56a2-a420-9acc6751da17",
	Start: 1 << 20, Size: 256 << 20, Content: plan.ContentESP,
}

func entry(name string) Entry {
	return Entry{Description: "kiln " + name, ESP: esp, SectorSize: 512, Loader: "/EFI/BOOT/BOOTX64.EFI"}
}

// TestLoadOptionParses reads the encoded option back with u-root's
// independent parser of boot entries.
func TestLoadOptionParses(t *testing.T) {
	opt, err := entry("ceph-1").LoadOption()
	if err != nil {
		t.Fatal(err)
	}
	b, err := boot.BootVar(uefivars.EfiVar{UUID: globalVariable.String(), Name: "Boot0007", Data: opt})
	if err != nil {
		t.Fatal(err)
	}
	if b.Attributes != loadOptionActive || b.Description != "kiln ceph-1" || len(b.OptionalData) != 0 {
		t.Errorf("parsed %d %q %x", b.Attributes, b.Description, b.OptionalData)
	}
	// HD(number, GPT, GUID, start LBA, size in LBAs): the parser reads
	// the GUID in EFI byte order, and prints the file path with slashes.
	want := `HD(1,GPT,67654c91-c64e-56a2-a420-9acc6751da17,0x800,0x80000)/File(/EFI/BOOT/BOOTX64.EFI)`
	if got := b.FilePathList.String(); got != want {
		t.Errorf("device path\n got %s\nwant %s", got, want)
	}
	// Firmware wants backslashes in the path itself.
	if !bytes.Contains(opt, ucs2(`\EFI\BOOT\BOOTX64.EFI`)) {
		t.Errorf("no backslashed path in %x", opt)
	}
}

func TestLoadOptionRefuses(t *testing.T) {
	for name, e := range map[string]Entry{
		"no sector size": {ESP: esp, Loader: "/x"},
		"unaligned":      {ESP: plan.Partition{GUID: esp.GUID, Start: 1000, Size: 4096}, SectorSize: 512},
		"bad GUID":       {ESP: plan.Partition{GUID: "nope", Start: 4096, Size: 4096}, SectorSize: 512},
	} {
		if _, err := e.LoadOption(); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
}

// ovmf is a netbooted OVMF machine's store, with another vendor's
// variable of a Boot-like name that is not an entry.
func ovmf(t *testing.T) efiboottest.Vars {
	v := efiboottest.OVMF()
	other, err := uuid.Parse("11111111-2222-3333-4444-555555555555")
	if err != nil {
		t.Fatal(err)
	}
	v[efivarfs.VariableDescriptor{Name: "Boot0006", GUID: other}] = []byte("x")
	return v
}

func TestPlace(t *testing.T) {
	fresh, err := entry("ceph-1").LoadOption()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		prep    func(efiboottest.Vars)
		e       Entry
		want    Result
		wantErr error
	}{{
		name: "first install: a new entry, first, the netboot second",
		e:    entry("ceph-1"),
		want: Result{Number: 6, Created: true, Before: []uint16{0, 1, 2, 3, 4, 5}, After: []uint16{6, 2, 0, 1, 3, 4, 5}},
	}, {
		name: "reinstall: the same entry, nothing written",
		prep: func(v efiboottest.Vars) {
			v[desc("Boot0006")] = fresh
			v[desc("BootOrder")] = efiboottest.Uint16s(6, 2, 0, 1, 3, 4, 5)
		},
		e:    entry("ceph-1"),
		want: Result{Number: 6, Before: []uint16{6, 2, 0, 1, 3, 4, 5}, After: []uint16{6, 2, 0, 1, 3, 4, 5}},
	}, {
		name: "reinstall after an earlier kiln put the netboot first",
		prep: func(v efiboottest.Vars) {
			v[desc("Boot0006")] = fresh
			v[desc("BootOrder")] = efiboottest.Uint16s(2, 6, 0, 1, 3, 4, 5)
		},
		e:    entry("ceph-1"),
		want: Result{Number: 6, Before: []uint16{2, 6, 0, 1, 3, 4, 5}, After: []uint16{6, 2, 0, 1, 3, 4, 5}},
	}, {
		name: "reinstall with a new layout: the machine's entry rewritten in place",
		prep: func(v efiboottest.Vars) {
			old := entry("ceph-1")
			old.ESP.Start = 2 << 20
			opt, _ := old.LoadOption()
			v[desc("Boot0009")] = opt
			v[desc("BootOrder")] = efiboottest.Uint16s(0, 9, 1, 2, 3, 4, 5)
		},
		e:    entry("ceph-1"),
		want: Result{Number: 9, Created: true, Before: []uint16{0, 9, 1, 2, 3, 4, 5}, After: []uint16{9, 2, 0, 1, 3, 4, 5}},
	}, {
		name: "no BootOrder yet",
		prep: func(v efiboottest.Vars) { delete(v, desc("BootOrder")) },
		e:    entry("ceph-1"),
		want: Result{Number: 6, Created: true, After: []uint16{6, 2}},
	}, {
		name:    "no BootCurrent",
		prep:    func(v efiboottest.Vars) { delete(v, desc("BootCurrent")) },
		e:       entry("ceph-1"),
		wantErr: ErrNoBootCurrent,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			v := ovmf(t)
			if tc.prep != nil {
				tc.prep(v)
			}
			before := v.Clone()
			got, err := Place(v, tc.e)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				if diff := cmp.Diff(before, v); diff != "" {
					t.Errorf("refused, yet variables changed (-before +after):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
			if order := v.Order(); !slices.Equal(order, tc.want.After) {
				t.Errorf("BootOrder %v, want %v", order, tc.want.After)
			}
			want, _ := tc.e.LoadOption()
			if _, data, _ := v.Get(desc(bootName(got.Number))); !slices.Equal(data, want) {
				t.Errorf("%s holds %x", bootName(got.Number), data)
			}
			// Every other entry is untouched.
			for d, data := range before {
				if d != desc(bootName(got.Number)) && d != desc("BootOrder") && !slices.Equal(v[d], data) {
					t.Errorf("%s changed", d.Name)
				}
			}
		})
	}
}

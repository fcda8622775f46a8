package efiboot

import (
	"cmp"
	"errors"
	"slices"
	"testing"

	"github.com/kilnlab/kiln/installer/efiboot/efiboottest"
)

func TestNetbootEntry(t *testing.T) {
	other := efiboottest.NIC("52:54:00:99:99:99")
	for _, tc := range []struct {
		name    string
		prep    func(efiboottest.Vars)
		mac     string
		want    uint16
		wantErr error
	}{{
		name: "OVMF: PXEv4, not PXEv6 nor HTTP boot",
		want: 2,
	}, {
		name: "the MAC written with dashes",
		mac:  "52-54-00-12-34-56",
		want: 2,
	}, {
		name: "renumbered by the firmware: found by its device path",
		prep: func(v efiboottest.Vars) {
			v[desc("Boot000A")] = v[desc("Boot0002")]
			delete(v, desc("Boot0002"))
			v[desc("BootOrder")] = efiboottest.Uint16s(6, 0, 1, 10, 3, 4, 5)
		},
		want: 10,
	}, {
		name: "BootOrder's first match wins over a lower number",
		prep: func(v efiboottest.Vars) {
			v[desc("Boot0009")] = v[desc("Boot0002")]
			v[desc("BootOrder")] = efiboottest.Uint16s(9, 2)
		},
		want: 9,
	}, {
		name: "an entry out of BootOrder still counts",
		prep: func(v efiboottest.Vars) { v[desc("BootOrder")] = efiboottest.Uint16s(0, 1) },
		want: 2,
	}, {
		name: "another NIC's PXEv4 is not it",
		prep: func(v efiboottest.Vars) {
			v[desc("Boot0002")] = efiboottest.LoadOption("UEFI PXEv4", append(other, efiboottest.IPv4())...)
		},
		wantErr: ErrNoNetbootEntry,
	}, {
		name: "a truncated entry is skipped",
		prep: func(v efiboottest.Vars) {
			opt := v[desc("Boot0002")]
			v[desc("Boot0002")] = opt[:len(opt)-10]
		},
		wantErr: ErrNoNetbootEntry,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			v := efiboottest.OVMF()
			if tc.prep != nil {
				tc.prep(v)
			}
			got, err := NetbootEntry(v, cmp.Or(tc.mac, efiboottest.MAC))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("got %d, %v; want %v", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %04X, %v; want %04X", got, err, tc.want)
			}
		})
	}
	if _, err := NetbootEntry(efiboottest.OVMF(), "not a MAC"); err == nil {
		t.Error("a bad MAC was taken")
	}
}

// TestNetbootNext: BootNext names the PXEv4 entry, once, and nothing else
// changes.
func TestNetbootNext(t *testing.T) {
	v := efiboottest.OVMF()
	v[desc("BootOrder")] = efiboottest.Uint16s(6, 2, 0, 1, 3, 4, 5)
	before := v.Clone()
	if next, err := NetbootsNext(v, efiboottest.MAC); err != nil || next {
		t.Fatalf("before: NetbootsNext %v, %v", next, err)
	}
	n, wrote, err := NetbootNext(v, efiboottest.MAC)
	if err != nil || n != 2 || !wrote {
		t.Fatalf("NetbootNext: %04X, wrote %v, %v", n, wrote, err)
	}
	if got := v[desc("BootNext")]; !slices.Equal(got, efiboottest.Uint16s(2)) {
		t.Errorf("BootNext %x", got)
	}
	for d, data := range before {
		if !slices.Equal(v[d], data) {
			t.Errorf("%s changed", d.Name)
		}
	}
	if next, err := NetbootsNext(v, efiboottest.MAC); err != nil || !next {
		t.Errorf("after: NetbootsNext %v, %v", next, err)
	}
	if _, wrote, err := NetbootNext(v, efiboottest.MAC); err != nil || wrote {
		t.Errorf("again: wrote %v, %v", wrote, err)
	}
	// BootNext naming another entry (a human chose the UI app for once)
	// is not a netboot, and is replaced.
	v[desc("BootNext")] = efiboottest.Uint16s(0)
	if next, _ := NetbootsNext(v, efiboottest.MAC); next {
		t.Error("BootNext 0000 counted as a netboot")
	}
	if _, wrote, err := NetbootNext(v, efiboottest.MAC); err != nil || !wrote {
		t.Errorf("over another BootNext: wrote %v, %v", wrote, err)
	}
	// No PXEv4 entry: an error, and nothing written.
	v = efiboottest.OVMF()
	delete(v, desc("Boot0002"))
	if _, _, err := NetbootNext(v, efiboottest.MAC); !errors.Is(err, ErrNoNetbootEntry) {
		t.Errorf("without PXEv4: %v", err)
	}
	if _, ok := v[desc("BootNext")]; ok {
		t.Error("BootNext written without a netboot entry")
	}
}

package profiles

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSystemSlices(t *testing.T) {
	const mib = MiB
	for _, tc := range []struct {
		name         string
		disk, system Size
		want         SystemExtents
		err          bool
	}{
		{
			name: "whole disk, smallest", disk: MinSystemSize,
			want: SystemExtents{
				ESP: Extent{1 * mib, 128 * mib}, Root: Extent{129 * mib, 2048 * mib},
				State: Extent{2177 * mib, 1024 * mib},
			},
		},
		{
			name: "whole disk, unaligned size", disk: MinSystemSize + mib - 1,
			want: SystemExtents{
				ESP: Extent{1 * mib, 128 * mib}, Root: Extent{129 * mib, 2048 * mib},
				State: Extent{2177 * mib, 1024 * mib},
			},
		},
		{
			name: "slice and data", disk: 1e12, system: 50 * GiB,
			want: SystemExtents{
				ESP: Extent{1 * mib, 128 * mib}, Root: Extent{129 * mib, 2048 * mib},
				State: Extent{2177 * mib, 50*1024*mib - 2177*mib},
				Data:  Extent{50 * GiB, 953674*mib - 1*mib - 50*GiB},
			},
		},
		{
			name: "slice the size of the disk", disk: 10 * GiB, system: 10 * GiB,
			want: SystemExtents{
				ESP: Extent{1 * mib, 128 * mib}, Root: Extent{129 * mib, 2048 * mib},
				State: Extent{2177 * mib, 10*GiB - 2177*mib - mib},
			},
		},
		{name: "disk one MiB too small", disk: MinSystemSize - mib, err: true},
		{name: "slice too small", disk: 1e12, system: 3 * GiB, err: true},
		{name: "slice larger than disk", disk: 10 * GiB, system: 11 * GiB, err: true},
		{name: "empty disk", disk: 0, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SystemSlices(tc.disk, tc.system)
			if tc.err {
				if !errors.Is(err, ErrNoFit) {
					t.Fatalf("SystemSlices = %+v, %v; want ErrNoFit", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestSizeString(t *testing.T) {
	for _, tc := range []struct {
		s    Size
		want string
	}{
		{0, "0B"}, {1e12, "1TB"}, {50 * GiB, "50GiB"}, {3202 * MiB, "3202MiB"}, {1000 * MiB, "1000MiB"}, {513, "513B"},
	} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("Size(%d).String() = %q, want %q", uint64(tc.s), got, tc.want)
		}
		if back, err := ParseSize(tc.s.String()); err != nil || back != tc.s {
			t.Errorf("ParseSize(%q) = %d, %v", tc.s.String(), back, err)
		}
	}
}

package profiles

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Size is a byte count written the way disks are sold and partitioned:
// decimal units (KB, MB, GB, TB) as on a disk's label, binary units
// (KiB, MiB, GiB, TiB) for layouts, or a plain number of bytes.
type Size uint64

var sizeUnits = []struct {
	suffix string
	factor uint64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// ParseSize reads "1TB", "50GiB", "512 MiB" or "4096".
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	factor := uint64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, factor = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.factor
			break
		}
	}
	n, err := strconv.ParseUint(t, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: want a whole number with a unit such as 500GB or 50GiB", s)
	}
	if n != 0 && n*factor/factor != n {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return Size(n * factor), nil
}

// UnmarshalYAML decodes a Size from a scalar.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: size must be a scalar such as 1TB", n.Line)
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*s = v
	return nil
}

// String prints the size with the unit that gives the smallest whole
// number, binary or decimal, so that layouts and disk labels read as they
// were written ("50GiB", "1TB"); ParseSize reads it back.
func (s Size) String() string {
	best, unit := uint64(s), "B"
	for _, u := range sizeUnits {
		if s != 0 && uint64(s)%u.factor == 0 && uint64(s)/u.factor < best {
			best, unit = uint64(s)/u.factor, u.suffix
		}
	}
	return fmt.Sprintf("%d%s", best, unit)
}

// Human prints an approximate decimal size for tables ("1.0 TB").
func (s Size) Human() string {
	f := float64(s)
	for _, u := range []string{"B", "KB", "MB", "GB", "TB"} {
		if f < 1000 || u == "TB" {
			if u == "B" {
				return fmt.Sprintf("%d B", uint64(s))
			}
			return fmt.Sprintf("%.1f %s", f, u)
		}
		f /= 1000
	}
	return ""
}

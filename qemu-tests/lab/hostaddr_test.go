package lab

import (
	"net/netip"
	"testing"
)

func TestHostAddr(t *testing.T) {
	for _, tc := range []struct{ gate, want string }{
		{"192.168.1.10/24", "192.168.1.254/24"},
		{"192.168.1.254/24", "192.168.1.253/24"},
		{"10.0.0.1/16", "10.0.255.254/16"},
	} {
		got, err := HostAddr(netip.MustParsePrefix(tc.gate))
		if err != nil || got.String() != tc.want {
			t.Errorf("HostAddr(%s) = %s, %v; want %s", tc.gate, got, err, tc.want)
		}
	}
	for _, bad := range []string{"fd00::1/64", "192.168.1.10/30"} {
		if _, err := HostAddr(netip.MustParsePrefix(bad)); err == nil {
			t.Errorf("HostAddr(%s) accepted", bad)
		}
	}
}

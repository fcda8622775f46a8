package wireguard

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/image/secrets"
	"github.com/kilnlab/kiln/profiles"
)

func TestParseAllowsThePeer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		allowed []string
		want    []string
	}{
		{"peer inside", []string{"10.99.0.0/24"}, []string{"10.99.0.0/24"}},
		{"peer outside", []string{"10.50.0.0/16"}, []string{"10.50.0.0/16", "10.99.0.1/32"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wg := profiles.WireGuard{Address: "10.99.0.2/24", Peer: profiles.WireGuardPeer{Address: "10.99.0.1", AllowedIPs: tc.allowed}}
			tun, err := parse(wg)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range tun.allowed {
				got = append(got, p.String())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("allowed (-want +got):\n%s", diff)
			}
			if tun.address != netip.MustParsePrefix("10.99.0.2/24") || len(tun.routes) != 1 {
				t.Errorf("address %s, routes %v", tun.address, tun.routes)
			}
		})
	}
}

func TestNoTunnel(t *testing.T) {
	p, err := profiles.Default()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Gate(p); !errors.Is(err, ErrNoTunnel) {
		t.Errorf("Gate(homelab) = %v, want ErrNoTunnel", err)
	}
	var out strings.Builder
	if err := PeerConfig(&out, p, secrets.Keys{}); !errors.Is(err, ErrNoTunnel) || out.Len() != 0 {
		t.Errorf("PeerConfig(homelab) = %v, wrote %q", err, out.String())
	}
}

// Package wireguard owns the gate's WireGuard tunnel to a VPS (seed 004):
// Up brings the gate's interface up from the profile's wireguard block and
// the gate's keys, and PeerConfig writes the VPS's side as a wg-quick
// config. The keys come from package image/secrets; nothing here logs them.
package wireguard

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"

	"github.com/kilnlab/kiln/image/secrets"
	"github.com/kilnlab/kiln/profiles"
)

// ErrNoTunnel is returned for a profile whose gate has no wireguard block.
var ErrNoTunnel = errors.New("the gate has no wireguard block")

// Gate returns the profile's gate and its (validated) wireguard block.
func Gate(p *profiles.Profile) (*profiles.Machine, *profiles.WireGuard, error) {
	for i := range p.Machines {
		m := &p.Machines[i]
		if m.Role != profiles.RoleGate {
			continue
		}
		if m.WireGuard == nil {
			return m, nil, fmt.Errorf("%s: %w %s (see the commented example in kiln's homelab.yaml)", p.Source, ErrNoTunnel, m.Name)
		}
		return m, m.WireGuard, nil
	}
	return nil, nil, fmt.Errorf("%s: no gate", p.Source)
}

// PeerConfig writes the VPS's wg-quick config for p's tunnel: the VPS's
// keys and tunnel address, listening on the endpoint's port, with the gate
// as its one peer. The gate is behind NAT, so the config has no endpoint
// for it: the gate dials in and its keepalives hold the path open. The
// output holds the VPS's private key; it is meant for the VPS alone.
func PeerConfig(w io.Writer, p *profiles.Profile, keys secrets.Keys) error {
	gate, wg, err := Gate(p)
	if err != nil {
		return err
	}
	tunnel, err := netip.ParsePrefix(wg.Address)
	if err != nil {
		return fmt.Errorf("wireguard address: %w", err)
	}
	_, port, err := net.SplitHostPort(wg.Peer.Endpoint)
	if err != nil {
		return fmt.Errorf("wireguard endpoint: %w", err)
	}
	vps, err := netip.ParseAddr(wg.Peer.Address)
	if err != nil {
		return fmt.Errorf("wireguard peer address: %w", err)
	}
	allowed := []string{netip.PrefixFrom(tunnel.Addr(), 32).String(), p.Network.CIDR}
	var b strings.Builder
	fmt.Fprintf(&b, "# The VPS side of lab %s's WireGuard tunnel to its gate %s,\n", p.Name, gate.Name)
	fmt.Fprintf(&b, "# from `kiln gate wireguard-peer`. It holds the VPS's private key: on the VPS,\n")
	fmt.Fprintf(&b, "# save it as /etc/wireguard/wg0.conf (mode 0600), then run wg-quick up wg0.\n")
	fmt.Fprintf(&b, "[Interface]\n")
	fmt.Fprintf(&b, "PrivateKey = %s\n", keys.PeerPrivate)
	fmt.Fprintf(&b, "Address = %s\n", netip.PrefixFrom(vps, tunnel.Bits()))
	fmt.Fprintf(&b, "ListenPort = %s\n", port)
	fmt.Fprintf(&b, "\n[Peer]\n")
	fmt.Fprintf(&b, "# %s, behind NAT: it dials in and keeps the path open\n", gate.Name)
	fmt.Fprintf(&b, "PublicKey = %s\n", keys.GatePublic)
	fmt.Fprintf(&b, "PresharedKey = %s\n", keys.Preshared)
	fmt.Fprintf(&b, "AllowedIPs = %s\n", strings.Join(allowed, ", "))
	_, err = io.WriteString(w, b.String())
	return err
}

package main

import (
	"context"

	"github.com/kilnlab/kiln/image/secrets"
	"github.com/kilnlab/kiln/pxe/wireguard"
)

func runGateWireGuardPeer(ctx context.Context, env *cli, args []string) error {
	fs := newFlags(env, "gate wireguard-peer [--secrets DIR] [PROFILE]",
		"Print the wg-quick config of the VPS end of the gate's WireGuard tunnel (the\nprofile's gate wireguard block): the VPS's private key and tunnel address, its\nlisten port (the endpoint's), and the gate as its peer, allowed the gate's\ntunnel address and the lab's network. Save it on the VPS as\n/etc/wireguard/wg0.conf (mode 0600) and run wg-quick up wg0.\nThe keys are the lab's, generated once into the secrets directory if absent\n(the same ones kiln build puts on the gate's card). The output holds the VPS's\nprivate key: keep it off shared terminals and logs.")
	dir := fs.String("secrets", "", "the lab's secrets directory (default $XDG_STATE_HOME/kiln/<lab> or ~/.local/state/kiln/<lab>)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	p, err := loadProfile(fs.Args())
	if err != nil {
		return err
	}
	// Before the keys: a profile without a tunnel must not make any.
	if _, _, err := wireguard.Gate(p); err != nil {
		return err
	}
	if *dir == "" {
		if *dir, err = secrets.DefaultDir(p.Name); err != nil {
			return err
		}
	}
	keys, err := secrets.WireGuard(*dir)
	if err != nil {
		return err
	}
	return wireguard.PeerConfig(env.stdout, p, keys)
}

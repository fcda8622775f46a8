package qemutests

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnlab/kiln/image/hosttool/hosttooltest"
	"github.com/kilnlab/kiln/image/secrets"
	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/pxe/wireguard"
	"github.com/kilnlab/kiln/qemu-tests/rehearse"
)

// TestGateTunnel: the gate, booted from its image, brings its WireGuard
// tunnel up with the Debian kernel's module, keys from its payload, to a
// stand-in VPS on the LAN's host side — wireguard-go configured from the
// config `kiln gate wireguard-peer` prints — and the VPS reaches the gate
// through the tunnel.
func TestGateTunnel(t *testing.T) {
	requireLab(t)
	hosttooltest.Need(t, "wireguard-go", "wg", "ping")
	ctx := testContext(t, 10*time.Minute)
	l, _ := startLab(t, ctx, profiles.DHCPProxy, gateVM)
	prof, err := profiles.Load(kilnBuild.profile)
	if err != nil {
		t.Fatal(err)
	}
	_, tunnel, err := wireguard.Gate(prof)
	if err != nil {
		t.Fatal(err)
	}
	startVPS(t, ctx, l, prof)
	gate, _, _ := strings.Cut(tunnel.Address, "/")
	// The VPS learns the gate's endpoint from the gate's handshake (the
	// gate is behind NAT and dials out; it retries every 5 s).
	var out []byte
	for i := 0; i < 30; i++ {
		out, err = l.Net.Command("ping", "-c1", "-W2", gate).CombinedOutput()
		if err == nil {
			t.Logf("VPS -> gate %s through the tunnel after %d tries:\n%s", gate, i+1, out)
			show, _ := l.Net.Command("wg", "show", "wg-vps").CombinedOutput()
			t.Logf("wg show wg-vps:\n%s", show)
			return
		}
		time.Sleep(2 * time.Second)
	}
	show, _ := l.Net.Command("wg", "show", "wg-vps").CombinedOutput()
	t.Fatalf("the gate's tunnel address %s never answered: %v\n%s\nwg show:\n%s", gate, err, out, show)
}

// startVPS runs the VPS's side in the lab's namespace on the LAN's host
// address: wireguard-go (the host kernel may lack WireGuard) with the
// config kiln prints for it, minus wg-quick's Address line.
func startVPS(t *testing.T, ctx context.Context, l *rehearse.Lab, prof *profiles.Profile) {
	t.Helper()
	keys, err := secrets.WireGuard(secretsDir(kilnBuild.out))
	if err != nil {
		t.Fatal(err)
	}
	var conf bytes.Buffer
	if err := wireguard.PeerConfig(&conf, prof, keys); err != nil {
		t.Fatal(err)
	}
	var addr string
	var kept []string
	for _, line := range strings.Split(conf.String(), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == "Address" {
			addr = strings.TrimSpace(v)
			continue
		}
		kept = append(kept, line)
	}
	path := filepath.Join(t.TempDir(), "vps.conf")
	if err := os.WriteFile(path, []byte(strings.Join(kept, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Net.Start("vps", l.Net.Command("wireguard-go", "-f", "wg-vps")); err != nil {
		t.Fatalf("wireguard-go: %v", err)
	}
	for _, args := range [][]string{
		{"sh", "-c", "for i in $(seq 50); do ip link show wg-vps >/dev/null 2>&1 && exit 0; sleep 0.1; done; exit 1"},
		{"wg", "setconf", "wg-vps", path},
		{"ip", "addr", "add", addr, "dev", "wg-vps"},
		{"ip", "link", "set", "wg-vps", "up"},
	} {
		if out, err := l.Net.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("VPS: %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

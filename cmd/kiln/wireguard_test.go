package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnlab/kiln/image/secrets"
	"github.com/kilnlab/kiln/internal/golden"
	"github.com/kilnlab/kiln/pxe/wireguard"
)

// testSecrets copies the test keys into a private directory (git keeps no
// 0600 modes, and kiln refuses open ones).
func testSecrets(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "secrets")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("testdata/wireguard/wireguard.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, secrets.WireGuardFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestGateWireGuardPeer(t *testing.T) {
	dir := testSecrets(t)
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"gate", "wireguard-peer", "--secrets", dir, "../../profiles/testdata/good-wireguard.yaml"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	golden.Check(t, "testdata/wireguard/peer.conf.golden", stdout.Bytes())
	if stderr.Len() != 0 {
		t.Errorf("stderr: %s", stderr.String())
	}
}

func TestGateWireGuardPeerErrors(t *testing.T) {
	t.Run("no wireguard block", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "secrets")
		err := run(context.Background(), []string{"gate", "wireguard-peer", "--secrets", dir}, &bytes.Buffer{}, &bytes.Buffer{})
		if !errors.Is(err, wireguard.ErrNoTunnel) || exitCode(err) != 1 || !strings.Contains(err.Error(), "gate-1") {
			t.Errorf("err = %v (exit %d), want ErrNoTunnel naming gate-1, exit 1", err, exitCode(err))
		}
		if _, err := os.Stat(dir); err == nil {
			t.Error("keys were made for a lab without a tunnel")
		}
	})
	t.Run("open secrets directory", func(t *testing.T) {
		dir := testSecrets(t)
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		var stdout bytes.Buffer
		err := run(context.Background(), []string{"gate", "wireguard-peer", "--secrets", dir, "../../profiles/testdata/good-wireguard.yaml"}, &stdout, &bytes.Buffer{})
		if !errors.Is(err, secrets.ErrPermissions) || stdout.Len() != 0 {
			t.Errorf("err = %v, stdout %q; want ErrPermissions and nothing printed", err, stdout.String())
		}
	})
	t.Run("help", func(t *testing.T) {
		var stderr bytes.Buffer
		if err := run(context.Background(), []string{"gate", "wireguard-peer", "-h"}, &bytes.Buffer{}, &stderr); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"usage: kiln gate wireguard-peer [--secrets DIR] [PROFILE]", "-secrets", "wg-quick"} {
			if !strings.Contains(stderr.String(), want) {
				t.Errorf("help lacks %q:\n%s", want, stderr.String())
			}
		}
	})
}

package secrets

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDefaultDir(t *testing.T) {
	t.Setenv("HOME", "/home/ann")
	for _, tc := range []struct{ xdg, want string }{
		{"/state", "/state/kiln/homelab"},
		{"", "/home/ann/.local/state/kiln/homelab"},
		{"relative/ignored", "/home/ann/.local/state/kiln/homelab"}, // the XDG spec: relative paths are invalid
	} {
		t.Setenv("XDG_STATE_HOME", tc.xdg)
		got, err := DefaultDir("homelab")
		if err != nil || got != tc.want {
			t.Errorf("XDG_STATE_HOME=%q: DefaultDir = %q, %v; want %q", tc.xdg, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "..", "a/b"} {
		if _, err := DefaultDir(bad); err == nil {
			t.Errorf("DefaultDir(%q) succeeded", bad)
		}
	}
}

func TestWireGuardGeneratesOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "kiln", "lab")
	k1, err := WireGuard(dir)
	if err != nil {
		t.Fatal(err)
	}
	if k1.GatePrivate.PublicKey() != k1.GatePublic || k1.PeerPrivate.PublicKey() != k1.PeerPublic {
		t.Error("public keys do not match their private keys")
	}
	if k1.GatePrivate == k1.PeerPrivate || k1.Preshared == k1.GatePrivate {
		t.Error("keys repeat")
	}
	path := filepath.Join(dir, WireGuardFile)
	checkModes(t, dir, path)
	before, _ := os.ReadFile(path)
	old := time.Unix(1e9, 0)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}

	k2, err := WireGuard(dir)
	if err != nil {
		t.Fatal(err)
	}
	if k1 != k2 {
		t.Error("second call returned other keys")
	}
	after, _ := os.ReadFile(path)
	st, _ := os.Stat(path)
	if !bytes.Equal(before, after) || !st.ModTime().Equal(old) {
		t.Error("second call touched wireguard.json")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("dir holds %d entries, want only %s (a temporary file left behind?)", len(ents), WireGuardFile)
	}
	for _, field := range []string{"gate_private_key", "gate_public_key", "peer_private_key", "peer_public_key", "preshared_key"} {
		if !strings.Contains(string(after), `"`+field+`"`) {
			t.Errorf("wireguard.json lacks %s", field)
		}
	}
}

// privateDir is a new 0700 directory (t.TempDir is 0755, which kiln refuses).
func privateDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "secrets")
	if err := os.Mkdir(dir, DirMode); err != nil {
		t.Fatal(err)
	}
	return dir
}

func checkModes(t *testing.T, dir, file string) {
	t.Helper()
	for path, want := range map[string]os.FileMode{dir: DirMode, file: FileMode} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s has mode %04o, want %04o", path, st.Mode().Perm(), want)
		}
	}
}

func TestWireGuardRefusesOpenPermissions(t *testing.T) {
	for _, tc := range []struct {
		name         string
		dirMode      os.FileMode
		fileMode     os.FileMode
		wantInMesage string
	}{
		{"group-readable dir", 0o750, 0o600, "chmod 0700"},
		{"world-readable file", 0o700, 0o644, "chmod 0600"},
		{"group-writable file", 0o700, 0o620, "chmod 0600"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := privateDir(t)
			if _, err := WireGuard(dir); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, WireGuardFile)
			if err := os.Chmod(path, tc.fileMode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, tc.dirMode); err != nil {
				t.Fatal(err)
			}
			_, err := WireGuard(dir)
			if !errors.Is(err, ErrPermissions) || !strings.Contains(err.Error(), tc.wantInMesage) {
				t.Errorf("WireGuard = %v, want ErrPermissions saying %q", err, tc.wantInMesage)
			}
		})
	}
	t.Run("open dir before generation", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := WireGuard(dir); !errors.Is(err, ErrPermissions) {
			t.Errorf("WireGuard = %v, want ErrPermissions", err)
		}
		if _, err := os.Stat(filepath.Join(dir, WireGuardFile)); err == nil {
			t.Error("keys were written into an open directory")
		}
	})
}

func TestWireGuardCorrupt(t *testing.T) {
	k, err := generate()
	if err != nil {
		t.Fatal(err)
	}
	good, _ := encode(k)
	other, _ := generate()
	for _, tc := range []struct {
		name, content, want string
	}{
		{"not JSON", "{", "unexpected EOF"},
		{"empty", "", "EOF"},
		{"missing key", strings.Replace(string(good), `"preshared_key"`, `"x"`, 1), "unknown field"},
		{"bad base64", strings.Replace(string(good), k.Preshared.String(), "nope", 1), "preshared_key is not a base64 WireGuard key"},
		{"wrong public key", strings.Replace(string(good), k.GatePublic.String(), other.GatePublic.String(), 1), "does not belong"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := privateDir(t)
			path := filepath.Join(dir, WireGuardFile)
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := WireGuard(dir)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("WireGuard = %v, want ErrCorrupt containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), k.GatePrivate.String()) || strings.Contains(err.Error(), k.Preshared.String()) {
				t.Error("the error shows a key")
			}
			if b, _ := os.ReadFile(path); string(b) != tc.content {
				t.Error("a damaged file was rewritten")
			}
		})
	}
}

func TestGateKeysRoundTrip(t *testing.T) {
	k, err := WireGuard(privateDir(t))
	if err != nil {
		t.Fatal(err)
	}
	payload := filepath.Join(t.TempDir(), "payload", "secrets")
	if err := WriteGateKeys(payload, k.GateView()); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(payload, WireGuardFile)
	checkModes(t, payload, path)
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), k.PeerPrivate.String()) || strings.Contains(string(b), "peer_private_key") {
		t.Error("the gate's file carries the VPS's private key")
	}
	got, err := LoadGateKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != k.GateView() {
		t.Error("LoadGateKeys differs from what WriteGateKeys wrote")
	}
	// Rewriting (a second kiln build) replaces the file in place.
	if err := WriteGateKeys(payload, k.GateView()); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadGateKeys(path); !errors.Is(err, ErrPermissions) {
		t.Errorf("LoadGateKeys of a 0644 file = %v, want ErrPermissions", err)
	}
}

// TestRedacted: printing or logging key sets shows no key.
func TestRedacted(t *testing.T) {
	k, err := generate()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for _, v := range []any{k, k.GateView(), &k} {
		fmt.Fprintf(&out, "%v %+v %#v %s\n", v, v, v, v)
	}
	slog.New(slog.NewTextHandler(&out, nil)).Info("keys", "k", k, "g", k.GateView())
	slog.New(slog.NewJSONHandler(&out, nil)).Info("keys", "k", k, "g", k.GateView())
	for _, key := range []string{k.GatePrivate.String(), k.PeerPrivate.String(), k.Preshared.String()} {
		if strings.Contains(out.String(), key) {
			t.Fatalf("a key shows in:\n%s", out.String())
		}
	}
	if diff := cmp.Diff("secrets.Keys[secret]", k.String()); diff != "" {
		t.Error(diff)
	}
}

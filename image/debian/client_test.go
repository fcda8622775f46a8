package debian

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kilnlab/kiln/image/cache"
	"github.com/kilnlab/kiln/image/debian/debiantest"
	"github.com/ulikunitz/xz"
)

// needTool skips when a Debian tool is missing, except under CI=true.
func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s missing under CI: %v", name, err)
		}
		t.Skipf("%s not installed: %v", name, err)
	}
}

// signer is a throwaway GnuPG home with one ed25519 key, so the real gpgv
// path can be tested without Debian's private keys.
type signer struct {
	home, keyring string
}

func newSigner(t *testing.T) *signer {
	needTool(t, "gpg")
	needTool(t, "gpgv")
	home, err := os.MkdirTemp("", "kiln-gpg-")
	if err != nil {
		t.Fatal(err)
	}
	s := &signer{home: home, keyring: filepath.Join(home, "test-keyring.gpg")}
	t.Cleanup(func() {
		exec.Command("gpgconf", "--homedir", home, "--kill", "gpg-agent").Run()
		os.RemoveAll(home)
	})
	s.gpg(t, nil, "--quick-gen-key", "kiln test <test@kiln.invalid>", "ed25519", "sign", "never")
	s.gpg(t, nil, "--output", s.keyring, "--export")
	return s
}

func (s *signer) gpg(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("gpg", append([]string{"--homedir", s.home, "--batch", "--pinentry-mode", "loopback", "--passphrase", ""}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("gpg %v: %v\n%s", args, err, errb.String())
	}
	return out.Bytes()
}

func (s *signer) clearsign(t *testing.T, text []byte) []byte {
	return s.gpg(t, text, "--clearsign")
}

func xzBytes(t *testing.T, data []byte) []byte {
	var buf bytes.Buffer
	w, err := xz.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// syntheticSuite serves testdata/Packages as main/binary-amd64/Packages.xz
// (by hash) under a Release text signed by s, and returns a client of it.
func syntheticSuite(t *testing.T, s *signer, m *debiantest.Mirror) *Client {
	t.Helper()
	plain, err := os.ReadFile("testdata/Packages")
	if err != nil {
		t.Fatal(err)
	}
	packagesXZ := xzBytes(t, plain)
	release := fmt.Sprintf("Origin: kiln-test\nSuite: test\nCodename: test\nVersion: 0.1\nDate: Sat, 01 Jan 2000 00:00:00 UTC\n"+
		"Acquire-By-Hash: yes\nArchitectures: amd64\nComponents: main\nSHA256:\n %s %d main/binary-amd64/Packages.xz\n",
		hexSum(packagesXZ), len(packagesXZ))
	m.Files["/debian/dists/test/InRelease"] = s.clearsign(t, []byte(release))
	m.Files["/debian/dists/test/main/binary-amd64/by-hash/SHA256/"+hexSum(packagesXZ)] = packagesXZ
	return &Client{
		Mirror: m.URL + "/debian", Suite: "test", Components: []string{"main"},
		Verifier: GPGV{Keyring: s.keyring},
		Cache:    &cache.Cache{Dir: t.TempDir()},
	}
}

// TestClientSigned runs the real path: InRelease from a local httptest
// mirror, verified by gpgv against a throwaway keyring, Packages.xz by
// the sha256 the signed text gives.
func TestClientSigned(t *testing.T) {
	s := newSigner(t)
	m := debiantest.NewMirror(t)
	c := syntheticSuite(t, s, m)
	ctx := context.Background()
	rel, err := c.Release(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rel.Version != "0.1" || !rel.AcquireByHash {
		t.Errorf("release = %+v", rel)
	}
	ix, err := c.Index(ctx, rel, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if ix.Len() != 16 { // 17 stanzas, one arm64
		t.Errorf("index has %d packages, want 16", ix.Len())
	}
	before := m.Requests.Load()
	if _, err := c.Index(ctx, rel, "amd64"); err != nil {
		t.Fatal(err)
	}
	if n := m.Requests.Load() - before; n != 0 {
		t.Errorf("second Index made %d requests, want 0 (cached by hash)", n)
	}
}

func TestClientRefusesTampering(t *testing.T) {
	s := newSigner(t)
	ctx := context.Background()

	t.Run("InRelease edited after signing", func(t *testing.T) {
		m := debiantest.NewMirror(t)
		c := syntheticSuite(t, s, m)
		p := "/debian/dists/test/InRelease"
		m.Files[p] = bytes.Replace(m.Files[p], []byte("Version: 0.1"), []byte("Version: 0.2"), 1)
		if _, err := c.Release(ctx); !errors.Is(err, ErrBadSignature) {
			t.Errorf("Release = %v, want ErrBadSignature", err)
		}
	})
	t.Run("signed by an unknown key", func(t *testing.T) {
		m := debiantest.NewMirror(t)
		c := syntheticSuite(t, s, m)
		c.Verifier = GPGV{Keyring: newSigner(t).keyring}
		if _, err := c.Release(ctx); !errors.Is(err, ErrBadSignature) {
			t.Errorf("Release = %v, want ErrBadSignature", err)
		}
	})
	t.Run("Packages.xz not matching the signed hash", func(t *testing.T) {
		m := debiantest.NewMirror(t)
		c := syntheticSuite(t, s, m)
		rel, err := c.Release(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for p, data := range m.Files {
			if filepath.Base(filepath.Dir(p)) == "SHA256" {
				m.Files[p] = append([]byte{}, data...)
				m.Files[p][len(data)/2] ^= 0xff
			}
		}
		if _, err := c.Index(ctx, rel, "amd64"); !errors.Is(err, cache.ErrHashMismatch) {
			t.Errorf("Index = %v, want ErrHashMismatch", err)
		}
	})
}

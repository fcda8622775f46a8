package qemutests

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"encoding/pem"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kilnlab/kiln/image/build"
	"github.com/kilnlab/kiln/image/hosttool/hosttooltest"
	"github.com/kilnlab/kiln/image/secrets"
	"github.com/kilnlab/kiln/pxe/httpd"
	"github.com/kilnlab/kiln/pxe/state"
)

// TestServedFilesHoldNoSecrets asks the gate, as any LAN host could and
// without a token, for everything it serves — the iPXE scripts of every
// machine, the status page, every file of the bundle (state images,
// ESPs, initramfs, role images) — and looks in each, unpacked where it is
// gzip or squashfs, for the lab's secrets as kiln build made them: every
// private key (the CA's, each machine's, WireGuard's) and cephx key. None
// may be there.
func TestServedFilesHoldNoSecrets(t *testing.T) {
	requireLab(t)
	hosttooltest.Need(t, "unsquashfs")
	_, bundle, p := kilnAndBundle(t)
	needles := secretNeedles(t, secretsDir(kilnBuild.out))
	if len(needles) < 5 {
		t.Fatalf("found only %d secrets in the lab's secrets directory: the test would prove nothing", len(needles))
	}
	states, err := state.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := httpd.New(httpd.Config{
		Plan: p, BundleDir: bundle, States: states, GateURL: "http://192.168.1.10:8080",
		Log:     slog.New(slog.DiscardHandler),
		Secrets: secrets.GateStore{Dir: filepath.Join(kilnBuild.out, build.OutGateSecrets)},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()

	paths := []string{"/", "/status.json", "/boot.ipxe"}
	for _, m := range p.Machines {
		paths = append(paths, "/ipxe/"+m.MAC)
	}
	err = filepath.WalkDir(bundle, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(bundle, path)
		paths = append(paths, "/files/"+filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	unpack := t.TempDir()
	for i, path := range paths {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s = %d", path, resp.StatusCode)
			continue
		}
		for _, where := range scanAll(t, body, filepath.Join(unpack, strconv.Itoa(i)), needles) {
			t.Errorf("GET %s without a token serves a secret (%s)", path, where)
		}
	}
	t.Logf("%d paths fetched without a token, %d secrets looked for: none found", len(paths), len(needles))
}

// secretNeedles collects, from the lab's secrets directory, a piece of
// every secret: the base64 body of each PEM private key, each cephx key,
// WireGuard's private and preshared keys, Consul's gossip key and token
// secrets, and the k3s token.
func secretNeedles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		name, _ := filepath.Rel(dir, path)
		switch {
		case bytes.Contains(b, []byte("PRIVATE KEY")):
			for rest := b; ; {
				var blk *pem.Block
				if blk, rest = pem.Decode(rest); blk == nil {
					break
				}
				if strings.Contains(blk.Type, "PRIVATE KEY") {
					// The second line of the body: the first starts
					// with the ASN.1 header every P-256 key shares.
					enc := string(pem.EncodeToMemory(blk))
					out[strings.Split(enc, "\n")[2]] = name + " private key"
				}
			}
		case strings.HasSuffix(path, ".json"):
			var v any
			if json.Unmarshal(b, &v) == nil {
				jsonSecrets(v, name, out)
			}
		case strings.HasSuffix(path, ".key"):
			out[strings.TrimSpace(string(b))] = name
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// jsonSecrets adds every string of v under a key that names a secret (a
// key, a secret ID, a token; not a public key or an accessor ID), at any
// depth: Consul's tokens are objects in consul.json.
func jsonSecrets(v any, where string, out map[string]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, val := range v {
			s, ok := val.(string)
			secret := (strings.Contains(k, "key") || strings.Contains(k, "secret") || strings.Contains(k, "token")) &&
				!strings.Contains(k, "public") && !strings.Contains(k, "accessor")
			if ok && secret && s != "" {
				out[s] = where + " " + k
			}
			jsonSecrets(val, where+" "+k, out)
		}
	case []any:
		for _, val := range v {
			jsonSecrets(val, where, out)
		}
	}
}

// scanAll looks for the needles in b, and in what b unpacks to (gzip,
// squashfs), returning where each was found. Any PEM private key counts
// too, except inside a role image's Debian files, where a library may
// well carry the marker as a string.
func scanAll(t *testing.T, b []byte, tmp string, needles map[string]string) []string {
	return scan(t, b, tmp, needles, true)
}

func scan(t *testing.T, b []byte, tmp string, needles map[string]string, anyPEM bool) []string {
	t.Helper()
	var found []string
	for n, what := range needles {
		if bytes.Contains(b, []byte(n)) {
			found = append(found, what)
		}
	}
	if anyPEM && bytes.Contains(b, []byte("PRIVATE KEY-----")) {
		found = append(found, "a PEM private key")
	}
	switch {
	case bytes.HasPrefix(b, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return found
		}
		u, _ := io.ReadAll(zr)
		for _, f := range scan(t, u, tmp, needles, anyPEM) {
			found = append(found, "gzip: "+f)
		}
	case bytes.HasPrefix(b, []byte("hsqs")):
		img := tmp + ".sqfs"
		if err := os.WriteFile(img, b, 0o600); err != nil {
			t.Fatal(err)
		}
		tree := tmp + ".tree"
		if out, err := exec.Command("unsquashfs", "-no-progress", "-q", "-d", tree, img).CombinedOutput(); err != nil {
			t.Fatalf("unsquashfs: %v\n%s", err, out)
		}
		filepath.WalkDir(tree, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			fb, err := os.ReadFile(path)
			if err != nil {
				return nil
			}
			for _, f := range scan(t, fb, tmp+"x", needles, false) {
				rel, _ := filepath.Rel(tree, path)
				found = append(found, "squashfs "+rel+": "+f)
			}
			return nil
		})
		os.RemoveAll(tree)
		os.Remove(img)
	}
	return found
}

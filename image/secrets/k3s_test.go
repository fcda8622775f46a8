package secrets

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestK3sGeneratesOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "kiln", "lab")
	t1, err := K3s(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(t1.Hex()) != 64 || strings.Trim(t1.Hex(), "0123456789abcdef") != "" {
		t.Errorf("token is %d characters, not 64 of lowercase hex", len(t1.Hex()))
	}
	if t1 == (K3sToken{}) {
		t.Error("token is all zeros")
	}
	path := filepath.Join(dir, K3sFile)
	checkModes(t, dir, path)
	if b, _ := os.ReadFile(path); !strings.Contains(string(b), `"token": "`+t1.Hex()+`"`) {
		t.Error("k3s.json does not hold the token")
	}

	ageFiles(t, dir)
	files := snapshot(t, dir)
	t2, err := K3s(dir)
	if err != nil {
		t.Fatal(err)
	}
	if t1 != t2 {
		t.Error("second call returned another token")
	}
	if diff := cmp.Diff(files, snapshot(t, dir)); diff != "" {
		t.Errorf("second call touched the files:\n%s", diff)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("dir holds %d entries, want only %s (a temporary file left behind?)", len(ents), K3sFile)
	}
	if other, err := K3s(privateDir(t)); err != nil || other == t1 {
		t.Errorf("another lab's token: same %v, %v", other == t1, err)
	}
}

func TestK3sRefusesOpenPermissions(t *testing.T) {
	refusesOpenPermissions(t, K3sFile, func(dir string) error {
		_, err := K3s(dir)
		return err
	})
}

// refusesOpenPermissions checks that load, which makes file in a secrets
// directory, refuses the file or the directory once group or others can
// use them, saying how to fix it, and writes nothing into an open one.
// Any secret file's loader can be checked with it.
func refusesOpenPermissions(t *testing.T, file string, load func(dir string) error) {
	t.Helper()
	for _, tc := range []struct {
		name              string
		dirMode, fileMode os.FileMode
		want              string
	}{
		{"group-readable dir", 0o750, 0o600, "chmod 0700"},
		{"world-readable file", 0o700, 0o644, "chmod 0600"},
		{"group-writable file", 0o700, 0o620, "chmod 0600"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := privateDir(t)
			if err := load(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(filepath.Join(dir, file), tc.fileMode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, tc.dirMode); err != nil {
				t.Fatal(err)
			}
			if err := load(dir); !errors.Is(err, ErrPermissions) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("load = %v, want ErrPermissions saying %q", err, tc.want)
			}
		})
	}
	t.Run("open dir before generation", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := load(dir); !errors.Is(err, ErrPermissions) {
			t.Errorf("load = %v, want ErrPermissions", err)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("secrets were written into an open directory: %v", ents)
		}
	})
}

func TestK3sCorrupt(t *testing.T) {
	good, err := encodeK3s()
	if err != nil {
		t.Fatal(err)
	}
	tok, err := loadK3sBytes(t, good)
	if err != nil {
		t.Fatal(err)
	}
	h := tok.Hex()
	refusesDamaged(t, K3sFile, []damage{
		{"not JSON", "{", "unexpected EOF"},
		{"empty", "", "EOF"},
		{"unknown field", strings.Replace(string(good), `"token"`, `"k3s_token"`, 1), "unknown field"},
		{"no token", strings.Replace(string(good), h, "", 1), "token is missing"},
		{"upper case", strings.Replace(string(good), h, strings.ToUpper(h), 1), "lowercase hex"},
		{"short", strings.Replace(string(good), h, h[:62], 1), "32 bytes"},
		{"not hex", strings.Replace(string(good), h, "zz"+h[2:], 1), "lowercase hex"},
		{"k3s's own secure form", strings.Replace(string(good), h, "K10abc::server:"+h, 1), "lowercase hex"},
	}, func(dir string) error {
		_, err := K3s(dir)
		return err
	}, h[4:40])
}

// damage is a secrets file's damaged content and what its refusal says.
type damage struct{ name, content, want string }

// refusesDamaged checks that load refuses file with each damaged content:
// ErrCorrupt naming the file, the fault and the way out, showing none of
// secrets, and leaving the file as it was.
func refusesDamaged(t *testing.T, file string, cases []damage, load func(dir string) error, secrets ...string) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := privateDir(t)
			path := filepath.Join(dir, file)
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			err := load(dir)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("load = %v, want ErrCorrupt about %s containing %q", err, path, tc.want)
			}
			if !strings.Contains(err.Error(), "restore the file from a backup") {
				t.Errorf("the error gives no way out: %v", err)
			}
			for _, s := range secrets {
				if strings.Contains(err.Error(), s) {
					t.Error("the error shows a secret")
				}
			}
			if b, _ := os.ReadFile(path); string(b) != tc.content {
				t.Error("a damaged file was rewritten")
			}
		})
	}
}

// TestK3sRedacted: printing, logging or marshalling the token shows none
// of it.
func TestK3sRedacted(t *testing.T) {
	tok, err := K3s(privateDir(t))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for _, v := range []any{tok, &tok, struct{ T K3sToken }{tok}} {
		fmt.Fprintf(&out, "%v %+v %#v %s %q %x %X %d\n", v, v, v, v, v, v, v, v)
	}
	slog.New(slog.NewTextHandler(&out, nil)).Info("k3s", "token", tok)
	slog.New(slog.NewJSONHandler(&out, nil)).Info("k3s", "token", tok, "ptr", &tok)
	j, err := json.Marshal(struct{ T K3sToken }{tok})
	if err != nil {
		t.Fatal(err)
	}
	out.Write(j)
	for _, part := range []string{tok.Hex(), tok.Hex()[:16], tok.Hex()[48:], strings.ToUpper(tok.Hex()[:16])} {
		if strings.Contains(out.String(), part) {
			t.Fatalf("the token shows in:\n%s", out.String())
		}
	}
	if diff := cmp.Diff("secrets.K3sToken[secret]", tok.String()); diff != "" {
		t.Error(diff)
	}
}

func loadK3sBytes(t *testing.T, b []byte) (K3sToken, error) {
	t.Helper()
	path := filepath.Join(privateDir(t), K3sFile)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return loadK3s(path)
}

package secrets

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

// sameKeys compares CephKeys by value (CephKey hides its bytes from cmp).
var sameKeys = cmp.Comparer(func(a, b CephKey) bool { return a == b })

// snapshot is every file under dir with its content and mtime, to show a
// call left existing files alone.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		st, err := os.Stat(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		m[rel] = st.ModTime().UTC().Format(time.RFC3339Nano) + " " + string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// ageFiles sets every file's mtime far back, so that a rewrite shows.
func ageFiles(t *testing.T, dir string) {
	t.Helper()
	old := time.Unix(1e9, 0)
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			err = os.Chtimes(path, old, old)
		}
		if err != nil {
			t.Fatal(err)
		}
		return nil
	})
}

func TestCephGeneratesOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "kiln", "lab")
	before := time.Now()
	k1, err := Ceph(dir, []string{"ceph-1", "ceph-2", "ceph-3"})
	if err != nil {
		t.Fatal(err)
	}
	if k1.FSID.Version() != 4 || k1.FSID == (uuid.UUID{}) {
		t.Errorf("fsid %s is not a random UUID", k1.FSID)
	}
	all := []CephKey{k1.Mon, k1.Admin, k1.BootstrapOSD, k1.Mgr["ceph-1"], k1.Mgr["ceph-2"], k1.Mgr["ceph-3"]}
	for i, k := range all {
		if k == (CephKey{}) {
			t.Errorf("key %d is empty", i)
		}
		if slices.Contains(all[:i], k) {
			t.Errorf("key %d repeats an earlier one", i)
		}
		if c := k.Created(); c.Before(before.Add(-time.Second)) || c.After(time.Now()) {
			t.Errorf("key %d created %s, not now", i, c)
		}
	}
	if len(k1.Mgr) != 3 {
		t.Errorf("%d mgr keys, want 3", len(k1.Mgr))
	}
	for _, f := range []string{CephFile, "ceph-mgr/ceph-1.key", "ceph-mgr/ceph-2.key", "ceph-mgr/ceph-3.key"} {
		checkModes(t, filepath.Dir(filepath.Join(dir, f)), filepath.Join(dir, f))
	}
	checkModes(t, dir, filepath.Join(dir, CephFile))
	b, _ := os.ReadFile(filepath.Join(dir, CephFile))
	for _, field := range []string{"fsid", "mon_key", "client_admin_key", "client_bootstrap_osd_key"} {
		if !strings.Contains(string(b), `"`+field+`"`) {
			t.Errorf("ceph.json lacks %s", field)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "ceph-mgr", "ceph-2.key")); string(b) != k1.Mgr["ceph-2"].Base64()+"\n" {
		t.Error("ceph-mgr/ceph-2.key is not the key and a newline")
	}

	ageFiles(t, dir)
	files := snapshot(t, dir)
	k2, err := Ceph(dir, []string{"ceph-1", "ceph-2", "ceph-3"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(k1, k2, sameKeys); diff != "" {
		t.Errorf("second call returned other secrets (-first +second):\n%s", diff)
	}
	if diff := cmp.Diff(files, snapshot(t, dir)); diff != "" {
		t.Errorf("second call touched the files:\n%s", diff)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("dir holds %d entries, want ceph.json and ceph-mgr/ (a temporary file left behind?)", len(ents))
	}
}

// TestCephMachinesChange: adding a storage node adds its key, removing one
// leaves every file alone.
func TestCephMachinesChange(t *testing.T) {
	dir := privateDir(t)
	k1, err := Ceph(dir, []string{"ceph-1", "ceph-2"})
	if err != nil {
		t.Fatal(err)
	}
	ageFiles(t, dir)
	files := snapshot(t, dir)

	k2, err := Ceph(dir, []string{"ceph-2", "ceph-4"})
	if err != nil {
		t.Fatal(err)
	}
	if k2.FSID != k1.FSID || k2.Mon != k1.Mon || k2.Admin != k1.Admin || k2.BootstrapOSD != k1.BootstrapOSD {
		t.Error("the cluster's secrets changed")
	}
	if k2.Mgr["ceph-2"] != k1.Mgr["ceph-2"] {
		t.Error("ceph-2's key changed")
	}
	if _, ok := k2.Mgr["ceph-1"]; ok {
		t.Error("a removed node's key is returned")
	}
	if k2.Mgr["ceph-4"] == (CephKey{}) || k2.Mgr["ceph-4"] == k1.Mgr["ceph-1"] {
		t.Error("the new node has no new key")
	}
	after := snapshot(t, dir)
	if _, ok := after["ceph-mgr/ceph-4.key"]; !ok {
		t.Error("no file for the new node")
	}
	delete(after, "ceph-mgr/ceph-4.key")
	if diff := cmp.Diff(files, after); diff != "" {
		t.Errorf("existing files changed:\n%s", diff)
	}

	// No storage node (yet): the cluster's secrets alone.
	k3, err := Ceph(dir, nil)
	if err != nil || k3.FSID != k1.FSID || len(k3.Mgr) != 0 {
		t.Errorf("Ceph(dir, nil) = %d mgr keys, fsid kept %v, %v", len(k3.Mgr), k3.FSID == k1.FSID, err)
	}
}

func TestCephBadHosts(t *testing.T) {
	for _, tc := range []struct {
		name string
		mgrs []string
	}{
		{"empty", []string{""}},
		{"path", []string{"../x"}},
		{"upper case", []string{"Ceph-1"}},
		{"trailing dash", []string{"ceph-"}},
		{"twice", []string{"ceph-1", "ceph-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "s")
			if _, err := Ceph(dir, tc.mgrs); err == nil {
				t.Error("Ceph succeeded")
			}
			if _, err := os.Stat(dir); err == nil {
				t.Error("the directory was made anyway")
			}
		})
	}
}

// TestCephKeyLayout: a key decodes to Ceph's 28 bytes, type AES, length 16.
func TestCephKeyLayout(t *testing.T) {
	k, err := Ceph(privateDir(t), []string{"ceph-1"})
	if err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string]CephKey{"mon.": k.Mon, "client.admin": k.Admin, "client.bootstrap-osd": k.BootstrapOSD, "mgr.ceph-1": k.Mgr["ceph-1"]} {
		b, err := base64.StdEncoding.DecodeString(key.Base64())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var h struct {
			Type   uint16
			Sec    uint32
			Nsec   uint32
			Len    uint16
			Secret [16]byte
		}
		if len(b) != 28 {
			t.Fatalf("%s: %d bytes, want 28", name, len(b))
		}
		if err := binary.Read(bytes.NewReader(b), binary.LittleEndian, &h); err != nil {
			t.Fatal(err)
		}
		if h.Type != 1 || h.Len != 16 || h.Nsec >= 1e9 || h.Secret == [16]byte{} {
			t.Errorf("%s: type %d, len %d, nsec %d, secret zero %v", name, h.Type, h.Len, h.Nsec, h.Secret == [16]byte{})
		}
		if got := time.Unix(int64(h.Sec), int64(h.Nsec)); !got.Equal(key.Created()) {
			t.Errorf("%s: header time %s, Created %s", name, got, key.Created())
		}
	}
}

// TestParseCephKey: ceph-authtool's own output parses (a key from Ceph's
// documentation), and anything but the AES layout is refused without
// quoting the input.
func TestParseCephKey(t *testing.T) {
	const authtool = "AQAARuRYD1p/AhAAKvtuJtim255+E1sBJNUkcg=="
	k, err := ParseCephKey(authtool)
	if err != nil {
		t.Fatal(err)
	}
	if k.Base64() != authtool || !k.Created().Equal(time.Unix(1491355136, 41900559)) {
		t.Errorf("round trip %v, created %s", k.Base64() == authtool, k.Created().UTC())
	}
	raw, _ := base64.StdEncoding.DecodeString(authtool)
	mod := func(f func(b []byte) []byte) string {
		return base64.StdEncoding.EncodeToString(f(bytes.Clone(raw)))
	}
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "0 bytes"},
		{"not base64", "AQAARuRYD1p/AhAAKvtuJtim255+E1sBJNUk!g==", "not standard base64"},
		{"unpadded", strings.TrimRight(authtool, "="), "not standard base64"},
		{"short", mod(func(b []byte) []byte { return b[:27] }), "27 bytes"},
		{"long", mod(func(b []byte) []byte { return append(b, 0) }), "29 bytes"},
		{"type 0", mod(func(b []byte) []byte { b[0] = 0; return b }), "key type 0"},
		{"length 32", mod(func(b []byte) []byte { b[10] = 32; return b }), "key length 32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCephKey(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseCephKey = %v, want an error saying %q", err, tc.want)
			}
			if tc.in != "" && strings.Contains(err.Error(), tc.in) {
				t.Error("the error quotes the key")
			}
		})
	}
}

func TestCephCorrupt(t *testing.T) {
	good, err := encodeCeph(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	k, err := loadCephBytes(t, good)
	if err != nil {
		t.Fatal(err)
	}
	mon := k.Mon.Base64()
	for _, tc := range []struct {
		name, file, content, want string
	}{
		{"not JSON", CephFile, "{", "unexpected EOF"},
		{"empty", CephFile, "", "EOF"},
		{"unknown field", CephFile, strings.Replace(string(good), `"mon_key"`, `"mon"`, 1), "unknown field"},
		{"no fsid", CephFile, strings.Replace(string(good), k.FSID.String(), "", 1), "fsid is missing"},
		{"upper-case fsid", CephFile, strings.Replace(string(good), k.FSID.String(), strings.ToUpper(k.FSID.String()), 1), "fsid is not a lowercase UUID"},
		{"no mon key", CephFile, strings.Replace(string(good), mon, "", 1), "mon_key is missing"},
		{"bad admin key", CephFile, strings.Replace(string(good), k.Admin.Base64(), mon[:20], 1), "client_admin_key is not a cephx key"},
		{"mgr key empty", "ceph-mgr/ceph-1.key", "", "not a cephx key: 0 bytes"},
		{"mgr key with spaces", "ceph-mgr/ceph-1.key", " " + mon + "\n", "not standard base64"},
		{"mgr key twice", "ceph-mgr/ceph-1.key", mon + "\n" + mon + "\n", "not standard base64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := privateDir(t)
			if err := os.Mkdir(filepath.Join(dir, CephMgrDir), DirMode); err != nil {
				t.Fatal(err)
			}
			if tc.file != CephFile {
				if err := os.WriteFile(filepath.Join(dir, CephFile), good, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(dir, tc.file)
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Ceph(dir, []string{"ceph-1"})
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Ceph = %v, want ErrCorrupt about %s containing %q", err, path, tc.want)
			}
			for _, key := range []string{mon, k.Admin.Base64(), k.BootstrapOSD.Base64()} {
				if strings.Contains(err.Error(), key) {
					t.Error("the error shows a key")
				}
			}
			if b, _ := os.ReadFile(path); string(b) != tc.content {
				t.Error("a damaged file was rewritten")
			}
		})
	}
}

func loadCephBytes(t *testing.T, b []byte) (CephKeys, error) {
	path := filepath.Join(privateDir(t), CephFile)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return loadCeph(path)
}

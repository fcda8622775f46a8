package artifacts

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/image/artifacts/artifactstest"
)

// The embedded key must be HashiCorp's: its primary fingerprint is the
// one hashicorp.com/security publishes.
func TestHashiCorpKey(t *testing.T) {
	kr, err := HashiCorpKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(kr) != 1 {
		t.Fatalf("%d keys, want 1", len(kr))
	}
	if got := fmt.Sprintf("%X", kr[0].PrimaryKey.Fingerprint); got != "C874011F0AB405110D02105534365D9472D7468F" {
		t.Errorf("fingerprint %s, want C874 011F 0AB4 0511 0D02 1055 3436 5D94 72D7 468F", got)
	}
	if _, ok := kr[0].Identities["HashiCorp Security (hashicorp.com/security) <security@hashicorp.com>"]; !ok {
		t.Errorf("identities %v", kr[0].Identities)
	}
}

func TestReleaseNames(t *testing.T) {
	hc := release{name: "vault", version: "1.21.4", source: SourceHashiCorp, base: "https://releases.hashicorp.com"}
	k3s := release{name: "k3s", version: "v1.33.6+k3s1", source: SourceK3s, base: "https://github.com/k3s-io/k3s/releases/download"}
	type names struct{ File, Sums, Sig string }
	for _, tc := range []struct {
		r          release
		arch, role string
		want       names
	}{
		{hc, "amd64", RoleBinary, names{
			"https://releases.hashicorp.com/vault/1.21.4/vault_1.21.4_linux_amd64.zip",
			"https://releases.hashicorp.com/vault/1.21.4/vault_1.21.4_SHA256SUMS",
			"https://releases.hashicorp.com/vault/1.21.4/vault_1.21.4_SHA256SUMS.sig"}},
		{hc, "arm64", RoleBinary, names{
			"https://releases.hashicorp.com/vault/1.21.4/vault_1.21.4_linux_arm64.zip",
			"https://releases.hashicorp.com/vault/1.21.4/vault_1.21.4_SHA256SUMS",
			"https://releases.hashicorp.com/vault/1.21.4/vault_1.21.4_SHA256SUMS.sig"}},
		{k3s, "amd64", RoleBinary, names{
			"https://github.com/k3s-io/k3s/releases/download/v1.33.6%2Bk3s1/k3s",
			"https://github.com/k3s-io/k3s/releases/download/v1.33.6%2Bk3s1/sha256sum-amd64.txt", ""}},
		{k3s, "arm64", RoleBinary, names{
			"https://github.com/k3s-io/k3s/releases/download/v1.33.6%2Bk3s1/k3s-arm64",
			"https://github.com/k3s-io/k3s/releases/download/v1.33.6%2Bk3s1/sha256sum-arm64.txt", ""}},
		{k3s, "arm64", RoleImages, names{
			"https://github.com/k3s-io/k3s/releases/download/v1.33.6%2Bk3s1/k3s-airgap-images-arm64.tar.zst",
			"https://github.com/k3s-io/k3s/releases/download/v1.33.6%2Bk3s1/sha256sum-arm64.txt", ""}},
	} {
		got := names{tc.r.url(tc.r.file(tc.arch, tc.role)), tc.r.url(tc.r.sums(tc.arch)), ""}
		if sig := tc.r.sig(tc.arch); sig != "" {
			got.Sig = tc.r.url(sig)
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%s %s %s -want +got:\n%s", tc.r.name, tc.arch, tc.role, d)
		}
	}
}

func TestParseSums(t *testing.T) {
	a, b := strings.Repeat("a", 64), strings.Repeat("B", 64)
	got, err := parseSums([]byte(a + "  k3s\n\n" + b + " *k3s-airgap-images-amd64.tar.zst\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]string{"k3s": a, "k3s-airgap-images-amd64.tar.zst": strings.ToLower(b)}, got); d != "" {
		t.Errorf("-want +got:\n%s", d)
	}
	for _, bad := range []string{"<html>not found</html>\n", a + "\n", "abc  k3s\n"} {
		if _, err := parseSums([]byte(bad)); err == nil {
			t.Errorf("parseSums(%q) accepted", bad)
		}
	}
}

func TestUnpack(t *testing.T) {
	program := artifactstest.ELF("amd64", "vault")
	for _, tc := range []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{name: "release zip", data: artifactstest.Zip(t, map[string][]byte{"vault": program, "LICENSE.txt": []byte("MPL")})},
		{name: "bare binary", data: program},
		{name: "zip without the program", data: artifactstest.Zip(t, map[string][]byte{"vault-extra": program}), wantErr: `holds no program "vault"`},
		{name: "zip of a script", data: artifactstest.Zip(t, map[string][]byte{"vault": []byte("#!/bin/sh\n")}), wantErr: "not an ELF binary"},
		{name: "not a program", data: artifactstest.Zstd("images"), wantErr: "it is zstd-compressed (a .tar.zst), want a zip archive or an ELF binary"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "vault")
			err := Unpack(writeFile(t, "cached", tc.data), "vault", dst)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Unpack = %v, want %q", err, tc.wantErr)
				}
				if ents, _ := os.ReadDir(filepath.Dir(dst)); len(ents) != 0 {
					t.Errorf("refused unpack left %v", ents)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(dst)
			if err != nil || string(got) != string(program) {
				t.Errorf("unpacked %q, %v", got, err)
			}
			if fi, _ := os.Stat(dst); fi.Mode() != 0o755 {
				t.Errorf("mode %v, want 0755", fi.Mode())
			}
		})
	}
}

func TestRecordRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lab")
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	rec := &record{Format: recordFormat, Entries: []Entry{
		{Name: "k3s", Version: k3sVersion, Arch: "amd64", Role: RoleImages, File: "k3s-airgap-images-amd64.tar.zst",
			SHA256: strings.Repeat("1", 64), Size: 9, URL: "https://example.invalid/k3s", Origin: OriginVerified, At: at},
		{Name: "consul", Version: "1.22.7", Arch: "arm64", Role: RoleBinary, File: "consul",
			SHA256: strings.Repeat("2", 64), Size: 7, Path: "/home/op/consul", Origin: OriginImported, At: at, Chosen: at},
	}}
	if err := rec.write(dir); err != nil {
		t.Fatal(err)
	}
	got, err := readRecord(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(rec.Entries, got.Entries); d != "" || got.Entries[0].Name != "consul" {
		t.Errorf("round trip, sorted by name -want +got:\n%s", d)
	}
	if empty, err := readRecord(t.TempDir()); err != nil || len(empty.Entries) != 0 {
		t.Errorf("absent record = %+v, %v; want empty", empty, err)
	}
}

func TestRecordStrict(t *testing.T) {
	entry := `{"name":"consul","version":"1.22.6","arch":"amd64","role":"binary","file":"consul","sha256":"` +
		strings.Repeat("a", 64) + `","size":1,"origin":"imported","at":"2026-12-01T10:00:00Z"}`
	if _, err := parseRecord([]byte(`{"format":1,"entries":[` + entry + `]}`)); err != nil {
		t.Fatalf("good record refused: %v", err)
	}
	for name, text := range map[string]string{
		"unknown field":  `{"format":1,"entries":[],"extra":1}`,
		"other format":   `{"format":2,"entries":[]}`,
		"trailing data":  `{"format":1,"entries":[]} {}`,
		"recorded twice": `{"format":1,"entries":[` + entry + `,` + entry + `]}`,
		"bad sha256":     `{"format":1,"entries":[` + strings.Replace(entry, strings.Repeat("a", 64), "abc", 1) + `]}`,
		"bad origin":     `{"format":1,"entries":[` + strings.Replace(entry, "imported", "downloaded", 1) + `]}`,
		"no file":        `{"format":1,"entries":[` + strings.Replace(entry, `"file":"consul"`, `"file":""`, 1) + `]}`,
	} {
		if _, err := parseRecord([]byte(text)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, RecordFile), []byte("{"), 0o644)
	if _, err := readRecord(dir); err == nil || !strings.Contains(err.Error(), "fix or remove it") {
		t.Errorf("damaged record: %v", err)
	}
}

package artifacts

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/image/artifacts/artifactstest"
)

// writeFile writes data to a file named name in a new directory.
func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestImport(t *testing.T) {
	type got struct{ Version, Arch, Role, Origin, SHA256 string }
	bare := artifactstest.ELF("amd64", "consul built by hand")
	fetchFirst := func(t *testing.T, f *fixture) {
		if _, err := f.store.Fetch(context.Background(), "consul", "", "amd64"); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name                string
		setup               func(t *testing.T, f *fixture)
		artifact, file      string
		data                func(t *testing.T, f *fixture) []byte
		version, arch, role string
		want                got // SHA256 "" means the file's
		wantErr             error
		wantMsg             []string
	}{
		{name: "zip matching the verified record", setup: fetchFirst, artifact: "consul", file: "consul_1.22.6_linux_amd64.zip",
			data: func(t *testing.T, f *fixture) []byte { return f.consul["amd64"] },
			want: got{consulVersion, "amd64", RoleBinary, OriginVerified, ""}},
		{name: "zip differing from the record", setup: fetchFirst, artifact: "consul", file: "consul_1.22.6_linux_amd64.zip",
			data:    func(t *testing.T, f *fixture) []byte { return rezip(t, "amd64") },
			wantErr: ErrHashMismatch, wantMsg: []string{"the lab's record", "import the file recorded, or remove that entry"}},
		{name: "bare binary against a verified zip", setup: fetchFirst, artifact: "consul", file: "consul",
			data:    func(*testing.T, *fixture) []byte { return bare },
			wantErr: ErrHashMismatch, wantMsg: []string{"is a bare binary, whose sha256 can never match that of the release zip: import consul_1.22.6_linux_amd64.zip instead"}},
		{name: "bare binary, nothing recorded", artifact: "consul", file: "consul",
			data:    func(*testing.T, *fixture) []byte { return bare },
			wantErr: ErrUnverified, wantMsg: []string{"kiln artifacts fetch consul", "pass --version 1.22.6 to take this file unverified"}},
		{name: "bare binary, nothing recorded, version named", artifact: "consul", file: "consul", version: consulVersion,
			data: func(*testing.T, *fixture) []byte { return bare },
			want: got{consulVersion, "amd64", RoleBinary, OriginImported, ""}},
		{name: "against the lock's sha256", artifact: "consul", file: "consul_1.22.6_linux_amd64.zip",
			setup: func(t *testing.T, f *fixture) {
				f.store.Pins["consul"].SHA256 = map[string]map[string]string{"amd64": {RoleBinary: artifactstest.SHA256(f.consul["amd64"])}}
			},
			data:    func(t *testing.T, f *fixture) []byte { return rezip(t, "amd64") },
			wantErr: ErrHashMismatch, wantMsg: []string{"the lock's pin holds", "checked against the lock's sha256 where the lock pins that version"}},
		{name: "matching the lock's sha256", artifact: "consul", file: "consul_1.22.6_linux_amd64.zip",
			setup: func(t *testing.T, f *fixture) {
				f.store.Pins["consul"].SHA256 = map[string]map[string]string{"amd64": {RoleBinary: artifactstest.SHA256(f.consul["amd64"])}}
			},
			data: func(t *testing.T, f *fixture) []byte { return f.consul["amd64"] },
			want: got{consulVersion, "amd64", RoleBinary, OriginImported, ""}},
		{name: "unpinned version, not named", artifact: "consul", file: "consul_1.22.7_linux_arm64.zip",
			data:    func(t *testing.T, f *fixture) []byte { return rezip(t, "arm64") },
			wantErr: ErrUnpinned, wantMsg: []string{"it is consul 1.22.7 by its name, the lock pins 1.22.6; pass --version 1.22.7"}},
		{name: "unpinned version, named", artifact: "consul", file: "consul_1.22.7_linux_arm64.zip", version: "1.22.7",
			data: func(t *testing.T, f *fixture) []byte { return rezip(t, "arm64") },
			want: got{"1.22.7", "arm64", RoleBinary, OriginImported, ""}},
		{name: "named version against the file's name", artifact: "consul", file: "consul_1.22.7_linux_amd64.zip", version: "1.22.8",
			data:    func(t *testing.T, f *fixture) []byte { return rezip(t, "amd64") },
			wantMsg: []string{"it is consul 1.22.7 by its name, not the 1.22.8 asked for"}},
		{name: "arch against the ELF header", artifact: "consul", file: "consul", arch: "amd64",
			data:    func(*testing.T, *fixture) []byte { return artifactstest.ELF("arm64", "consul") },
			wantMsg: []string{"as amd64: it is arm64 by its ELF header"}},
		{name: "not a program", artifact: "consul", file: "consul", arch: "amd64",
			data:    func(*testing.T, *fixture) []byte { return []byte("#!/bin/sh\n") },
			wantMsg: []string{"it is neither a zip archive, an ELF binary nor zstd-compressed, want a zip archive or an ELF binary"}},
		{name: "zip without the program", artifact: "consul", file: "consul.zip",
			data: func(t *testing.T, f *fixture) []byte {
				return artifactstest.Zip(t, map[string][]byte{"LICENSE.txt": nil})
			},
			wantMsg: []string{`holds no program "consul"`}},
		{name: "k3s binary", artifact: "k3s", file: "k3s-arm64", version: k3sVersion,
			data: func(t *testing.T, f *fixture) []byte { return f.k3s["arm64"][RoleBinary] },
			want: got{k3sVersion, "arm64", RoleBinary, OriginImported, ""}},
		{name: "k3s images, arch by name", artifact: "k3s", file: "k3s-airgap-images-arm64.tar.zst", role: RoleImages, version: k3sVersion,
			data: func(t *testing.T, f *fixture) []byte { return f.k3s["arm64"][RoleImages] },
			want: got{k3sVersion, "arm64", RoleImages, OriginImported, ""}},
		{name: "k3s images, arch unknown", artifact: "k3s", file: "images.tar.zst", role: RoleImages,
			data:    func(t *testing.T, f *fixture) []byte { return f.k3s["arm64"][RoleImages] },
			wantMsg: []string{"cannot tell its architecture: pass --arch"}},
		{name: "k3s zip", artifact: "k3s", file: "k3s.zip",
			data:    func(t *testing.T, f *fixture) []byte { return rezip(t, "amd64") },
			wantMsg: []string{"it is a zip archive, want an ELF binary"}},
		{name: "not pinned at all", artifact: "nomad", file: "nomad", arch: "amd64",
			data:    func(*testing.T, *fixture) []byte { return bare },
			wantErr: ErrUnknown, wantMsg: []string{`"nomad" (the lock pins consul, k3s)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if tc.setup != nil {
				tc.setup(t, f)
			}
			before := f.record(t)
			data := tc.data(t, f)
			role := tc.role
			if role == "" {
				role = RoleBinary
			}
			e, err := f.store.Import(tc.artifact, writeFile(t, tc.file, data), tc.version, tc.arch, role)
			if tc.wantErr != nil || tc.wantMsg != nil {
				if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
					t.Fatalf("Import = %v, want %v", err, tc.wantErr)
				}
				for _, s := range tc.wantMsg {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error lacks %q: %v", s, err)
					}
				}
				if tc.wantErr == ErrHashMismatch && !strings.Contains(err.Error(), artifactstest.SHA256(data)) {
					t.Errorf("refusal does not show the file's sha256: %v", err)
				}
				if d := cmp.Diff(before, f.record(t)); d != "" {
					t.Errorf("refused import changed the record:\n%s", d)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tc.want
			if want.SHA256 == "" {
				want.SHA256 = artifactstest.SHA256(data)
			}
			if d := cmp.Diff(want, got{e.Version, e.Arch, e.Role, e.Origin, e.SHA256}); d != "" {
				t.Errorf("Import -want +got:\n%s", d)
			}
			if e.Chosen.IsZero() || e.Size != int64(len(data)) {
				t.Errorf("entry %+v: want Chosen set and size %d", e, len(data))
			}
			if cached, err := os.ReadFile(f.store.Cache.Path(e.SHA256)); err != nil || string(cached) != string(data) {
				t.Errorf("cache holds %d bytes (%v), want the file", len(cached), err)
			}
			if rec := f.record(t); !cmp.Equal(rec[len(rec)-1], e) && !cmp.Equal(rec[0], e) {
				t.Errorf("record %+v lacks %+v", rec, e)
			}
		})
	}
}

// rezip is a release zip other than the fixture's.
func rezip(t *testing.T, arch string) []byte {
	return artifactstest.Zip(t, map[string][]byte{"consul": artifactstest.ELF(arch, "consul rebuilt")})
}

func TestSplitImportName(t *testing.T) {
	for in, want := range map[string][2]string{"consul": {"consul", RoleBinary}, "k3s": {"k3s", RoleBinary}, "k3s-images": {"k3s", RoleImages}} {
		name, role := SplitImportName(in)
		if name != want[0] || role != want[1] || ImportName(name, role) != in {
			t.Errorf("SplitImportName(%q) = %q, %q", in, name, role)
		}
	}
}

package artifacts

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/image/artifacts/artifactstest"
	"github.com/kilnlab/kiln/image/cache"
	"github.com/kilnlab/kiln/image/lock"
)

// Upstream releases are unreachable from here: these tests serve small
// stand-in releases from a local HTTP server (artifactstest) through the
// real fetch + verify code, signed by a key made here in place of
// HashiCorp's.

const (
	consulVersion = "1.22.6"
	k3sVersion    = "v1.33.6+k3s1"
	hcDir         = artifactstest.HashiCorpPath + "/consul/" + consulVersion + "/"
	k3sDir        = artifactstest.K3sPath + "/v1.33.6%2Bk3s1/"
)

type fixture struct {
	up       *artifactstest.Upstream
	key      *openpgp.Entity
	store    *Store
	progress *bytes.Buffer
	consul   map[string][]byte            // release zips by arch
	k3s      map[string]map[string][]byte // files by arch, role
}

// t0 is the fixture clock's start; each reading is a minute later.
var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func newFixture(t *testing.T) *fixture {
	up := artifactstest.New(t)
	key := artifactstest.Key(t)
	f := &fixture{up: up, key: key, progress: &bytes.Buffer{}}
	f.consul = up.HashiCorp(t, key, "consul", consulVersion, "one", "amd64", "arm64")
	f.k3s = up.K3s(t, k3sVersion, "one", "amd64", "arm64")
	clock := t0
	f.store = &Store{
		Pins: map[string]*lock.Artifact{
			"consul": {Name: "consul", Version: consulVersion, Source: SourceHashiCorp, Base: up.URL + artifactstest.HashiCorpPath, Arches: []string{"amd64", "arm64"}},
			"k3s":    {Name: "k3s", Version: k3sVersion, Source: SourceK3s, Base: up.URL + artifactstest.K3sPath, Arches: []string{"amd64", "arm64"}},
		},
		Cache:    &cache.Cache{Dir: t.TempDir()},
		LabDir:   filepath.Join(t.TempDir(), "homelab"),
		Keyring:  openpgp.EntityList{key},
		Progress: f.progress,
		Now:      func() time.Time { clock = clock.Add(time.Minute); return clock },
	}
	return f
}

func (f *fixture) record(t *testing.T) []Entry {
	t.Helper()
	rec, err := readRecord(f.store.LabDir)
	if err != nil {
		t.Fatal(err)
	}
	return rec.Entries
}

func TestFetchHashiCorp(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	got, err := f.store.Fetch(ctx, "consul", "", "amd64")
	if err != nil {
		t.Fatal(err)
	}
	zip := f.consul["amd64"]
	want := []Entry{{Name: "consul", Version: consulVersion, Arch: "amd64", Role: RoleBinary,
		File: "consul_1.22.6_linux_amd64.zip", SHA256: artifactstest.SHA256(zip), Size: int64(len(zip)),
		URL: f.up.URL + hcDir + "consul_1.22.6_linux_amd64.zip", Origin: OriginVerified, At: t0.Add(time.Minute)}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Fetch -want +got:\n%s", d)
	}
	if d := cmp.Diff(want, f.record(t)); d != "" {
		t.Errorf("record -want +got:\n%s", d)
	}
	if n := f.up.Requests.Load(); n != 3 {
		t.Errorf("%d requests, want 3 (SHA256SUMS, .sig, zip)", n)
	}
	if !strings.Contains(f.progress.String(), "consul 1.22.6 amd64 binary: consul_1.22.6_linux_amd64.zip verified against consul_1.22.6_SHA256SUMS (signed by HashiCorp)") {
		t.Errorf("progress:\n%s", f.progress)
	}
	for path, mode := range map[string]os.FileMode{f.store.LabDir: 0o700 | os.ModeDir, recordPath(f.store.LabDir): 0o644} {
		if fi, err := os.Stat(path); err != nil || fi.Mode() != mode {
			t.Errorf("%s: %v %v, want mode %v", path, fi.Mode(), err, mode)
		}
	}

	// The second fetch needs no network.
	f.up.Close()
	again, err := f.store.Fetch(ctx, "consul", "", "amd64")
	if err != nil {
		t.Fatalf("fetch with upstream down: %v", err)
	}
	if d := cmp.Diff(got, again); d != "" {
		t.Errorf("second fetch -first +second:\n%s", d)
	}
	if !strings.Contains(f.progress.String(), "consul 1.22.6 amd64 binary: cached, sha256 "+want[0].SHA256+" (verified)") {
		t.Errorf("progress:\n%s", f.progress)
	}
}

func TestFetchK3s(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	got, err := f.store.Fetch(ctx, "k3s", "", "arm64")
	if err != nil {
		t.Fatal(err)
	}
	bin, images := f.k3s["arm64"][RoleBinary], f.k3s["arm64"][RoleImages]
	at := t0.Add(time.Minute)
	want := []Entry{
		{Name: "k3s", Version: k3sVersion, Arch: "arm64", Role: RoleBinary, File: "k3s-arm64",
			SHA256: artifactstest.SHA256(bin), Size: int64(len(bin)), URL: f.up.URL + k3sDir + "k3s-arm64", Origin: OriginVerified, At: at},
		{Name: "k3s", Version: k3sVersion, Arch: "arm64", Role: RoleImages, File: "k3s-airgap-images-arm64.tar.zst",
			SHA256: artifactstest.SHA256(images), Size: int64(len(images)), URL: f.up.URL + k3sDir + "k3s-airgap-images-arm64.tar.zst", Origin: OriginVerified, At: at.Add(time.Minute)},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Fetch -want +got:\n%s", d)
	}
	if !strings.Contains(f.progress.String(), "(unsigned: k3s publishes no signature)") {
		t.Errorf("progress:\n%s", f.progress)
	}
	f.up.Close()
	if again, err := f.store.Fetch(ctx, "k3s", "", "arm64"); err != nil || !cmp.Equal(got, again) {
		t.Errorf("second fetch with upstream down = %v, %v", again, err)
	}
}

func TestFetchRefused(t *testing.T) {
	other := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name    string
		tamper  func(t *testing.T, f *fixture)
		wantErr error
		want    []string // substrings of the error
	}{
		{name: "signed by another key", wantErr: ErrBadSignature, want: []string{"not the one HashiCorp signed"},
			tamper: func(t *testing.T, f *fixture) {
				sums := artifactstest.Sums(map[string][]byte{"consul_1.22.6_linux_amd64.zip": f.consul["amd64"]})
				f.up.Set(hcDir+"consul_1.22.6_SHA256SUMS", sums)
				f.up.Set(hcDir+"consul_1.22.6_SHA256SUMS.sig", artifactstest.Sign(t, artifactstest.Key(t), sums))
			}},
		{name: "checksum list changed after signing", wantErr: ErrBadSignature,
			tamper: func(t *testing.T, f *fixture) {
				f.up.Set(hcDir+"consul_1.22.6_SHA256SUMS", []byte(other+"  consul_1.22.6_linux_amd64.zip\n"))
			}},
		{name: "no signature", wantErr: cache.ErrNotFound, want: []string{"SHA256SUMS.sig"},
			tamper: func(t *testing.T, f *fixture) { f.up.Delete(hcDir + "consul_1.22.6_SHA256SUMS.sig") }},
		{name: "file differs from the checksum list", wantErr: ErrHashMismatch, want: []string{"fresh download of consul_1.22.6_linux_amd64.zip"},
			tamper: func(t *testing.T, f *fixture) {
				f.up.Set(hcDir+"consul_1.22.6_linux_amd64.zip", artifactstest.Zip(t, map[string][]byte{"consul": artifactstest.ELF("amd64", "evil")}))
			}},
		{name: "lock pins another sha256", wantErr: ErrHashMismatch, want: []string{other, "the lock's pin", "not the one the lock pins"},
			tamper: func(t *testing.T, f *fixture) {
				f.store.Pins["consul"].SHA256 = map[string]map[string]string{"amd64": {RoleBinary: other}}
			}},
		{name: "file not in the list", want: []string{"consul_1.22.6_linux_amd64.zip is not listed in"},
			tamper: func(t *testing.T, f *fixture) {
				sums := artifactstest.Sums(map[string][]byte{"consul_1.22.6_linux_arm64.zip": f.consul["arm64"]})
				f.up.Set(hcDir+"consul_1.22.6_SHA256SUMS", sums)
				f.up.Set(hcDir+"consul_1.22.6_SHA256SUMS.sig", artifactstest.Sign(t, f.key, sums))
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tc.tamper(t, f)
			_, err := f.store.Fetch(context.Background(), "consul", "", "amd64")
			if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Fatalf("Fetch = %v, want %v", err, tc.wantErr)
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error lacks %q: %v", s, err)
				}
			}
			if got := f.record(t); len(got) != 0 {
				t.Errorf("refused fetch recorded %+v", got)
			}
		})
	}
}

// A release whose bytes change after the lab recorded them is refused,
// though upstream signs the new checksum list.
func TestFetchRecordedHashChanged(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	first, err := f.store.Fetch(ctx, "consul", "", "amd64")
	if err != nil {
		t.Fatal(err)
	}
	rezipped := f.up.HashiCorp(t, f.key, "consul", consulVersion, "two", "amd64")["amd64"]
	warm := f.store.Cache
	f.store.Cache = &cache.Cache{Dir: t.TempDir()} // cold: to the network
	_, err = f.store.Fetch(ctx, "consul", "", "amd64")
	if !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("Fetch = %v, want ErrHashMismatch", err)
	}
	for _, s := range []string{first[0].SHA256, artifactstest.SHA256(rezipped), "remove that entry from " + recordPath(f.store.LabDir)} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error lacks %q: %v", s, err)
		}
	}
	if d := cmp.Diff(first, f.record(t)); d != "" {
		t.Errorf("record changed:\n%s", d)
	}
	f.store.Cache = warm
	if _, err := f.store.Fetch(ctx, "consul", "", "amd64"); err != nil {
		t.Errorf("the warm cache still holds what was recorded: %v", err)
	}
}

// TestFetchUnpinnedVersionAndMirror: --version fetches a version the lock
// does not pin, from a mirror, and the lab uses it from then on.
func TestFetchUnpinnedVersionAndMirror(t *testing.T) {
	f := newFixture(t)
	zips := f.up.HashiCorp(t, f.key, "consul", "1.22.7", "one", "amd64")
	// The pin's base is unreachable; --base sends the fetch to the mirror.
	mirror := f.store.Pins["consul"].Base
	f.store.Pins["consul"].Base = "http://127.0.0.1:1/nowhere"
	f.store.Bases = map[string]string{SourceHashiCorp: mirror}
	got, err := f.store.Fetch(context.Background(), "consul", "1.22.7", "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Version != "1.22.7" || got[0].SHA256 != artifactstest.SHA256(zips["amd64"]) || !strings.HasPrefix(got[0].URL, mirror) {
		t.Errorf("Fetch = %+v", got[0])
	}
	// Naming the version is choosing it for the lab, as an import is.
	if v, why, err := f.store.Version("consul", ""); v != "1.22.7" || err != nil {
		t.Errorf("after a fetch of 1.22.7 the lab uses %s (%s), %v", v, why, err)
	}
	if r, err := f.store.Resolve("consul", "amd64", ""); err != nil || r.Version != "1.22.7" || r.Pinned {
		t.Errorf("Resolve = %+v, %v; want 1.22.7, not the pin", r, err)
	}
	for _, bad := range []struct{ name, arch string }{{"nomad", "amd64"}, {"consul", "riscv64"}} {
		if _, err := f.store.Fetch(context.Background(), bad.name, "", bad.arch); !errors.Is(err, ErrUnknown) {
			t.Errorf("Fetch(%s, %s) = %v, want ErrUnknown", bad.name, bad.arch, err)
		}
	}
}

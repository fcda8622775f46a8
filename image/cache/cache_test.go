package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// These tests serve small stand-in files from a local httptest server
// through the real fetch + verify code: no test reaches the internet.

type server struct {
	body     atomic.Pointer[[]byte]
	requests atomic.Int64
	srv      *httptest.Server
}

func newServer(t *testing.T, body []byte) *server {
	s := &server{}
	s.body.Store(&body)
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if r.URL.Path != "/pool/f.deb" {
			http.NotFound(w, r)
			return
		}
		w.Write(*s.body.Load())
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func blobOf(url string, data []byte) Blob {
	sum := sha256.Sum256(data)
	return Blob{Name: "f.deb", URL: url, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
}

func TestGetWarmNeedsNoNetwork(t *testing.T) {
	data := bytes.Repeat([]byte("kiln"), 3<<20) // 12 MiB: progress lines per tenth
	s := newServer(t, data)
	var progress bytes.Buffer
	c := &Cache{Dir: t.TempDir(), Progress: &progress}
	b := blobOf(s.srv.URL+"/pool/f.deb", data)
	ctx := context.Background()

	p, err := c.Get(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
		t.Fatal("cached content differs")
	}
	if n := s.requests.Load(); n != 1 {
		t.Errorf("cold Get: %d requests, want 1", n)
	}
	if !strings.Contains(progress.String(), "fetch f.deb: 12.0 MiB / 12.0 MiB (100%)") ||
		!strings.Contains(progress.String(), "(50%)") {
		t.Errorf("progress:\n%s", progress.String())
	}

	if _, err := c.Get(ctx, b); err != nil {
		t.Fatal(err)
	}
	if n := s.requests.Load(); n != 1 {
		t.Errorf("warm Get: %d requests in total, want still 1", n)
	}
	s.srv.Close()
	if p2, err := c.Get(ctx, b); err != nil || p2 != p {
		t.Errorf("warm Get with the server gone = %q, %v", p2, err)
	}
	if _, err := c.Cached(b); err != nil {
		t.Errorf("Cached: %v", err)
	}
}

func TestGetCorruptCacheIsRefetched(t *testing.T) {
	data := []byte("the real file")
	s := newServer(t, data)
	c := &Cache{Dir: t.TempDir()}
	b := blobOf(s.srv.URL+"/pool/f.deb", data)
	ctx := context.Background()
	p, err := c.Get(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	for _, damage := range [][]byte{[]byte("the fake file"), []byte("short")} {
		if err := os.WriteFile(p, damage, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Cached(b); !errors.Is(err, ErrHashMismatch) {
			t.Errorf("Cached of damaged file = %v, want ErrHashMismatch", err)
		}
		before := s.requests.Load()
		if _, err := c.Get(ctx, b); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
			t.Errorf("after re-fetch: %q", got)
		}
		if n := s.requests.Load() - before; n != 1 {
			t.Errorf("re-fetch made %d requests, want 1", n)
		}
	}
}

func TestGetRefusesMismatch(t *testing.T) {
	good := []byte("pinned content")
	ctx := context.Background()
	for name, served := range map[string][]byte{
		"different bytes": []byte("pinned c0ntent"),
		"too long":        []byte("pinned content and more"),
		"too short":       []byte("pinned"),
	} {
		t.Run(name, func(t *testing.T) {
			s := newServer(t, served)
			c := &Cache{Dir: t.TempDir()}
			b := blobOf(s.srv.URL+"/pool/f.deb", good)
			if _, err := c.Get(ctx, b); !errors.Is(err, ErrHashMismatch) {
				t.Fatalf("Get = %v, want ErrHashMismatch", err)
			}
			// A corrupt cached copy plus a bad server: deleted, fetched
			// once more, refused.
			os.MkdirAll(filepath.Dir(c.Path(b.SHA256)), 0o755)
			os.WriteFile(c.Path(b.SHA256), []byte("junk"), 0o644)
			before := s.requests.Load()
			if _, err := c.Get(ctx, b); !errors.Is(err, ErrHashMismatch) {
				t.Fatalf("Get over corrupt cache = %v, want ErrHashMismatch", err)
			}
			if n := s.requests.Load() - before; n != 1 {
				t.Errorf("%d requests, want exactly 1 re-fetch", n)
			}
			entries, _ := os.ReadDir(filepath.Dir(c.Path(b.SHA256)))
			if len(entries) != 0 {
				t.Errorf("refused download left %d files in the cache", len(entries))
			}
		})
	}
}

func TestGetErrors(t *testing.T) {
	s := newServer(t, []byte("x"))
	c := &Cache{Dir: t.TempDir()}
	ctx := context.Background()
	if _, err := c.Get(ctx, blobOf(s.srv.URL+"/pool/gone.deb", []byte("x"))); !errors.Is(err, ErrNotFound) {
		t.Errorf("404: %v, want ErrNotFound", err)
	}
	for _, sha := range []string{"", "../../etc/passwd", strings.Repeat("g", 64)} {
		if _, err := c.Get(ctx, Blob{Name: "bad", URL: s.srv.URL + "/pool/f.deb", Size: 1, SHA256: sha}); err == nil {
			t.Errorf("sha256 %q accepted", sha)
		}
	}
	if _, err := c.Cached(blobOf("", []byte("absent"))); !errors.Is(err, ErrNotCached) {
		t.Errorf("Cached of absent blob: %v, want ErrNotCached", err)
	}
}

func TestDefaultDir(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/x/cache")
	if d, _ := DefaultDir(); d != "/x/cache/kiln" {
		t.Errorf("DefaultDir = %q", d)
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "/home/u")
	if d, _ := DefaultDir(); d != "/home/u/.cache/kiln" {
		t.Errorf("DefaultDir = %q", d)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 70305560: "67.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := HumanBytes(n); got != want {
			t.Errorf("HumanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// Size 0 is a size not known (an upstream checksum list gives none): the
// sha256 alone decides.
func TestGetUnknownSize(t *testing.T) {
	data := []byte("a release file")
	s := newServer(t, data)
	var progress bytes.Buffer
	c := &Cache{Dir: t.TempDir(), Progress: &progress}
	b := blobOf(s.srv.URL+"/pool/f.deb", data)
	b.Size = 0
	ctx := context.Background()
	p, err := c.Get(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
		t.Errorf("cached %q", got)
	}
	if !strings.Contains(progress.String(), "fetch f.deb: 14 B / 14 B (100%)") {
		t.Errorf("progress (total from Content-Length):\n%s", progress.String())
	}
	if _, err := c.Cached(b); err != nil {
		t.Errorf("Cached: %v", err)
	}
	other := blobOf(s.srv.URL+"/pool/f.deb", []byte("another file"))
	other.Size = 0
	if _, err := c.Get(ctx, other); !errors.Is(err, ErrHashMismatch) {
		t.Errorf("Get of other bytes = %v, want ErrHashMismatch", err)
	}
}

func TestPut(t *testing.T) {
	data := []byte("an imported file")
	src := filepath.Join(t.TempDir(), "consul.zip")
	os.WriteFile(src, data, 0o644)
	c := &Cache{Dir: t.TempDir()}
	b := blobOf("", data)
	p, err := c.Put(src, b)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, data) || p != c.Path(b.SHA256) {
		t.Errorf("Put stored %q at %s", got, p)
	}
	// A damaged copy is replaced; other bytes are refused.
	os.WriteFile(p, []byte("damaged"), 0o644)
	if _, err := c.Put(src, b); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Cached(b); err != nil {
		t.Errorf("after Put over a damaged copy: %v", err)
	}
	if _, err := c.Put(src, blobOf("", []byte("what the pin says"))); !errors.Is(err, ErrHashMismatch) {
		t.Errorf("Put of other bytes = %v, want ErrHashMismatch", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(p)); len(entries) != 1 {
		t.Errorf("refused Put left %d files, want 1", len(entries))
	}
}

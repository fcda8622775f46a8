// Package cache owns kiln's download cache: files named by their sha256,
// fetched over HTTP once with human progress, and verified again before
// every use. A verified cached file needs no network at all, which is what
// lets a second build run offline.
package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// Errors the caller decides on.
var (
	// ErrHashMismatch: content (or size) differs from the pin, after one
	// fresh download.
	ErrHashMismatch = errors.New("sha256 mismatch")
	// ErrNotFound: the server answered 404 or 410 for the URL.
	ErrNotFound = errors.New("not found on the server")
	// ErrNotCached: Cached found no file for the blob.
	ErrNotCached = errors.New("not in the cache")
)

// Blob is one pinned file: where to get it and what it must be.
type Blob struct {
	Name string // for people, e.g. "linux-image-6.1.0-50-amd64_6.1.176-1_amd64.deb"
	URL  string
	// Size 0 means not known (an upstream checksum list gives none): then
	// the sha256 alone decides, and a download is cut at maxUnknownSize.
	Size   int64
	SHA256 string // lower-case hex
}

// maxUnknownSize bounds a download of unknown size, so an endless answer
// cannot fill the disk: the largest such file, k3s's airgap images, is a
// few hundred MiB.
const maxUnknownSize = 4 << 30

// Cache is a directory of verified files. The zero HTTP client is
// http.DefaultClient; a nil Progress discards progress; a nil Log discards
// logs. Safe for concurrent use.
type Cache struct {
	Dir      string
	HTTP     *http.Client
	Progress io.Writer
	Log      *slog.Logger
}

// DefaultDir is $XDG_CACHE_HOME/kiln, else ~/.cache/kiln.
func DefaultDir() (string, error) {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "kiln"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cache dir: %w", err)
	}
	return filepath.Join(home, ".cache", "kiln"), nil
}

// Path is where the blob with this sha256 lives once cached.
func (c *Cache) Path(sha string) string {
	return filepath.Join(c.Dir, "sha256", strings.ToLower(sha))
}

// Cached returns the blob's path if it is cached and still matches its
// pin; ErrNotCached if absent, ErrHashMismatch if present but wrong. It
// never touches the network.
func (c *Cache) Cached(b Blob) (string, error) {
	if err := checkPin(b); err != nil {
		return "", err
	}
	p := c.Path(b.SHA256)
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%s: %w", b.Name, ErrNotCached)
	}
	if err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	defer f.Close()
	if err := verify(f, b); err != nil {
		return "", err
	}
	return p, nil
}

// Get returns the path of the verified blob, downloading it if it is not
// cached. A cached file that no longer matches is deleted and fetched once
// more; a fresh download that does not match is deleted and refused with
// ErrHashMismatch.
func (c *Cache) Get(ctx context.Context, b Blob) (string, error) {
	if p, err := c.reuse(b); p != "" || err != nil {
		return p, err
	}
	return c.download(ctx, b)
}

// Put copies the local file src into the cache as blob b (its URL unused)
// and returns its path, verified as a download is: this is how a file
// obtained some other way enters the cache.
func (c *Cache) Put(src string, b Blob) (string, error) {
	if p, err := c.reuse(b); p != "" || err != nil {
		return p, err
	}
	f, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	defer f.Close()
	return c.store(b, f, fmt.Sprintf("copy of %s from %s", b.Name, src))
}

// reuse returns the path of the blob if it is cached and verifies, or ""
// if it is not cached. A cached file that no longer matches is deleted.
func (c *Cache) reuse(b Blob) (string, error) {
	p, err := c.Cached(b)
	switch {
	case err == nil:
		return p, nil
	case errors.Is(err, ErrHashMismatch):
		c.log().Warn("cached file is corrupt, replacing it", "name", b.Name, "path", c.Path(b.SHA256), "err", err)
		if err := os.Remove(c.Path(b.SHA256)); err != nil {
			return "", fmt.Errorf("cache: %w", err)
		}
	case !errors.Is(err, ErrNotCached):
		return "", err
	}
	return "", nil
}

func (c *Cache) download(ctx context.Context, b Blob) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.URL, nil)
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", b.Name, err)
	}
	client := c.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", b.Name, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return "", fmt.Errorf("fetch %s: %s: %w", b.Name, b.URL, ErrNotFound)
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("fetch %s: %s: %s", b.Name, b.URL, resp.Status)
	}
	// Read one byte past the pin so an oversized answer is caught without
	// storing an endless stream.
	limit, total := b.Size, b.Size
	if b.Size == 0 {
		limit, total = maxUnknownSize, max(resp.ContentLength, 0)
	}
	pw := &progress{w: c.Progress, name: b.Name, total: total}
	defer pw.finish()
	return c.store(b, io.TeeReader(io.LimitReader(resp.Body, limit+1), pw), fmt.Sprintf("fresh download of %s from %s", b.Name, b.URL))
}

// store writes r to a temporary file beside the blob's place, verifies it
// and renames it into place; what says where the bytes come from.
func (c *Cache) store(b Blob, r io.Reader, what string) (string, error) {
	final := c.Path(b.SHA256)
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(final), ".part-*")
	if err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	_, err = io.Copy(tmp, r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if err := c.verifyFile(tmp.Name(), b); err != nil {
		return "", fmt.Errorf("%s refused: %w", what, err)
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	c.log().Debug("stored", "name", b.Name, "from", what, "path", final)
	return final, nil
}

func (c *Cache) verifyFile(path string, b Blob) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return verify(f, b)
}

// verify checks size and sha256 of r against the pin.
func verify(r io.Reader, b Blob) error {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return fmt.Errorf("hashing %s: %w", b.Name, err)
	}
	if b.Size != 0 && n != b.Size {
		return fmt.Errorf("%s: %d bytes, pinned %d: %w", b.Name, n, b.Size, ErrHashMismatch)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != strings.ToLower(b.SHA256) {
		return fmt.Errorf("%s: sha256 %s, pinned %s: %w", b.Name, got, b.SHA256, ErrHashMismatch)
	}
	return nil
}

// checkPin refuses a blob whose sha256 could escape the cache directory or
// name nothing.
func checkPin(b Blob) error {
	if len(b.SHA256) != 64 || strings.Trim(strings.ToLower(b.SHA256), "0123456789abcdef") != "" {
		return fmt.Errorf("cache: %s: bad sha256 pin %q", b.Name, b.SHA256)
	}
	if b.Size < 0 {
		return fmt.Errorf("cache: %s: negative size", b.Name)
	}
	return nil
}

func (c *Cache) log() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}

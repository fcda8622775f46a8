package debian

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/kilnlab/kiln/image/cache"
	"github.com/ulikunitz/xz"
)

// Client reads one suite of a Debian mirror. Packages indexes go through
// the cache, named by the sha256 the signed InRelease gives.
type Client struct {
	Mirror     string   // e.g. http://deb.debian.org/debian
	Suite      string   // e.g. bookworm
	Components []string // e.g. main, non-free-firmware
	Verifier   Verifier // GPGV{} if nil
	HTTP       *http.Client
	Cache      *cache.Cache
	Log        *slog.Logger
}

// URL is the mirror URL of a path relative to the mirror root.
func (c *Client) URL(path string) string {
	return strings.TrimRight(c.Mirror, "/") + "/" + strings.TrimLeft(path, "/")
}

// Release downloads dists/<suite>/InRelease, verifies its signature and
// parses the signed text. It is never cached: it is what says what is
// current.
func (c *Client) Release(ctx context.Context) (*Release, error) {
	url := c.URL("dists/" + c.Suite + "/InRelease")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("InRelease: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("InRelease: %s: %s", url, resp.Status)
	}
	signed, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("InRelease: %w", err)
	}
	v := c.Verifier
	if v == nil {
		v = GPGV{}
	}
	text, err := v.Verify(ctx, signed)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	return ParseRelease(text)
}

// Index downloads, verifies and parses main/binary-<arch>/Packages (xz,
// else gz) of every component and indexes them for arch.
func (c *Client) Index(ctx context.Context, rel *Release, arch string) (*Index, error) {
	var all []Package
	for _, comp := range c.Components {
		pkgs, err := c.packages(ctx, rel, comp, arch)
		if err != nil {
			return nil, err
		}
		all = append(all, pkgs...)
	}
	return NewIndex(arch, all), nil
}

func (c *Client) packages(ctx context.Context, rel *Release, comp, arch string) ([]Package, error) {
	base := comp + "/binary-" + arch + "/Packages"
	for _, ext := range []string{".xz", ".gz"} {
		h, ok := rel.SHA256[base+ext]
		if !ok {
			continue
		}
		path := "dists/" + c.Suite + "/" + base + ext
		if rel.AcquireByHash {
			// by-hash names cannot change under us if the mirror
			// updates between InRelease and this request.
			path = "dists/" + c.Suite + "/" + comp + "/binary-" + arch + "/by-hash/SHA256/" + h.SHA256
		}
		file, err := c.Cache.Get(ctx, cache.Blob{Name: c.Suite + "/" + base + ext, URL: c.URL(path), Size: h.Size, SHA256: h.SHA256})
		if err != nil {
			return nil, err
		}
		c.log().Debug("index", "path", base+ext, "sha256", h.SHA256)
		return parseCompressed(file, ext)
	}
	return nil, fmt.Errorf("%s: %s(.xz|.gz) not listed in the signed Release", c.Suite, base)
}

func parseCompressed(file, ext string) ([]Package, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader
	if ext == ".xz" {
		r, err = xz.NewReader(f)
	} else {
		r, err = gzip.NewReader(f)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return ParsePackages(r)
}

func (c *Client) log() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}

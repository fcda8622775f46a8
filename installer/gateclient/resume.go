package gateclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kilnlab/kiln/image/bundle"
	"github.com/kilnlab/kiln/pxe/api"
)

// DefaultResume bounds how long the installer waits for a gate that went
// away mid-install (a power cut, a restart) before the install fails. The
// gate boots again from its card with the same files and, in its state,
// the same install token: a download picks up where it stopped and the
// result is delivered late rather than lost.
const DefaultResume = 5 * time.Minute

// NewHTTP is the installer's HTTP client: TCP keepalive probes every few
// seconds on an idle connection, so that a gate that vanished (its power
// cut: no FIN, no RST) is noticed in seconds, not after the kernel's two
// hours, and a gate that came back answers the probe with a reset.
func NewHTTP() *http.Client {
	d := &net.Dialer{
		Timeout:         10 * time.Second,
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 5 * time.Second, Interval: 5 * time.Second, Count: 3},
	}
	return &http.Client{Transport: &http.Transport{
		DialContext:           d.DialContext,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       30 * time.Second,
	}}
}

func (c *Client) resumeFor() time.Duration {
	if c.Resume != 0 {
		return c.Resume
	}
	return DefaultResume
}

// resumer is a bundle file's body that, when the connection breaks, asks
// the gate again for the rest (an HTTP range) until the gate answers or
// the client's Resume has passed since the break.
type resumer struct {
	c    *Client
	ctx  context.Context
	f    bundle.File
	body io.ReadCloser
	off  int64
}

func (r *resumer) Read(p []byte) (int, error) {
	n, err := r.body.Read(p)
	r.off += int64(n)
	if err == nil || (errors.Is(err, io.EOF) && r.off == r.f.Size) || r.ctx.Err() != nil {
		return n, err
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	if rerr := r.reopen(err); rerr != nil {
		return n, rerr
	}
	return n, nil
}

func (r *resumer) Close() error { return r.body.Close() }

// reopen replaces the broken body by the rest of the file, trying with
// growing pauses until the client's Resume has passed.
func (r *resumer) reopen(cause error) error {
	r.body.Close()
	deadline := time.Now().Add(r.c.resumeFor())
	pause := time.Second
	for {
		select {
		case <-r.ctx.Done():
			return r.ctx.Err()
		case <-time.After(pause):
		}
		body, err := r.c.openAt(r.ctx, r.f, r.off)
		if err == nil {
			r.body = body
			return nil
		}
		if errors.Is(err, ErrForbidden) || time.Now().After(deadline) {
			return fmt.Errorf("fetch %s: broken at byte %d (%w), not resumed: %w", r.f.Path, r.off, cause, err)
		}
		pause = min(2*pause, 5*time.Second)
	}
}

// openAt asks for f from byte off on: the whole file at 0, else a range
// the gate must answer as one (206, starting at off).
func (c *Client) openAt(ctx context.Context, f bundle.File, off int64) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+api.PathFiles+escapePath(f.Path), nil)
	if err != nil {
		return nil, err
	}
	if off > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-")
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", f.Path, err)
	}
	if err := status(resp); err != nil {
		resp.Body.Close()
		return nil, fmt.Errorf("fetch %s: %w", f.Path, err)
	}
	want := f.Size - off
	if off > 0 {
		cr := resp.Header.Get("Content-Range")
		if resp.StatusCode != http.StatusPartialContent || !strings.HasPrefix(cr, fmt.Sprintf("bytes %d-", off)) {
			resp.Body.Close()
			return nil, fmt.Errorf("fetch %s from byte %d: the gate answered %s %q, not that range", f.Path, off, resp.Status, cr)
		}
	}
	if resp.ContentLength >= 0 && resp.ContentLength != want {
		resp.Body.Close()
		return nil, fmt.Errorf("fetch %s: gate sends %d bytes from byte %d, manifest says %d in all", f.Path, resp.ContentLength, off, f.Size)
	}
	return resp.Body, nil
}

// postRetried posts v like post, and while the gate cannot be reached or
// answers 5xx, tries again with growing pauses until the client's Resume
// has passed. A refusal (4xx) is final.
func (c *Client) postRetried(ctx context.Context, u string, v any) error {
	deadline := time.Now().Add(c.resumeFor())
	pause := time.Second
	for {
		err := c.post(ctx, u, v)
		var se *statusError
		if err == nil || errors.Is(err, ErrForbidden) || (errors.As(err, &se) && se.code < 500) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
		pause = min(2*pause, 5*time.Second)
	}
}

// Package gateclient owns the installer's and the role OS's side of the
// gate's HTTP API: fetching the install manifest with the one-time token,
// streaming bundle files, and reporting progress, the result, the first
// boot, its phases and the services' health. Everything it receives is checked before use: it comes from the
// network.
package gateclient

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/kilnlab/kiln/image/bundle"
	"github.com/kilnlab/kiln/pxe/api"
)

// Sentinel errors the installer decides on.
var (
	// ErrForbidden: the gate refused the token (used twice, wrong MAC,
	// machine not in state install). The install must stop loudly.
	ErrForbidden = errors.New("gate refused the install credential")
	// ErrBadManifest: the manifest is not usable as it is.
	ErrBadManifest = errors.New("invalid install manifest")
)

// maxManifest bounds what is read of a manifest: a plan of one machine is
// a few KiB.
const maxManifest = 1 << 20

// DecodeManifest parses and checks a manifest: every file the installer
// needs is named by a clean relative path with a SHA-256, and the machine
// has a name and a MAC.
func DecodeManifest(r io.Reader) (api.InstallManifest, error) {
	var m api.InstallManifest
	dec := json.NewDecoder(io.LimitReader(r, maxManifest))
	if err := dec.Decode(&m); err != nil {
		return api.InstallManifest{}, fmt.Errorf("%w: %w", ErrBadManifest, err)
	}
	if m.Machine.Name == "" || m.Machine.MAC == "" {
		return api.InstallManifest{}, fmt.Errorf("%w: machine without name or mac", ErrBadManifest)
	}
	for _, k := range []string{api.FileESP, api.FileRoot, api.FileState, api.FileGPTMBR} {
		f, ok := m.Files[k]
		if !ok {
			return api.InstallManifest{}, fmt.Errorf("%w: no %s file", ErrBadManifest, k)
		}
		if err := checkFile(f); err != nil {
			return api.InstallManifest{}, fmt.Errorf("%w: %s: %w", ErrBadManifest, k, err)
		}
	}
	return m, nil
}

func checkFile(f bundle.File) error {
	if f.Path == "" || path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || strings.HasPrefix(f.Path, "../") || f.Path == ".." {
		return fmt.Errorf("path %q is not a clean relative path", f.Path)
	}
	if f.Size < 0 {
		return fmt.Errorf("negative size %d", f.Size)
	}
	if b, err := hex.DecodeString(f.SHA256); err != nil || len(b) != 32 {
		return fmt.Errorf("sha256 %q is not 64 hex digits", f.SHA256)
	}
	return nil
}

// Client talks to one gate for one machine.
type Client struct {
	Base  string // http://host:port
	MAC   string
	Token string
	HTTP  *http.Client
	// Resume bounds the wait for a gate that went away mid-download or
	// as the result is sent (DefaultResume when zero).
	Resume time.Duration
}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

// endpoint is the address of an API route (an api.Path* prefix) for this
// machine, with the token when the route takes one.
func (c *Client) endpoint(route string, token bool) string {
	u := c.Base + route + url.PathEscape(c.MAC)
	if token {
		u += "?token=" + url.QueryEscape(c.Token)
	}
	return u
}

// Manifest fetches and checks this machine's install manifest.
func (c *Client) Manifest(ctx context.Context) (api.InstallManifest, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.endpoint(api.PathInstall, true), nil)
	if err != nil {
		return api.InstallManifest{}, err
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return api.InstallManifest{}, fmt.Errorf("fetch manifest: %w", redactErr(err))
	}
	defer resp.Body.Close()
	if err := status(resp); err != nil {
		return api.InstallManifest{}, fmt.Errorf("fetch manifest: %w", err)
	}
	return DecodeManifest(resp.Body)
}

// Open streams one bundle file. The caller closes the body and checks the
// bytes against the manifest's SHA-256; a length other than f.Size is an
// error here already. A connection that breaks mid-file is resumed where
// it stopped (resumer).
func (c *Client) Open(ctx context.Context, f bundle.File) (io.ReadCloser, error) {
	if err := checkFile(f); err != nil {
		return nil, err
	}
	body, err := c.openAt(ctx, f, 0)
	if err != nil {
		return nil, err
	}
	return &resumer{c: c, ctx: ctx, f: f, body: body}, nil
}

// Fetch reads a whole small bundle file (gptmbr.bin) and checks its hash.
func (c *Client) Fetch(ctx context.Context, f bundle.File, limit int64) ([]byte, error) {
	if f.Size > limit {
		return nil, fmt.Errorf("fetch %s: %d bytes, at most %d", f.Path, f.Size, limit)
	}
	rc, err := c.Open(ctx, f)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", f.Path, err)
	}
	if err := Verify(b, f); err != nil {
		return nil, err
	}
	return b, nil
}

// Progress reports an install phase.
func (c *Client) Progress(ctx context.Context, p api.Progress) error {
	return c.post(ctx, c.endpoint(api.PathProgress, true), p)
}

// Result reports the end of the install, retried while the gate cannot
// be reached: a result lost would leave the machine in installing.
func (c *Client) Result(ctx context.Context, r api.Result) error {
	return c.postRetried(ctx, c.endpoint(api.PathResult, true), r)
}

// Booted reports the role OS's first boot; it needs no token, but a
// client of the gate's TLS port with the machine's certificate (TLSClient).
func (c *Client) Booted(ctx context.Context, b api.Booted) error {
	return c.post(ctx, c.endpoint(api.PathBooted, false), b)
}

// Phase reports a first-boot phase's start, a task's progress or the
// phase's result, on the gate's TLS port like Booted. The free text is
// made to fit the gate's contract first (api.MaxText, no control
// characters but lines and tabs): a failing command's long or binary
// output must not get its phase's failure refused.
func (c *Client) Phase(ctx context.Context, p api.Phase) error {
	p.Message, p.Error = fitText(p.Message), fitText(p.Error)
	return c.post(ctx, c.endpoint(api.PathPhase, false), p)
}

// Health reports the machine's services' health, on the gate's TLS port
// like Booted; details are made to fit as in Phase. The gate's answer
// says whether it wants the machine's next boot to be a netboot.
func (c *Client) Health(ctx context.Context, h api.Health) (api.HealthAnswer, error) {
	out := api.Health{Services: make([]api.Service, len(h.Services)), NetbootNext: h.NetbootNext, Boot: h.Boot} // [] in JSON, not null
	for i, sv := range h.Services {
		sv.Detail = fitText(sv.Detail)
		out.Services[i] = sv
	}
	var a api.HealthAnswer
	err := c.postFor(ctx, c.endpoint(api.PathHealth, false), out, &a)
	return a, err
}

// fitText makes s what the gate accepts as free text: valid UTF-8 without
// control characters other than newline and tab, at most api.MaxText
// bytes. It keeps the end of a long text, where a command's output says
// what went wrong.
func fitText(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || (unicode.IsControl(r) && r != '\n' && r != '\t') {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	if len(s) <= api.MaxText {
		return s
	}
	const mark = "..."
	tail := s[len(s)-(api.MaxText-len(mark)):]
	for len(tail) > 0 && !utf8.RuneStart(tail[0]) {
		tail = tail[1:]
	}
	return mark + tail
}

func (c *Client) post(ctx context.Context, u string, v any) error {
	return c.postFor(ctx, u, v, nil)
}

// postFor posts v as JSON; a 200 answer is decoded into answer (when not
// nil), a 204 leaves it as it was.
func (c *Client) postFor(ctx context.Context, u string, v, answer any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http().Do(req)
	if err != nil {
		return fmt.Errorf("post %s: %w", redact(u), redactErr(err))
	}
	defer resp.Body.Close()
	if err := status(resp); err != nil {
		return fmt.Errorf("post %s: %w", redact(u), err)
	}
	if answer != nil && resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(answer); err != nil {
			return fmt.Errorf("post %s: the gate's answer: %w", redact(u), err)
		}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return nil
}

func status(resp *http.Response) error {
	switch {
	case resp.StatusCode == http.StatusForbidden:
		return ErrForbidden
	case resp.StatusCode/100 != 2:
		return &statusError{code: resp.StatusCode, status: resp.Status}
	}
	return nil
}

// statusError is an answer of the gate other than 2xx and 403.
type statusError struct {
	code   int
	status string
}

func (e *statusError) Error() string { return "gate answered " + e.status }

// redact keeps the token out of logs and console lines.
func redact(u string) string {
	base, _, _ := strings.Cut(u, "?")
	return base
}

func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

// VaultUnseal asks the gate to unseal this machine's Vault (initialising
// the lab's Vault the first time). The gate's answer says whether it is
// sealed still and why; a gate that failed to unseal it answers 502 with
// its reason, which is returned as the error.
func (c *Client) VaultUnseal(ctx context.Context) (api.VaultUnseal, error) {
	u := c.endpoint(api.PathVaultUnseal, false)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return api.VaultUnseal{}, err
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return api.VaultUnseal{}, fmt.Errorf("post %s: %w", redact(u), redactErr(err))
	}
	defer resp.Body.Close()
	var v api.VaultUnseal
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusBadGateway {
		if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&v); err != nil {
			return v, fmt.Errorf("post %s: %w", redact(u), err)
		}
		if resp.StatusCode == http.StatusBadGateway {
			return v, fmt.Errorf("the gate could not unseal the Vault: %s", v.Message)
		}
		return v, nil
	}
	return v, fmt.Errorf("post %s: %w", redact(u), status(resp))
}

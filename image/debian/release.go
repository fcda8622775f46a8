package debian

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// DebianKeyring is the debian-archive-keyring package's keyring.
const DebianKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// ErrBadSignature: gpgv did not accept the InRelease signature.
var ErrBadSignature = errors.New("InRelease signature not accepted")

// Verifier checks a clearsigned file and returns only the text that the
// signature covers.
type Verifier interface {
	Verify(ctx context.Context, signed []byte) ([]byte, error)
}

// GPGV verifies with Debian's gpgv against Keyring (DebianKeyring if
// empty). gpgv's --output writes the signed text, so nothing outside the
// signature can reach the parser.
type GPGV struct {
	Keyring string
}

// Verify runs gpgv --keyring K --output OUT IN.
func (g GPGV) Verify(ctx context.Context, signed []byte) ([]byte, error) {
	keyring := g.Keyring
	if keyring == "" {
		keyring = DebianKeyring
	}
	dir, err := os.MkdirTemp("", "kiln-gpgv-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	in, out := filepath.Join(dir, "InRelease"), filepath.Join(dir, "Release")
	if err := os.WriteFile(in, signed, 0o600); err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "gpgv", "--keyring", keyring, "--output", out, in)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return nil, fmt.Errorf("%w: gpgv --keyring %s: %s", ErrBadSignature, keyring, strings.TrimSpace(stderr.String()))
		}
		return nil, fmt.Errorf("gpgv (Debian package gpgv): %w", err)
	}
	return os.ReadFile(out)
}

// Release is the verified content of a suite's InRelease.
type Release struct {
	Suite         string
	Codename      string
	Version       string
	Date          string
	AcquireByHash bool
	Architectures []string
	Components    []string
	// SHA256 maps index paths (main/binary-amd64/Packages.xz) to their pin.
	SHA256 map[string]FileHash
}

// FileHash is one line of a Release file's SHA256 field.
type FileHash struct {
	Size   int64
	SHA256 string
}

// ParseRelease parses verified Release text.
func ParseRelease(text []byte) (*Release, error) {
	var first Paragraph
	err := ReadParagraphs(bytes.NewReader(text), func(p Paragraph) error {
		if first == nil {
			first = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("Release: %w", err)
	}
	if first == nil {
		return nil, fmt.Errorf("%w: empty Release", ErrSyntax)
	}
	r := &Release{
		Suite:         first["Suite"],
		Codename:      first["Codename"],
		Version:       first["Version"],
		Date:          first["Date"],
		AcquireByHash: strings.EqualFold(first["Acquire-By-Hash"], "yes"),
		Architectures: strings.Fields(first["Architectures"]),
		Components:    strings.Fields(first["Components"]),
		SHA256:        map[string]FileHash{},
	}
	for _, line := range strings.Split(first["Sha256"], "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		size, err := strconv.ParseInt(safeIndex(f, 1), 10, 64)
		if len(f) != 3 || err != nil || !isHexSHA256(strings.ToLower(f[0])) {
			return nil, fmt.Errorf("%w: Release SHA256 line %q", ErrSyntax, line)
		}
		r.SHA256[f[2]] = FileHash{Size: size, SHA256: strings.ToLower(f[0])}
	}
	if len(r.SHA256) == 0 {
		return nil, fmt.Errorf("%w: Release has no SHA256 field", ErrSyntax)
	}
	return r, nil
}

func safeIndex(f []string, i int) string {
	if i < len(f) {
		return f[i]
	}
	return ""
}

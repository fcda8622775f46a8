package flash

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/kilnlab/kiln/image/hosttool"
)

// xzMagic starts every .xz file; it decides, not the file name.
var xzMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0}

func isXZ(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("image: %w", err)
	}
	defer f.Close()
	head := make([]byte, len(xzMagic))
	n, _ := io.ReadFull(f, head)
	return bytes.Equal(head[:n], xzMagic), nil
}

// ImageSize is the length of the image's content: the file's size, or for
// an .xz the uncompressed size from its index (xz --robot --list), so that
// a card too small is refused before anything is decompressed or written.
func ImageSize(ctx context.Context, path string) (int64, error) {
	xz, err := isXZ(path)
	if err != nil {
		return 0, err
	}
	if !xz {
		fi, err := os.Stat(path)
		if err != nil {
			return 0, fmt.Errorf("image: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return 0, fmt.Errorf("image %s: not a regular file", path)
		}
		return fi.Size(), nil
	}
	var out bytes.Buffer
	if err := hosttool.Run(ctx, hosttool.Cmd{Name: "xz", Args: []string{"--robot", "--list", path}, Stdout: &out}); err != nil {
		return 0, fmt.Errorf("image: %w", err)
	}
	return parseXZList(out.String())
}

// parseXZList reads the uncompressed size from the "totals" line of
// xz --robot --list: totals STREAMS BLOCKS COMPRESSED UNCOMPRESSED ...
func parseXZList(s string) (int64, error) {
	for _, line := range strings.Split(s, "\n") {
		f := strings.Split(line, "\t")
		if f[0] == "totals" && len(f) > 4 {
			n, err := strconv.ParseInt(f[4], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("xz --list: uncompressed size %q: %w", f[4], err)
			}
			return n, nil
		}
	}
	return 0, errors.New("xz --list: no totals line")
}

// openImage streams the image's content: the file, or `xz -dc` of it.
// Close reports a decompression failure.
func openImage(ctx context.Context, path string) (io.ReadCloser, error) {
	xz, err := isXZ(path)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	if !xz {
		return f, nil
	}
	if err := hosttool.Check("xz"); err != nil {
		f.Close()
		return nil, fmt.Errorf("image: %w", err)
	}
	cmd := exec.CommandContext(ctx, "xz", "-dc")
	cmd.Stdin = f
	cmd.Env = hosttool.Env(0)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		f.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("xz: %w", err)
	}
	return &xzReader{ReadCloser: out, cmd: cmd, file: f, stderr: &stderr}, nil
}

type xzReader struct {
	io.ReadCloser
	cmd    *exec.Cmd
	file   *os.File
	stderr *bytes.Buffer
	eof    bool
}

// Read turns xz's failure into the stream's error at its end, so a
// corrupt .xz is never mistaken for a short image.
func (x *xzReader) Read(b []byte) (int, error) {
	n, err := x.ReadCloser.Read(b)
	if err == io.EOF && !x.eof {
		x.eof = true
		if werr := x.cmd.Wait(); werr != nil {
			return n, fmt.Errorf("xz -dc: %w: %s", werr, bytes.TrimSpace(x.stderr.Bytes()))
		}
	}
	return n, err
}

func (x *xzReader) Close() error {
	x.ReadCloser.Close()
	if !x.eof {
		x.eof = true
		x.cmd.Wait() // killed or closed early: its error says nothing new
	}
	return x.file.Close()
}

package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"
)

// DefaultWaitTimeout is WaitFor's deadline when its context has none: a
// hung VM must never hang a test run.
const DefaultWaitTimeout = 15 * time.Minute

// pollInterval is how often a serial log is read for new lines.
const pollInterval = 100 * time.Millisecond

// Errors of WaitFor.
var (
	// ErrVMStopped: the VM stopped for good and its serial log does not
	// hold the marker.
	ErrVMStopped = errors.New("vm stopped")
	// ErrDeadEnd: a line matched one of the VM's FailOn patterns first.
	ErrDeadEnd = errors.New("vm reached a dead end")
)

// DeadEnds are serial lines after which a netbooting VM will never print
// anything useful: SeaBIOS and OVMF out of boot options, a kernel panic.
func DeadEnds() []*regexp.Regexp {
	return []*regexp.Regexp{
		regexp.MustCompile(`No bootable device`),
		regexp.MustCompile(`Kernel panic - not syncing`),
		regexp.MustCompile(`^Shell> `),
	}
}

// logScanner reads complete lines appended to a growing file.
type logScanner struct {
	path    string
	off     int64
	partial []byte
}

// lines returns the complete lines appended since the last call, without
// their line ends; with flush, a trailing partial line too.
func (s *logScanner) lines(flush bool) ([]string, error) {
	f, err := os.Open(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf, err := io.ReadAll(io.NewSectionReader(f, s.off, 1<<62))
	if err != nil {
		return nil, err
	}
	s.off += int64(len(buf))
	data := append(s.partial, buf...)
	var out []string
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		out = append(out, strings.TrimRight(string(data[:i]), "\r"))
		data = data[i+1:]
	}
	s.partial = append([]byte(nil), data...)
	if flush && len(s.partial) > 0 {
		out = append(out, strings.TrimRight(string(s.partial), "\r"))
		s.partial = nil
	}
	return out, nil
}

// waitForLine scans path from offset from until a line matches re, a line
// matches one of failOn, ctx ends, or stopped is closed and the file holds
// no match. It returns the matching line.
func waitForLine(ctx context.Context, path string, from int64, re *regexp.Regexp, failOn []*regexp.Regexp, stopped <-chan struct{}) (string, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultWaitTimeout)
		defer cancel()
	}
	s := &logScanner{path: path, off: from}
	for {
		// Read stopped before the file, so the last read sees all output.
		isStopped := closed(stopped)
		lines, err := s.lines(isStopped)
		if err != nil {
			return "", fmt.Errorf("serial log: %w", err)
		}
		for _, l := range lines {
			if re.MatchString(l) {
				return l, nil
			}
			for _, f := range failOn {
				if f.MatchString(l) {
					return l, fmt.Errorf("waiting for %q in %s: %w: %q", re, path, ErrDeadEnd, l)
				}
			}
		}
		if isStopped {
			return "", fmt.Errorf("waiting for %q in %s: %w", re, path, ErrVMStopped)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for %q in %s: %w", re, path, ctx.Err())
		case <-stopped:
		case <-time.After(pollInterval):
		}
	}
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// tailLines returns the last n lines of the file at path (at most the last
// 256 KiB are read).
func tailLines(path string, n int) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	const maxTail = 256 << 10
	off := max(fi.Size()-maxTail, 0)
	buf, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return "", err
	}
	lines := strings.Split(strings.TrimRight(string(buf), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n"), nil
}

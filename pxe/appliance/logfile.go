package appliance

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// lateFile is the writer behind /perm/logs/gate.log: /perm is mounted only
// after a few phases ran, so it keeps the first lines in memory (up to
// earlyMax) and writes them out when the file opens.
type lateFile struct {
	mu    sync.Mutex
	early bytes.Buffer
	f     *os.File
	path  string
	size  int64 // of f
}

const (
	earlyMax = 256 << 10
	// logMax rotates gate.log to gate.log.1 (the one before dropped)
	// once larger, at boot and while the gate runs: /perm is 256 MiB and
	// holds the machine states too, and a flood of requests must not
	// fill it. The log takes at most twice logMax.
	logMax = 16 << 20
)

func (l *lateFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		if l.size+int64(len(p)) > logMax {
			if err := l.rotate(); err != nil {
				return 0, err
			}
		}
		n, err := l.f.Write(p)
		l.size += int64(n)
		return n, err
	}
	if l.early.Len()+len(p) <= earlyMax {
		l.early.Write(p)
	}
	return len(p), nil
}

// open starts writing to path (idempotent), after the lines kept so far.
func (l *lateFile) open(path string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if fi, err := os.Stat(path); err == nil && fi.Size() > logMax {
		if err := os.Rename(path, path+".1"); err != nil {
			return fmt.Errorf("rotate log: %w", err)
		}
	}
	l.path = path
	if err := l.reopen(); err != nil {
		return err
	}
	n, err := io.Copy(l.f, &l.early)
	l.size += n
	return err
}

// reopen opens l.path for appending, its size counted.
func (l *lateFile) reopen() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	l.f, l.size = f, fi.Size()
	return nil
}

// rotate moves the full log to path.1 and starts a new one.
func (l *lateFile) rotate() error {
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("rotate log: %w", err)
	}
	l.f = nil
	if err := os.Rename(l.path, l.path+".1"); err != nil {
		return fmt.Errorf("rotate log: %w", err)
	}
	return l.reopen()
}

func (l *lateFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

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
}

const (
	earlyMax = 256 << 10
	// logMax rotates gate.log to gate.log.1 at boot when larger: /perm
	// is 256 MiB and holds the machine states too.
	logMax = 16 << 20
)

func (l *lateFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		return l.f.Write(p)
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
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, &l.early); err != nil {
		f.Close()
		return err
	}
	l.f = f
	return nil
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

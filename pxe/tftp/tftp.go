// Package tftp owns the gate's read-only TFTP service: it hands the first
// stage (undionly.kpxe, ipxe.efi, snponly.efi) from the bundle's tftp/
// directory to PXE firmware. pin/tftp passes filenames through raw, so
// confinement is done here: names are cleaned lexically (CleanName) and
// opened through an os.Root, which also refuses symlinks that resolve
// outside the served tree. Write requests are refused.
package tftp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path"
	"strings"

	"github.com/pin/tftp/v3"
	"golang.org/x/net/ipv4"
)

// BlockSize is the largest block offered. pin/tftp's MTU clamp is 4 bytes
// too generous (1472 on a 1500 MTU, which fragments); 1468 fits.
const BlockSize = 1468

// readBuffer is each transfer's read-ahead: a few dozen blocks per
// read(2), small enough for a storm of PXE clients at once.
const readBuffer = 64 << 10

// ErrRefused is returned for names outside the served tree.
var ErrRefused = errors.New("refused")

// CleanName turns a filename from a TFTP request into a slash-separated
// path local to the served tree, or refuses it: empty names, NUL and other
// control characters, backslashes, absolute paths and any ".." element.
func CleanName(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("empty filename: %w", ErrRefused)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return "", fmt.Errorf("filename %q: control character or backslash: %w", name, ErrRefused)
		}
	}
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("filename %q: absolute path: %w", name, ErrRefused)
	}
	for _, elem := range strings.Split(name, "/") {
		if elem == ".." {
			return "", fmt.Errorf("filename %q: '..' element: %w", name, ErrRefused)
		}
	}
	clean := path.Clean(name)
	if clean == "." || !isLocal(clean) {
		return "", fmt.Errorf("filename %q: not a file in the served tree: %w", name, ErrRefused)
	}
	return clean, nil
}

// isLocal is filepath.IsLocal for slash paths on Linux, spelled out so the
// rule is visible: relative, no "..", not empty.
func isLocal(p string) bool {
	return p != "" && !strings.HasPrefix(p, "/") && p != ".." && !strings.HasPrefix(p, "../")
}

// Listen opens the TFTP socket on addr with packet info enabled before any
// request can arrive: pin/tftp learns the interface MTU (its block size
// clamp) from that info, and falls back to 512-byte blocks for requests
// that came in before it enabled it itself.
func Listen(addr *net.UDPAddr) (*net.UDPConn, error) {
	conn, err := net.ListenUDP("udp4", addr)
	if err != nil {
		return nil, fmt.Errorf("tftp: %w", err)
	}
	if err := ipv4.NewPacketConn(conn).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true); err != nil {
		conn.Close()
		return nil, fmt.Errorf("tftp: packet info: %w", err)
	}
	return conn, nil
}

// Server serves Root read-only.
type Server struct {
	Root string
	Log  *slog.Logger
}

// Serve answers TFTP requests on conn until ctx ends; it closes conn.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	root, err := os.OpenRoot(s.Root)
	if err != nil {
		conn.Close()
		return fmt.Errorf("tftp root: %w", err)
	}
	defer root.Close()
	srv := tftp.NewServer(func(name string, rf io.ReaderFrom) error {
		return s.read(root, name, rf)
	}, nil) // nil write handler: pin/tftp refuses write requests
	srv.SetBlockSize(BlockSize)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
		}
		srv.Shutdown()
	}()
	err = srv.Serve(conn)
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return fmt.Errorf("tftp: %w", err)
	}
	return nil
}

func (s *Server) read(root *os.Root, name string, rf io.ReaderFrom) error {
	log := s.Log.With("file", name)
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		addr := ot.RemoteAddr()
		log = log.With("peer", addr.String())
	}
	f, size, err := open(root, name)
	if err != nil {
		log.Warn("tftp read refused", "err", err)
		return err
	}
	defer f.Close()
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		ot.SetSize(size)
	}
	// pin/tftp reads one block at a time: a read(2) per 512-byte block
	// without the buffer.
	n, err := rf.ReadFrom(bufio.NewReaderSize(f, readBuffer))
	switch {
	case err == nil:
		log.Info("tftp sent", "bytes", n)
	case IsTsizeProbe(err):
		// Firmware asks for tsize, then aborts before the real
		// transfer: routine, not a failure.
		log.Debug("tftp tsize probe aborted by client")
	default:
		log.Warn("tftp transfer failed", "bytes", n, "err", err)
	}
	return nil // the transfer already ended; nothing more to tell the peer
}

// open opens name (as it came off the wire) under root, refusing names
// CleanName refuses, symlinks out of root, and anything but regular files.
func open(root *os.Root, name string) (*os.File, int64, error) {
	clean, err := CleanName(name)
	if err != nil {
		return nil, 0, err
	}
	f, err := root.Open(clean)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, 0, fmt.Errorf("%s: file not found", clean)
		}
		// os.Root reports escaping symlinks as a plain error: refuse.
		return nil, 0, fmt.Errorf("%s: %w (%v)", clean, ErrRefused, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("%s: not a regular file: %w", clean, ErrRefused)
	}
	return f, st.Size(), nil
}

// IsTsizeProbe reports whether err is a client's error packet answering
// the option acknowledgement, before any data: how firmware ends a size
// probe. UEFI PXE sends error 8 (option negotiation refused), BIOS PXE
// ROMs often 0 ("TFTP Aborted"). pin/tftp reports it as failing block 0.
func IsTsizeProbe(err error) bool {
	return err != nil && strings.Contains(err.Error(), "sending block 0: code=")
}

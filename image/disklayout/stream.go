package disklayout

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/kilnlab/kiln/plan"
)

// ChunkSize is the largest single read or write of partition contents:
// big enough to stream at disk speed, small enough for a small-RAM
// installer and for prompt cancellation.
const ChunkSize = 4 << 20

// ErrChecksum means a partition's contents do not hash to what was expected.
var ErrChecksum = errors.New("checksum mismatch")

// WriteImage copies exactly size bytes from r into partition p of dev, in
// ChunkSize pieces, and syncs. The rest of the partition is left as it
// was. A short r is an error (io.ErrUnexpectedEOF).
//
// It does not hash what it writes: the installer reads every partition
// back and checks it against the manifest (VerifyPartition) before the
// disk can boot, which covers the network and the disk at once. A hash on
// the way as well cost the write half its speed (SHA-256 is slower than a
// disk on small CPUs) for a second check of the same bytes. r is read one
// chunk ahead, so the gate's stream keeps flowing while the disk writes.
func WriteImage(ctx context.Context, dev Device, p plan.Partition, r io.Reader, size int64) error {
	if err := fits(p, size); err != nil {
		return err
	}
	err := readAhead(ctx, size, r, func(buf []byte, off int64) error {
		if _, err := dev.WriteAt(buf, int64(p.Start)+off); err != nil {
			return fmt.Errorf("write at %d: %w", off, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("partition %d: %w", p.Number, err)
	}
	return syncDevice(dev)
}

// readAhead calls fn for consecutive pieces of [0, size) of r, at most
// ChunkSize bytes each, while a goroutine reads the next piece into a
// second buffer. It returns once that goroutine is done with r, so the
// caller may close or reuse r; it stops early on cancellation.
func readAhead(ctx context.Context, size int64, r io.Reader, fn func(buf []byte, off int64) error) error {
	type piece struct {
		buf []byte
		off int64
		err error
	}
	n := min(ChunkSize, max(size, 1))
	free := make(chan []byte, 2)
	free <- make([]byte, n)
	free <- make([]byte, n)
	full := make(chan piece)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(full)
		for off := int64(0); off < size; {
			var buf []byte
			select {
			case buf = <-free:
			case <-stop:
				return
			}
			buf = buf[:min(int64(len(buf)), size-off)]
			_, err := io.ReadFull(r, buf)
			if err != nil {
				err = fmt.Errorf("read image at %d: %w", off, unexpected(err))
			}
			select {
			case full <- piece{buf, off, err}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
			off += int64(len(buf))
		}
	}()
	defer func() {
		close(stop)
		<-done
	}()
	for c := range full {
		if err := ctx.Err(); err != nil {
			return err
		}
		if c.err != nil {
			return c.err
		}
		if err := fn(c.buf, c.off); err != nil {
			return err
		}
		free <- c.buf[:cap(c.buf)]
	}
	return ctx.Err()
}

// HeadSize is how much of a boot partition's image WriteBootImage holds
// back: a FAT file system's boot sector, its backup (sector 6 of FAT32),
// its reserved sectors and the start of its first FAT all lie in it.
const HeadSize = 1 << 20

// WriteBootImage writes an image the firmware boots from (the ESP) into
// partition p so that a power cut at any moment leaves either no file
// system there or the whole verified image: it zeroes the head, writes
// the rest of the image, syncs it and reads it back, and only then writes
// the head, syncs and reads that back. The image must hash to sum (hex
// SHA-256), as streamed and as read back; a mismatch wraps ErrChecksum
// and leaves the head zeroed. The rest of the partition is left as it was.
func WriteBootImage(ctx context.Context, dev Device, p plan.Partition, r io.Reader, size int64, sum string) error {
	if err := fits(p, size); err != nil {
		return err
	}
	head := make([]byte, min(size, HeadSize))
	if _, err := io.ReadFull(r, head); err != nil {
		return fmt.Errorf("partition %d: read image head: %w", p.Number, unexpected(err))
	}
	if err := zeroRange(dev, int64(p.Start), int64(p.Start)+int64(len(head))); err != nil {
		return err
	}
	if err := syncDevice(dev); err != nil {
		return err
	}
	// The rest, as a partition of its own starting past the head.
	rest := p
	rest.Start += uint64(len(head))
	rest.Size -= uint64(len(head))
	h := sha256.New()
	h.Write(head)
	if err := WriteImage(ctx, dev, rest, io.TeeReader(r, h), size-int64(len(head))); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return fmt.Errorf("partition %d (%s): %w while streaming: got %s, want %s", p.Number, p.Name, ErrChecksum, got, sum)
	}
	if err := DropCaches(dev); err != nil {
		return err
	}
	h.Reset()
	h.Write(head)
	if err := readInto(ctx, dev, rest, size-int64(len(head)), h); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return fmt.Errorf("partition %d (%s): %w reading back all but its head: got %s, want %s", p.Number, p.Name, ErrChecksum, got, sum)
	}
	if _, err := dev.WriteAt(head, int64(p.Start)); err != nil {
		return fmt.Errorf("partition %d: write head: %w", p.Number, err)
	}
	if err := DropCaches(dev); err != nil {
		return err
	}
	back := make([]byte, len(head))
	if _, err := dev.ReadAt(back, int64(p.Start)); err != nil {
		return fmt.Errorf("partition %d: read head back: %w", p.Number, err)
	}
	if !bytes.Equal(back, head) {
		return fmt.Errorf("partition %d (%s): %w: its head reads back different", p.Number, p.Name, ErrChecksum)
	}
	return nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// VerifyPartition reads the first size bytes of partition p back from dev
// and checks they hash to sum (hex SHA-256); a mismatch wraps ErrChecksum.
func VerifyPartition(ctx context.Context, dev Device, p plan.Partition, size int64, sum string) error {
	got, err := HashPartition(ctx, dev, p, size)
	if err != nil {
		return err
	}
	if got != sum {
		return fmt.Errorf("partition %d (%s): %w: got %s, want %s", p.Number, p.Name, ErrChecksum, got, sum)
	}
	return nil
}

// HashPartition returns the hex SHA-256 of the first size bytes of
// partition p, read in ChunkSize pieces.
func HashPartition(ctx context.Context, dev Device, p plan.Partition, size int64) (string, error) {
	if err := fits(p, size); err != nil {
		return "", err
	}
	h := sha256.New()
	if err := readInto(ctx, dev, p, size, h); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// readInto reads the first size bytes of partition p into w.
func readInto(ctx context.Context, dev Device, p plan.Partition, size int64, w io.Writer) error {
	return chunks(ctx, size, func(buf []byte, off int64) error {
		if _, err := dev.ReadAt(buf, int64(p.Start)+off); err != nil {
			return fmt.Errorf("partition %d: read at %d: %w", p.Number, off, err)
		}
		w.Write(buf)
		return nil
	})
}

func fits(p plan.Partition, size int64) error {
	if size < 0 || uint64(size) > p.Size {
		return fmt.Errorf("%w: partition %d (%s) holds %d bytes, image is %d", ErrInvalidLayout, p.Number, p.Name, p.Size, size)
	}
	return nil
}

// chunks calls fn for consecutive pieces of [0, size) of at most
// ChunkSize bytes, reusing one buffer, and stops early on cancellation.
func chunks(ctx context.Context, size int64, fn func(buf []byte, off int64) error) error {
	buf := make([]byte, min(ChunkSize, max(size, 1)))
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(int64(len(buf)), size-off)
		if err := fn(buf[:n], off); err != nil {
			return err
		}
		off += n
	}
	return nil
}

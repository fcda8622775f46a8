package disklayout

import (
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
// ChunkSize pieces, and returns their SHA-256 in hex. The rest of the
// partition is left as it was. A short r is an error (io.ErrUnexpectedEOF).
func WriteImage(ctx context.Context, dev Device, p plan.Partition, r io.Reader, size int64) (string, error) {
	if err := fits(p, size); err != nil {
		return "", err
	}
	h := sha256.New()
	err := chunks(ctx, size, func(buf []byte, off int64) error {
		if _, err := io.ReadFull(r, buf); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("partition %d: read image at %d: %w", p.Number, off, err)
		}
		if _, err := dev.WriteAt(buf, int64(p.Start)+off); err != nil {
			return fmt.Errorf("partition %d: write at %d: %w", p.Number, off, err)
		}
		h.Write(buf)
		return nil
	})
	if err != nil {
		return "", err
	}
	if err := syncDevice(dev); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
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
	err := chunks(ctx, size, func(buf []byte, off int64) error {
		if _, err := dev.ReadAt(buf, int64(p.Start)+off); err != nil {
			return fmt.Errorf("partition %d: read at %d: %w", p.Number, off, err)
		}
		h.Write(buf)
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
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

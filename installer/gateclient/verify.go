package gateclient

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/kilnlab/kiln/image/bundle"
)

// ErrChecksum means fetched bytes do not match the manifest.
var ErrChecksum = errors.New("checksum mismatch")

// Verify checks b against f's size and SHA-256.
func Verify(b []byte, f bundle.File) error {
	sum := sha256.Sum256(b)
	if int64(len(b)) != f.Size || hex.EncodeToString(sum[:]) != f.SHA256 {
		return fmt.Errorf("%s: %w", f.Path, ErrChecksum)
	}
	return nil
}

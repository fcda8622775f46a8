package flash

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
)

const mib = 1 << 20

// digest hashes a disk's bytes in order, leaving out a kept range: the
// whole as one sha256, and each MiB on its own so a mismatch can name the
// first MiB that differs.
type digest struct {
	skip  Range
	whole hash.Hash
	cur   int64 // MiB index being hashed, -1 before the first byte
	h     hash.Hash
	mibs  []mibSum
}

type mibSum struct {
	index int64
	sum   [sha256.Size]byte
}

func newDigest(skip Range) *digest {
	return &digest{skip: skip, whole: sha256.New(), cur: -1, h: sha256.New()}
}

// add hashes b, the bytes at off; calls come in increasing off.
func (d *digest) add(off int64, b []byte) {
	for _, r := range outside(off, int64(len(b)), d.skip) {
		p := b[r.Off-off : r.end()-off]
		d.whole.Write(p)
		for o := r.Off; len(p) > 0; {
			i := o / mib
			if i != d.cur {
				d.flush()
				d.cur = i
			}
			n := min(int64(len(p)), (i+1)*mib-o)
			d.h.Write(p[:n])
			p, o = p[n:], o+n
		}
	}
}

func (d *digest) flush() {
	if d.cur >= 0 {
		var s mibSum
		s.index = d.cur
		d.h.Sum(s.sum[:0])
		d.mibs = append(d.mibs, s)
		d.h.Reset()
	}
}

// sum finishes d and returns its whole sha256 in hex.
func (d *digest) sum() string {
	d.flush()
	d.cur = -1
	return hex.EncodeToString(d.whole.Sum(nil))
}

// firstDiff is the first MiB whose bytes differ between two finished
// digests, or -1.
func firstDiff(a, b *digest) int64 {
	for i := range max(len(a.mibs), len(b.mibs)) {
		switch {
		case i >= len(a.mibs):
			return b.mibs[i].index
		case i >= len(b.mibs):
			return a.mibs[i].index
		case a.mibs[i] != b.mibs[i]:
			return min(a.mibs[i].index, b.mibs[i].index)
		}
	}
	return -1
}

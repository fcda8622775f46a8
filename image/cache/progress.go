package cache

import (
	"fmt"
	"io"
)

// progress writes "name: done / total (pct%)" lines for people: one per
// tenth of a large file and one when it ends. Each line is one Write, so
// lines of concurrent downloads interleave whole.
type progress struct {
	w      io.Writer
	name   string
	total  int64
	done   int64
	tenths int64
}

// largeFile is the size above which intermediate lines are worth reading.
const largeFile = 4 << 20

func (p *progress) Write(b []byte) (int, error) {
	p.done += int64(len(b))
	if p.w != nil && p.total >= largeFile {
		if t := p.done * 10 / p.total; t > p.tenths && t < 10 {
			p.tenths = t
			p.line()
		}
	}
	return len(b), nil
}

func (p *progress) finish() {
	if p.w != nil {
		p.line()
	}
}

func (p *progress) line() {
	if p.total == 0 {
		fmt.Fprintf(p.w, "fetch %s: %s\n", p.name, HumanBytes(p.done))
		return
	}
	pct := int64(100)
	if p.total > 0 {
		pct = p.done * 100 / p.total
	}
	fmt.Fprintf(p.w, "fetch %s: %s / %s (%d%%)\n", p.name, HumanBytes(p.done), HumanBytes(p.total), pct)
}

// HumanBytes formats n as B, KiB, MiB or GiB with one decimal.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, suffix := float64(n)/unit, "KiB"
	for _, s := range []string{"MiB", "GiB"} {
		if v < unit {
			break
		}
		v, suffix = v/unit, s
	}
	return fmt.Sprintf("%.1f %s", v, suffix)
}

package flash

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/kilnlab/kiln/image/cache"
)

func humanBytes(n int64) string { return cache.HumanBytes(n) }

// progress draws one phase (write, verify) for people: on a terminal one
// line redrawn with \r a few times a second, elsewhere (logs, CI) one line
// per tenth. Without a writer it draws nothing.
type progress struct {
	w      io.Writer
	term   bool
	verb   string
	total  int64
	now    func() time.Time
	start  time.Time
	drawn  time.Time
	tenths int64
	width  int // of the last terminal line, to blank what a shorter one leaves
}

func newProgress(w io.Writer, term bool, verb string, total int64, now func() time.Time) *progress {
	if now == nil {
		now = time.Now
	}
	return &progress{w: w, term: term, verb: verb, total: total, now: now, start: now()}
}

// update reports done bytes of total.
func (p *progress) update(done int64) {
	if p.w == nil {
		return
	}
	if p.term {
		if t := p.now(); t.Sub(p.drawn) >= 200*time.Millisecond {
			p.drawn = t
			p.redraw(done)
		}
		return
	}
	if p.total > 0 {
		if t := done * 10 / p.total; t > p.tenths && t < 10 {
			p.tenths = t
			fmt.Fprintln(p.w, p.line(done))
		}
	}
}

// finish draws the last line and ends it.
func (p *progress) finish(done int64) {
	if p.w == nil {
		return
	}
	if p.term {
		p.redraw(done)
		fmt.Fprintln(p.w)
		return
	}
	fmt.Fprintln(p.w, p.line(done))
}

func (p *progress) redraw(done int64) {
	l := p.line(done)
	pad := max(0, p.width-len(l))
	p.width = len(l)
	fmt.Fprint(p.w, "\r"+l+strings.Repeat(" ", pad))
}

// line is "write 512.0 MiB / 1.2 GiB  41%  23.4 MiB/s  ETA 0:31".
func (p *progress) line(done int64) string {
	pct := int64(100)
	if p.total > 0 {
		pct = done * 100 / p.total
	}
	s := fmt.Sprintf("%-6s %s / %s %3d%%", p.verb, humanBytes(done), humanBytes(p.total), pct)
	el := p.now().Sub(p.start).Seconds()
	if el <= 0 || done == 0 {
		return s
	}
	rate := float64(done) / el
	s += fmt.Sprintf("  %.1f MiB/s", rate/mib)
	if done < p.total {
		s += "  ETA " + clock(time.Duration(float64(p.total-done)/rate*float64(time.Second)))
	} else {
		s += "  " + clock(p.now().Sub(p.start))
	}
	return s
}

// clock formats d as m:ss or h:mm:ss.
func clock(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

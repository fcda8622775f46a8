package lock

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/kilnlab/kiln/image/cache"
)

// Local is a pinned file on disk, verified.
type Local struct {
	Pin
	Path string
}

// fetchWorkers bounds parallel downloads: a rootfs is ~130 small files,
// where round trips, not bandwidth, are the cost.
const fetchWorkers = 4

// Fetch makes every file of the named set present and verified in the
// cache and returns their paths in the set's order. With a warm cache it
// makes no network request. A pinned file the mirror no longer has is an
// error that says to re-lock.
func Fetch(ctx context.Context, c *cache.Cache, f *File, set string) ([]Local, error) {
	s, err := f.Set(set)
	if err != nil {
		return nil, err
	}
	out := make([]Local, len(s.Packages))
	errs := make([]error, len(s.Packages))
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(fetchWorkers, len(s.Packages)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				out[i], errs[i] = fetchOne(ctx, c, f, s.Packages[i])
			}
		}()
	}
	for i := range s.Packages {
		if ctx.Err() != nil {
			break
		}
		work <- i
	}
	close(work)
	wg.Wait()
	if err := errors.Join(append(errs, ctx.Err())...); err != nil {
		return nil, fmt.Errorf("fetch %s: %w", set, err)
	}
	var total int64
	for _, l := range out {
		total += l.Size
	}
	if c.Progress != nil {
		fmt.Fprintf(c.Progress, "set %s: %d files, %s, verified\n", set, len(out), cache.HumanBytes(total))
	}
	return out, nil
}

func fetchOne(ctx context.Context, c *cache.Cache, f *File, p Pin) (Local, error) {
	path, err := c.Get(ctx, blob(f, p))
	if errors.Is(err, cache.ErrNotFound) {
		return Local{}, fmt.Errorf("%s %s (%s) is no longer on %s (suite %s): the lock is stale, run `kiln lock` to re-lock: %w",
			p.Package, p.Version, p.Arch, f.Mirror, f.Suite, err)
	}
	if err != nil {
		return Local{}, err
	}
	return Local{Pin: p, Path: path}, nil
}

// Cached is Fetch without the network: every file must already be in the
// cache and verify (cache.ErrNotCached otherwise).
func Cached(c *cache.Cache, f *File, set string) ([]Local, error) {
	s, err := f.Set(set)
	if err != nil {
		return nil, err
	}
	out := make([]Local, 0, len(s.Packages))
	for _, p := range s.Packages {
		path, err := c.Cached(blob(f, p))
		if err != nil {
			return nil, err
		}
		out = append(out, Local{Pin: p, Path: path})
	}
	return out, nil
}

func blob(f *File, p Pin) cache.Blob {
	return cache.Blob{
		Name:   p.DebName(),
		URL:    strings.TrimRight(f.Mirror, "/") + "/" + strings.TrimLeft(p.Filename, "/"),
		Size:   p.Size,
		SHA256: p.SHA256,
	}
}

package ntp

import (
	"crypto/md5"
	"encoding/binary"
	"net/netip"
	"sync"
	"time"
)

// LocalStratum is what the gate announces while it has no upstream sync:
// a local clock, like chrony's `local stratum 10`, so that the lab's
// machines still agree with each other when the internet is away.
const LocalStratum = 10

// RefIDLocal is the refid of the local clock.
var RefIDLocal = RefIDOf("LOCL")

// DefaultMaxAge is how long one upstream sync counts: past it the Clock
// serves as a local clock again (by then its dispersion has grown to
// 1.3 s, under chrony's 3 s maxdistance).
const DefaultMaxAge = 24 * time.Hour

// Clock is a Source: the time now reads (the system clock), with the
// stratum and reference of the last upstream sync, or of a local clock
// when there has been none within MaxAge.
//
// Clock never sets the system clock: the caller steps it by a Response's
// Offset (the appliance does, and refuses to go below its floor), then
// calls Synced.
type Clock struct {
	// MaxAge is how long a sync counts; 0 means DefaultMaxAge. Set it
	// before use.
	MaxAge time.Duration

	now func() time.Time

	mu      sync.Mutex
	synced  bool
	at      time.Time // when Synced was called, by now
	stratum uint8
	refID   uint32
}

// NewClock returns an unsynced Clock reading now (time.Now when nil).
func NewClock(now func() time.Time) *Clock {
	if now == nil {
		now = time.Now
	}
	return &Clock{now: now}
}

// Synced records that the clock now reads was just set from r.
func (c *Clock) Synced(r Response) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.synced = true
	c.at = c.now()
	c.stratum = min(r.Stratum+1, 15)
	c.refID = RefIDOfAddr(r.Addr)
}

// LastSync reports when Synced was last called, and whether ever.
func (c *Clock) LastSync() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.at, c.synced
}

// Now implements Source.
func (c *Clock) Now() time.Time { return c.now() }

// Stratum implements Source.
func (c *Clock) Stratum() uint8 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.fresh() {
		return LocalStratum
	}
	return c.stratum
}

// RefID implements Source.
func (c *Clock) RefID() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.fresh() {
		return RefIDLocal
	}
	return c.refID
}

// RefTime implements Source: a local clock is its own reference, so it
// is always current.
func (c *Clock) RefTime() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.fresh() {
		return c.now()
	}
	return c.at
}

// fresh reports whether the last sync still counts; c.mu is held.
func (c *Clock) fresh() bool {
	maxAge := c.MaxAge
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	return c.synced && c.now().Sub(c.at) < maxAge
}

// RefIDOfAddr is the refid naming an upstream server (RFC 5905 §7.3):
// its IPv4 address, or the first four bytes of the MD5 of its IPv6
// address. An invalid address gives 0.
func RefIDOfAddr(a netip.Addr) uint32 {
	a = a.Unmap()
	switch {
	case a.Is4():
		b := a.As4()
		return binary.BigEndian.Uint32(b[:])
	case a.Is6():
		b := a.As16()
		sum := md5.Sum(b[:])
		return binary.BigEndian.Uint32(sum[:4])
	}
	return 0
}

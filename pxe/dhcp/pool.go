package dhcp

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"
)

// offerHold is how long an offered address stays reserved for the client
// that was offered it, waiting for its REQUEST.
const offerHold = time.Minute

// Lease is one address handed out from the range.
type Lease struct {
	MAC     string     `json:"mac"`
	Addr    netip.Addr `json:"addr"`
	Expires time.Time  `json:"expires"`
}

// ErrPoolFull: every address of the range is leased.
var ErrPoolFull = errors.New("dhcp range exhausted")

// Pool hands out addresses of a range to clients that are not in the plan.
type Pool struct {
	first, last netip.Addr
	reserved    map[netip.Addr]bool // the plan's static addresses, the gate
	now         func() time.Time
	// OnChange, if set, is called (with the pool unlocked) after a lease
	// is committed or released, to persist Leases().
	OnChange func()

	mu     sync.Mutex
	leases map[string]Lease // by MAC
}

// ParseRange parses "first-last".
func ParseRange(s string) (first, last netip.Addr, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return first, last, fmt.Errorf("range %q: want first-last", s)
	}
	if first, err = netip.ParseAddr(strings.TrimSpace(a)); err != nil {
		return first, last, fmt.Errorf("range %q: %w", s, err)
	}
	if last, err = netip.ParseAddr(strings.TrimSpace(b)); err != nil {
		return first, last, fmt.Errorf("range %q: %w", s, err)
	}
	if !first.Is4() || !last.Is4() || last.Less(first) {
		return first, last, fmt.Errorf("range %q: want two IPv4 addresses, first <= last", s)
	}
	return first, last, nil
}

// NewPool makes a pool over first..last that never hands out reserved.
// now may be nil (time.Now).
func NewPool(first, last netip.Addr, reserved []netip.Addr, now func() time.Time) *Pool {
	if now == nil {
		now = time.Now
	}
	p := &Pool{first: first, last: last, reserved: map[netip.Addr]bool{}, now: now, leases: map[string]Lease{}}
	for _, a := range reserved {
		p.reserved[a] = true
	}
	return p
}

// Restore loads leases saved earlier (expired ones are dropped).
func (p *Pool) Restore(leases []Lease) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	for _, l := range leases {
		if l.Expires.After(now) && p.inRange(l.Addr) {
			p.leases[l.MAC] = l
		}
	}
}

// Leases returns the current leases, sorted by address.
func (p *Pool) Leases() []Lease {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Lease, 0, len(p.leases))
	for _, l := range p.leases {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr.Less(out[j].Addr) })
	return out
}

func (p *Pool) inRange(a netip.Addr) bool {
	return !a.Less(p.first) && !p.last.Less(a) && !p.reserved[a]
}

// Offer picks an address for mac (its current lease if any) and holds it
// briefly for the client's REQUEST.
func (p *Pool) Offer(mac string) (netip.Addr, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if l, ok := p.leases[mac]; ok && l.Expires.After(now) {
		return l.Addr, nil
	}
	taken := map[netip.Addr]bool{}
	for m, l := range p.leases {
		if l.Expires.After(now) {
			taken[l.Addr] = true
		} else {
			delete(p.leases, m)
		}
	}
	for a := p.first; a.IsValid(); a = a.Next() {
		if !p.reserved[a] && !taken[a] {
			p.leases[mac] = Lease{MAC: mac, Addr: a, Expires: now.Add(offerHold)}
			return a, nil
		}
		if a == p.last {
			break
		}
	}
	return netip.Addr{}, ErrPoolFull
}

// Commit leases addr to mac for ttl, if addr is free or already mac's.
func (p *Pool) Commit(mac string, addr netip.Addr, ttl time.Duration) bool {
	p.mu.Lock()
	now := p.now()
	ok := p.inRange(addr)
	for m, l := range p.leases {
		if m != mac && l.Addr == addr && l.Expires.After(now) {
			ok = false
		}
	}
	if ok {
		p.leases[mac] = Lease{MAC: mac, Addr: addr, Expires: now.Add(ttl)}
	}
	p.mu.Unlock()
	if ok && p.OnChange != nil {
		p.OnChange()
	}
	return ok
}

// Release frees mac's lease.
func (p *Pool) Release(mac string) {
	p.mu.Lock()
	_, had := p.leases[mac]
	delete(p.leases, mac)
	p.mu.Unlock()
	if had && p.OnChange != nil {
		p.OnChange()
	}
}

package ntp

import (
	"net/netip"
	"testing"
	"time"
)

func TestClock(t *testing.T) {
	now := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)
	c := NewClock(func() time.Time { return now })
	type state struct {
		stratum uint8
		refID   string
		refTime time.Time
		synced  bool
		last    time.Time
	}
	check := func(step string, want state) {
		t.Helper()
		at, synced := c.LastSync()
		got := state{c.Stratum(), RefIDString(c.RefID()), c.RefTime(), synced, at}
		if got != want {
			t.Errorf("%s: %+v, want %+v", step, got, want)
		}
		if !c.Now().Equal(now) {
			t.Errorf("%s: Now %s, want the clock it reads", step, c.Now())
		}
	}
	check("never synced: a local clock, its own reference", state{10, "LOCL", now, false, time.Time{}})

	synced := now
	c.Synced(Response{Stratum: 2, Addr: netip.MustParseAddr("192.0.2.1")})
	now = now.Add(time.Hour)
	check("an hour after a sync to a stratum 2 server", state{3, "192.0.2.1", synced, true, synced})

	now = synced.Add(DefaultMaxAge - time.Second)
	check("just before the sync is too old", state{3, "192.0.2.1", synced, true, synced})
	now = synced.Add(DefaultMaxAge)
	check("sync too old: local again", state{10, "LOCL", now, true, synced})

	c.Synced(Response{Stratum: 15, Addr: netip.MustParseAddr("::ffff:192.0.2.7")})
	check("stratum 15 upstream: capped at 15; mapped v4 refid", state{15, "192.0.2.7", now, true, now})
}

func TestClockMaxAge(t *testing.T) {
	now := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)
	c := NewClock(func() time.Time { return now })
	c.MaxAge = time.Minute
	c.Synced(Response{Stratum: 1})
	now = now.Add(time.Minute)
	if c.Stratum() != LocalStratum {
		t.Errorf("stratum %d a MaxAge after the sync, want %d", c.Stratum(), LocalStratum)
	}
}

func TestRefIDOfAddr(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want uint32
	}{
		{"192.0.2.1", 0xc0000201},
		{"::ffff:10.0.0.1", 0x0a000001},
		// RFC 5905: the first four bytes of the MD5 of the address.
		{"2001:db8::1", 0x39ab9b37},
		{"", 0},
	} {
		var a netip.Addr
		if tc.addr != "" {
			a = netip.MustParseAddr(tc.addr)
		}
		if got := RefIDOfAddr(a); got != tc.want {
			t.Errorf("RefIDOfAddr(%s) = %#x, want %#x", a, got, tc.want)
		}
	}
}

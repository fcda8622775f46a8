package ntp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fixedSource is a Source whose clock is shifted from time.Now by shift,
// or stopped at now when shift is zero and now is set.
type fixedSource struct {
	now     time.Time
	shift   time.Duration
	stratum uint8
	refID   uint32
	refTime time.Time
}

func (s fixedSource) Now() time.Time {
	if !s.now.IsZero() {
		return s.now
	}
	return time.Now().Add(s.shift)
}
func (s fixedSource) Stratum() uint8     { return s.stratum }
func (s fixedSource) RefID() uint32      { return s.refID }
func (s fixedSource) RefTime() time.Time { return s.refTime }

// cmpAddr compares netip.Addr, whose fields are unexported.
var cmpAddr = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestAnswer(t *testing.T) {
	now := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)
	synced := fixedSource{now: now, stratum: 3, refID: 0xc0000201, refTime: now.Add(-time.Hour)}
	local := fixedSource{now: now, stratum: LocalStratum, refID: RefIDLocal, refTime: now}
	xmt := Timestamp(0x0123456789abcdef)
	for _, tc := range []struct {
		name string
		req  []byte
		src  fixedSource
		want *Packet
	}{
		{"v4 client, synced source", Packet{Version: 4, Mode: ModeClient, Poll: 6, Transmit: xmt}.Marshal(), synced,
			&Packet{Version: 4, Mode: ModeServer, Stratum: 3, Poll: 6, Precision: -20,
				RootDispersion: ShortOf(time.Millisecond + 54*time.Millisecond), // 15 ppm of an hour
				RefID:          0xc0000201, RefTime: TimestampOf(now.Add(-time.Hour)), Origin: xmt,
				Receive: TimestampOf(now), Transmit: TimestampOf(now)}},
		{"v3 client gets v3, local clock", Packet{Version: 3, Mode: ModeClient, Transmit: xmt}.Marshal(), local,
			&Packet{Version: 3, Mode: ModeServer, Stratum: 10, Precision: -20, RootDispersion: ShortOf(time.Millisecond),
				RefID: RefIDOf("LOCL"), RefTime: TimestampOf(now), Origin: xmt, Receive: TimestampOf(now), Transmit: TimestampOf(now)}},
		{"request with a MAC after the header", append(Packet{Version: 4, Mode: ModeClient, Transmit: xmt}.Marshal(), make([]byte, 20)...), local,
			&Packet{Version: 4, Mode: ModeServer, Stratum: 10, Precision: -20, RootDispersion: ShortOf(time.Millisecond),
				RefID: RefIDOf("LOCL"), RefTime: TimestampOf(now), Origin: xmt, Receive: TimestampOf(now), Transmit: TimestampOf(now)}},
		{"never synced, no reftime", Packet{Version: 4, Mode: ModeClient, Transmit: xmt}.Marshal(), fixedSource{now: now, stratum: 10, refID: RefIDLocal},
			&Packet{Version: 4, Mode: ModeServer, Stratum: 10, Precision: -20, RootDispersion: ShortOf(time.Millisecond),
				RefID: RefIDOf("LOCL"), Origin: xmt, Receive: TimestampOf(now), Transmit: TimestampOf(now)}},
		{"server reply (a loop of two servers)", Packet{Version: 4, Mode: ModeServer, Transmit: xmt}.Marshal(), synced, nil},
		{"symmetric active", Packet{Version: 4, Mode: 1, Transmit: xmt}.Marshal(), synced, nil},
		{"broadcast", Packet{Version: 4, Mode: 5}.Marshal(), synced, nil},
		{"control (ntpq)", Packet{Version: 2, Mode: 6}.Marshal(), synced, nil},
		{"version 0", Packet{Version: 0, Mode: ModeClient}.Marshal(), synced, nil},
		{"version 5", Packet{Version: 5, Mode: ModeClient}.Marshal(), synced, nil},
		{"short", []byte{0x23, 0, 0, 0}, synced, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reply, ok := Answer(tc.req, now, tc.src)
			if ok != (tc.want != nil) {
				t.Fatalf("answered = %v, want %v", ok, tc.want != nil)
			}
			if !ok {
				return
			}
			got, err := Parse(reply)
			if err != nil {
				t.Fatal(err)
			}
			if len(reply) != PacketLen {
				t.Errorf("reply is %d bytes", len(reply))
			}
			if diff := cmp.Diff(*tc.want, got); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
		})
	}
}

// serve runs Serve on a loopback port until the test ends.
func serve(t *testing.T, src Source) string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, pc, src, quiet()) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return pc.LocalAddr().String()
}

func TestLoopback(t *testing.T) {
	for _, tc := range []struct {
		name  string
		shift time.Duration
	}{
		{"same clock", 0},
		{"server an hour ahead", time.Hour},
		{"server in 2037, past the era wrap", time.Date(2037, 1, 1, 0, 0, 0, 0, time.UTC).Sub(time.Now())},
		{"server a year behind", -365 * 24 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := serve(t, fixedSource{shift: tc.shift, stratum: 4, refID: 0xc0000201, refTime: time.Now()})
			r, err := Query(context.Background(), addr)
			if err != nil {
				t.Fatal(err)
			}
			if d := r.Offset - tc.shift; d < -time.Second || d > time.Second {
				t.Errorf("offset %s, want %s ± 1s", r.Offset, tc.shift)
			}
			if d := r.Time.Sub(time.Now().Add(tc.shift)); d < -time.Second || d > time.Second {
				t.Errorf("time %s is %s off the server's", r.Time, d)
			}
			want := Response{Stratum: 4, Leap: LeapNone, RefID: 0xc0000201, RootDispersion: r.RootDispersion,
				Addr: netip.MustParseAddr("127.0.0.1")}
			got := r
			got.Time, got.Offset, got.RTT = time.Time{}, 0, 0
			if diff := cmp.Diff(want, got, cmpAddr); diff != "" {
				t.Errorf("response (-want +got):\n%s", diff)
			}
		})
	}
}

func TestServeIgnoresJunk(t *testing.T) {
	addr := serve(t, fixedSource{stratum: 10, refID: RefIDLocal})
	c, err := net.Dial("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Junk first, then a real query on the same server: the loop must
	// still be there, and the junk must not have been answered (Query's
	// own socket would not see it anyway; c checks below).
	for _, junk := range [][]byte{{1, 2, 3}, Packet{Version: 4, Mode: ModeServer}.Marshal(), make([]byte, 48)} {
		if _, err := c.Write(junk); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Query(context.Background(), addr); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(Packet{Version: 4, Mode: ModeClient, Transmit: 42}.Marshal()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	// The first datagram c receives answers its real request, not junk.
	if p, err := Parse(buf[:n]); err != nil || p.Origin != 42 {
		t.Errorf("first datagram %+v (%v), want the answer to transmit 42", p, err)
	}
}

// fakeServer answers every datagram with what reply makes of the request.
func fakeServer(t *testing.T, reply func(req Packet) []byte) string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1024)
		for {
			n, peer, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			req, err := Parse(buf[:n])
			if err != nil {
				continue
			}
			if b := reply(req); b != nil {
				pc.WriteTo(b, peer)
			}
		}
	}()
	return pc.LocalAddr().String()
}

func TestQueryValidates(t *testing.T) {
	now := time.Now()
	good := func(req Packet) Packet {
		return Packet{Version: 4, Mode: ModeServer, Stratum: 2, Origin: req.Transmit,
			Receive: TimestampOf(now), Transmit: TimestampOf(now)}
	}
	for _, tc := range []struct {
		name  string
		reply func(req Packet) []byte
		want  error
	}{
		{"good", func(req Packet) []byte { return good(req).Marshal() }, nil},
		{"v3 reply", func(req Packet) []byte { p := good(req); p.Version = 3; return p.Marshal() }, nil},
		{"no receive timestamp", func(req Packet) []byte { p := good(req); p.Receive = 0; return p.Marshal() }, nil},
		{"mode 3", func(req Packet) []byte { p := good(req); p.Mode = ModeClient; return p.Marshal() }, ErrBadReply},
		{"version 5", func(req Packet) []byte { p := good(req); p.Version = 5; return p.Marshal() }, ErrBadReply},
		{"origin not echoed", func(req Packet) []byte { p := good(req); p.Origin++; return p.Marshal() }, ErrBadReply},
		{"zero transmit", func(req Packet) []byte { p := good(req); p.Transmit = 0; return p.Marshal() }, ErrBadReply},
		{"stratum 16", func(req Packet) []byte { p := good(req); p.Stratum = 16; return p.Marshal() }, ErrBadReply},
		{"short", func(req Packet) []byte { return good(req).Marshal()[:40] }, ErrBadReply},
		{"kiss of death", func(req Packet) []byte {
			p := good(req)
			p.Stratum, p.RefID = 0, RefIDOf("RATE")
			return p.Marshal()
		}, ErrUnsynced},
		{"leap alarm", func(req Packet) []byte { p := good(req); p.Leap = LeapUnsync; return p.Marshal() }, ErrUnsynced},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Query(context.Background(), fakeServer(t, tc.reply))
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("Query err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestQueryRequest(t *testing.T) {
	seen := make(chan Packet, 1)
	addr := fakeServer(t, func(req Packet) []byte { seen <- req; return nil })
	var reqs []Packet
	for range 2 {
		// The server never answers: cancel once it has the request.
		ctx, cancel := context.WithCancel(context.Background())
		got := make(chan Packet, 1)
		go func() { p := <-seen; cancel(); got <- p }()
		if _, err := Query(ctx, addr); !errors.Is(err, context.Canceled) {
			t.Errorf("Query err = %v, want context.Canceled", err)
		}
		reqs = append(reqs, <-got)
	}
	a, b := reqs[0], reqs[1]
	if a.Mode != ModeClient || a.Version != 4 || a.Transmit == 0 || a.Transmit == b.Transmit {
		t.Errorf("requests %+v, %+v: want v4 mode 3 with distinct random transmit timestamps", a, b)
	}
}

func TestMeasure(t *testing.T) {
	t1 := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)
	// The server is 10 s ahead; 20 ms each way; 5 ms in the server.
	reply := Packet{Stratum: 2, RootDelay: ShortOf(time.Second), RootDispersion: ShortOf(time.Second / 2), RefID: 7,
		Receive:  TimestampOf(t1.Add(10*time.Second + 20*time.Millisecond)),
		Transmit: TimestampOf(t1.Add(10*time.Second + 25*time.Millisecond))}
	got := measure(reply, t1, t1.Add(45*time.Millisecond))
	want := Response{Time: t1.Add(10*time.Second + 45*time.Millisecond), Offset: 10 * time.Second, RTT: 40 * time.Millisecond,
		Stratum: 2, RefID: 7, RootDelay: time.Second, RootDispersion: time.Second / 2}
	if diff := cmp.Diff(want, got, cmpAddr); diff != "" {
		t.Errorf("measure (-want +got):\n%s", diff)
	}
}

func TestSync(t *testing.T) {
	refused := func() string { // a port nobody listens on: ICMP port unreachable
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return pc.LocalAddr().String()
	}()
	unsynced := fakeServer(t, func(req Packet) []byte {
		return Packet{Leap: LeapUnsync, Version: 4, Mode: ModeServer, Stratum: 16, Origin: req.Transmit, Transmit: 1}.Marshal()
	})
	good := serve(t, fixedSource{stratum: 2, refID: 1, refTime: time.Now()})
	r, err := Sync(context.Background(), []string{refused, unsynced, good})
	if err != nil {
		t.Fatal(err)
	}
	if r.Stratum != 2 {
		t.Errorf("stratum %d: not the good server's answer", r.Stratum)
	}
	_, err = Sync(context.Background(), []string{refused, unsynced})
	if !errors.Is(err, ErrNoServer) || !errors.Is(err, ErrBadReply) {
		t.Errorf("Sync err = %v, want ErrNoServer wrapping each server's error", err)
	}
	if _, err = Sync(context.Background(), nil); !errors.Is(err, ErrNoServer) {
		t.Errorf("Sync(nil) err = %v, want ErrNoServer", err)
	}
}

func TestHostPort(t *testing.T) {
	for in, want := range map[string]string{
		"pool.ntp.org":      "pool.ntp.org:123",
		"192.0.2.1":         "192.0.2.1:123",
		"192.0.2.1:1123":    "192.0.2.1:1123",
		"2001:db8::1":       "[2001:db8::1]:123",
		"[2001:db8::1]:124": "[2001:db8::1]:124",
	} {
		if got := hostPort(in); got != want {
			t.Errorf("hostPort(%q) = %q, want %q", in, got, want)
		}
	}
}

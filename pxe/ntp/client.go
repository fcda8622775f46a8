package ntp

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// DefaultPort is NTP's UDP port.
const DefaultPort = "123"

// QueryTimeout bounds one exchange (Query also stops when its context
// ends, whichever comes first).
const QueryTimeout = 5 * time.Second

// Sentinel errors of Query; Sync tries the next server on any of them.
var (
	// ErrBadReply: the datagram is not a server's answer to our request
	// (wrong mode or version, origin not echoed, no transmit time,
	// stratum above 15).
	ErrBadReply = errors.New("ntp: not a valid reply")
	// ErrUnsynced: the server answered but has no time to give (leap
	// indicator 3, or stratum 0: a kiss-o'-death such as RATE or DENY).
	ErrUnsynced = errors.New("ntp: server not synchronized")
)

// Response is the outcome of one client exchange.
type Response struct {
	// Time is the server's clock when the reply arrived (the local
	// receive time corrected by Offset). Wall clock only.
	Time time.Time
	// Offset is how far the server is ahead of the local clock: local
	// time + Offset = server time.
	Offset time.Duration
	// RTT is the round-trip delay, not counting the server's own
	// processing time.
	RTT     time.Duration
	Stratum uint8
	Leap    Leap
	// RefID, RootDelay and RootDispersion are the server's, as sent.
	RefID          uint32
	RootDelay      time.Duration
	RootDispersion time.Duration
	// Addr is the address that answered (a name may resolve to several).
	Addr netip.Addr
}

// Query runs one SNTP client exchange with server ("host", "host:port",
// "[v6]:port"; port 123 by default) and validates the reply.
//
// The request's transmit timestamp is random, not the local time (as
// chrony's client and RFC 9109 advise): the echo a reply must carry is
// then unguessable to an off-path spoofer, and the local clock — which on
// the gate may be the image's build time — is not disclosed.
func Query(ctx context.Context, server string) (Response, error) {
	ctx, cancel := context.WithTimeout(ctx, QueryTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", hostPort(server))
	if err != nil {
		return Response{}, fmt.Errorf("ntp %s: %w", server, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()

	var nonce [8]byte
	rand.Read(nonce[:]) // never fails (crypto/rand, Go >= 1.24)
	req := Packet{Version: Version, Mode: ModeClient, Transmit: Timestamp(binary.BigEndian.Uint64(nonce[:]))}
	sent := time.Now()
	if _, err := conn.Write(req.Marshal()); err != nil {
		return Response{}, fmt.Errorf("ntp %s: %w", server, err)
	}
	buf := make([]byte, 1024)
	n, err := conn.Read(buf)
	// Monotonic: a step of the local clock during the exchange does not
	// distort the arrival time.
	arrived := sent.Add(time.Since(sent))
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return Response{}, fmt.Errorf("ntp %s: %w", server, err)
	}
	reply, err := Parse(buf[:n])
	if err != nil {
		return Response{}, fmt.Errorf("ntp %s: %w: %w", server, ErrBadReply, err)
	}
	if err := validate(req, reply); err != nil {
		return Response{}, fmt.Errorf("ntp %s: %w", server, err)
	}
	r := measure(reply, sent, arrived)
	if ap, err := netip.ParseAddrPort(conn.RemoteAddr().String()); err == nil {
		r.Addr = ap.Addr().Unmap()
	}
	return r, nil
}

// hostPort adds the default port to a server with none.
func hostPort(server string) string {
	if _, _, err := net.SplitHostPort(server); err == nil {
		return server
	}
	return net.JoinHostPort(server, DefaultPort)
}

// validate is RFC 4330 §5's list of checks on a reply to req.
func validate(req, reply Packet) error {
	switch {
	case reply.Mode != ModeServer:
		return fmt.Errorf("%w: mode %d", ErrBadReply, reply.Mode)
	case reply.Version < 1 || reply.Version > Version:
		return fmt.Errorf("%w: version %d", ErrBadReply, reply.Version)
	case reply.Origin != req.Transmit:
		return fmt.Errorf("%w: origin timestamp does not echo the request", ErrBadReply)
	case reply.Transmit == 0:
		return fmt.Errorf("%w: zero transmit timestamp", ErrBadReply)
	case reply.Stratum == 0:
		return fmt.Errorf("%w: kiss code %q", ErrUnsynced, RefIDString(reply.RefID))
	case reply.Stratum > 15:
		return fmt.Errorf("%w: stratum %d", ErrBadReply, reply.Stratum)
	case reply.Leap == LeapUnsync:
		return fmt.Errorf("%w: leap indicator 3", ErrUnsynced)
	}
	return nil
}

// measure is RFC 5905's on-wire calculation. T1 and T4 are local, T2 and
// T3 the server's; offsets are taken on timestamps so that an era
// boundary between the two clocks does not matter.
func measure(reply Packet, sent, arrived time.Time) Response {
	t1, t4 := TimestampOf(sent), TimestampOf(arrived)
	t2, t3 := reply.Receive, reply.Transmit
	if t2 == 0 {
		t2 = t3 // some SNTP servers leave it out
	}
	offset := (t2.Sub(t1) + t3.Sub(t4)) / 2
	rtt := arrived.Sub(sent) - t3.Sub(t2)
	if rtt < 0 {
		rtt = 0 // server clock granularity
	}
	return Response{
		Time:           arrived.Add(offset).Round(0),
		Offset:         offset,
		RTT:            rtt,
		Stratum:        reply.Stratum,
		Leap:           reply.Leap,
		RefID:          reply.RefID,
		RootDelay:      reply.RootDelay.Duration(),
		RootDispersion: reply.RootDispersion.Duration(),
	}
}

// ErrNoServer: Sync found no server that answered validly.
var ErrNoServer = errors.New("ntp: no server answered")

// Sync asks servers in order and returns the first valid answer, or
// ErrNoServer wrapping every server's error. Each server gets at most
// QueryTimeout.
func Sync(ctx context.Context, servers []string) (Response, error) {
	if len(servers) == 0 {
		return Response{}, fmt.Errorf("%w: none configured", ErrNoServer)
	}
	var errs []error
	for _, s := range servers {
		r, err := Query(ctx, s)
		if err == nil {
			return r, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return Response{}, fmt.Errorf("%w: %w", ErrNoServer, errors.Join(errs...))
}

package ntp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// Source is the clock Serve tells clients about.
type Source interface {
	// Now is the time to serve.
	Now() time.Time
	// Stratum is 1..15: upstream's + 1 once synced, LocalStratum before.
	Stratum() uint8
	// RefID names the reference: upstream's address, or "LOCL".
	RefID() uint32
	// RefTime is when the clock was last set from its reference.
	RefTime() time.Time
}

// precision is what Serve announces: 2^-20 s (about 1 µs), Linux's clock
// resolution as ntpd and chrony measure it on common hardware.
const precision = -20

// phi is RFC 5905's frequency tolerance (15 ppm): how fast an unsynced
// clock's error bound grows.
const phi = 15e-6

// minDispersion is the root dispersion announced right after a sync.
const minDispersion = time.Millisecond

// Serve answers NTP client requests (mode 3) arriving on pc with the time
// of src, as a server (mode 4), until ctx ends; it closes pc. Anything else
// (other modes, versions 0 or above 4, short datagrams) is dropped. There is
// no rate limiting: the gate serves its own lab.
func Serve(ctx context.Context, pc net.PacketConn, src Source, log *slog.Logger) error {
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	defer pc.Close()
	buf := make([]byte, 1024)
	for {
		n, peer, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("ntp read: %w", err)
		}
		received := src.Now()
		reply, ok := Answer(buf[:n], received, src)
		if !ok {
			log.Debug("ntp: ignored packet", "peer", peer.String(), "len", n)
			continue
		}
		if _, err := pc.WriteTo(reply, peer); err != nil {
			log.Warn("ntp: send failed", "peer", peer.String(), "err", err)
			continue
		}
		log.Debug("ntp: answered", "peer", peer.String(), "stratum", src.Stratum())
	}
}

// Answer is the reply to one datagram received at received, or false when
// it is not a client request. It never panics, whatever req holds.
func Answer(req []byte, received time.Time, src Source) ([]byte, bool) {
	p, err := Parse(req)
	if err != nil || p.Mode != ModeClient || p.Version < 1 || p.Version > Version {
		return nil, false
	}
	ref := src.RefTime()
	disp := minDispersion
	if age := received.Sub(ref); age > 0 && !ref.IsZero() {
		disp += time.Duration(float64(age) * phi)
	}
	reply := Packet{
		Leap:      LeapNone,
		Version:   p.Version, // answer in the client's version (RFC 5905)
		Mode:      ModeServer,
		Stratum:   src.Stratum(),
		Poll:      p.Poll,
		Precision: precision,
		// Source carries no upstream root delay: it is left at 0, and
		// the dispersion grows from the last sync at 15 ppm.
		RootDispersion: ShortOf(disp),
		RefID:          src.RefID(),
		RefTime:        TimestampOf(ref),
		Origin:         p.Transmit,
		Receive:        TimestampOf(received),
	}
	if ref.IsZero() {
		reply.RefTime = 0
	}
	reply.Transmit = TimestampOf(src.Now())
	return reply.Marshal(), true
}

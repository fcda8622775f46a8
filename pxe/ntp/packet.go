package ntp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// PacketLen is the size of the NTP header; extension fields and MACs that
// may follow it are ignored.
const PacketLen = 48

// ErrShort: a datagram too short to hold an NTP header.
var ErrShort = errors.New("ntp: packet shorter than 48 bytes")

// Leap is the leap indicator (LI).
type Leap uint8

// Leap indicator values (RFC 5905 §7.3).
const (
	LeapNone   Leap = 0
	LeapAdd    Leap = 1 // last minute of the day has 61 seconds
	LeapDel    Leap = 2 // last minute of the day has 59 seconds
	LeapUnsync Leap = 3 // the clock is not synchronized (alarm)
)

// Mode is the association mode.
type Mode uint8

// Modes kiln sends or answers.
const (
	ModeClient Mode = 3
	ModeServer Mode = 4
)

// Version is the protocol version kiln sends.
const Version = 4

// Packet is the NTP header (RFC 5905 §7.3; RFC 4330 for SNTP).
type Packet struct {
	Leap      Leap
	Version   uint8
	Mode      Mode
	Stratum   uint8
	Poll      int8 // log2 seconds
	Precision int8 // log2 seconds
	// RootDelay and RootDispersion are NTP short format (16.16 seconds).
	RootDelay      Short
	RootDispersion Short
	// RefID: an IPv4 address (or the first 4 bytes of the MD5 of an
	// IPv6 one) for stratum >= 2, four ASCII characters ("LOCL", "GPS")
	// at stratum 1, a kiss code ("RATE", "DENY") at stratum 0.
	RefID    uint32
	RefTime  Timestamp
	Origin   Timestamp
	Receive  Timestamp
	Transmit Timestamp
}

// Parse decodes the header of an NTP datagram. It checks only the length:
// what a header says is for the caller to judge.
func Parse(b []byte) (Packet, error) {
	if len(b) < PacketLen {
		return Packet{}, fmt.Errorf("%w (%d)", ErrShort, len(b))
	}
	be := binary.BigEndian
	return Packet{
		Leap:           Leap(b[0] >> 6),
		Version:        (b[0] >> 3) & 7,
		Mode:           Mode(b[0] & 7),
		Stratum:        b[1],
		Poll:           int8(b[2]),
		Precision:      int8(b[3]),
		RootDelay:      Short(be.Uint32(b[4:])),
		RootDispersion: Short(be.Uint32(b[8:])),
		RefID:          be.Uint32(b[12:]),
		RefTime:        Timestamp(be.Uint64(b[16:])),
		Origin:         Timestamp(be.Uint64(b[24:])),
		Receive:        Timestamp(be.Uint64(b[32:])),
		Transmit:       Timestamp(be.Uint64(b[40:])),
	}, nil
}

// Marshal encodes the header (48 bytes). Fields wider than their bits
// (Leap > 3, Version > 7, Mode > 7) are truncated to them.
func (p Packet) Marshal() []byte {
	b := make([]byte, PacketLen)
	be := binary.BigEndian
	b[0] = byte(p.Leap&3)<<6 | (p.Version&7)<<3 | byte(p.Mode&7)
	b[1] = p.Stratum
	b[2] = byte(p.Poll)
	b[3] = byte(p.Precision)
	be.PutUint32(b[4:], uint32(p.RootDelay))
	be.PutUint32(b[8:], uint32(p.RootDispersion))
	be.PutUint32(b[12:], p.RefID)
	be.PutUint64(b[16:], uint64(p.RefTime))
	be.PutUint64(b[24:], uint64(p.Origin))
	be.PutUint64(b[32:], uint64(p.Receive))
	be.PutUint64(b[40:], uint64(p.Transmit))
	return b
}

// RefIDString spells a refid of ASCII letters ("LOCL", "RATE"), as stratum
// 0 and 1 use them; other refids print as a dotted quad.
func RefIDString(id uint32) string {
	b := binary.BigEndian.AppendUint32(nil, id)
	n := len(b)
	for n > 0 && b[n-1] == 0 {
		n--
	}
	ascii := n > 0
	for _, c := range b[:n] {
		if c < 0x20 || c > 0x7e {
			ascii = false
		}
	}
	if ascii {
		return string(b[:n])
	}
	return fmt.Sprintf("%d.%d.%d.%d", b[0], b[1], b[2], b[3])
}

// RefIDOf packs up to four ASCII characters into a refid ("LOCL").
func RefIDOf(s string) uint32 {
	var b [4]byte
	copy(b[:], s)
	return binary.BigEndian.Uint32(b[:])
}

// Short is the NTP short format: 16.16 fixed-point seconds.
type Short uint32

// Duration converts s, rounding to the nanosecond.
func (s Short) Duration() time.Duration {
	return time.Duration((uint64(s)*uint64(time.Second) + 1<<15) >> 16)
}

// ShortOf converts d, saturating below 0 and above 65535.99998 s.
func ShortOf(d time.Duration) Short {
	if d <= 0 {
		return 0
	}
	if d >= 1<<16*time.Second {
		return 1<<32 - 1
	}
	return Short((uint64(d) << 16) / uint64(time.Second))
}

// Timestamp is the NTP timestamp format: 32.32 fixed-point seconds since
// the start of the current era (era 0 began 1900-01-01, era 1 begins
// 2036-02-07T06:28:16Z). Zero means "unknown".
type Timestamp uint64

// ntpToUnix is 1970-01-01 in era-0 NTP seconds.
const ntpToUnix = 2208988800

// TimestampOf encodes t (the era is implicit: only the seconds modulo
// 2^32 go on the wire).
func TimestampOf(t time.Time) Timestamp {
	secs := uint64(t.Unix()+ntpToUnix) & (1<<32 - 1)
	frac := (uint64(t.Nanosecond()) << 32) / uint64(time.Second)
	return Timestamp(secs<<32 | frac)
}

// Time decodes ts, which carries no era: it resolves to the era that puts
// it between 1968-01-20T03:14:08Z and 2104-02-26T09:42:23Z (seconds with
// the high bit clear are taken as era 1), so the wrap in 2036 is seamless
// for any clock that is later than 1968. The zero timestamp is the zero
// time.
func (ts Timestamp) Time() time.Time {
	if ts == 0 {
		return time.Time{}
	}
	secs := int64(ts >> 32)
	if secs&(1<<31) == 0 {
		secs += 1 << 32 // era 1
	}
	nsec := (uint64(ts&(1<<32-1))*uint64(time.Second) + 1<<31) >> 32
	return time.Unix(secs-ntpToUnix, int64(nsec)).UTC()
}

// Sub is ts - u as a duration, modulo 2^32 seconds: correct across an era
// boundary as long as the two are within 68 years of each other.
func (ts Timestamp) Sub(u Timestamp) time.Duration {
	d := int64(ts - u) // signed 32.32
	secs := d >> 32
	frac := uint64(d) & (1<<32 - 1)
	return time.Duration(secs)*time.Second + time.Duration((frac*uint64(time.Second)+1<<31)>>32)
}

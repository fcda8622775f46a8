package ntp

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestParseMarshal(t *testing.T) {
	for _, tc := range []struct {
		name string
		wire string
		want Packet
	}{
		{"client request (ntpdig)",
			"23000000" + "00000000" + "00000000" + "00000000" + "0000000000000000" + "0000000000000000" + "0000000000000000" + "83aa7e8080000000",
			Packet{Version: 4, Mode: ModeClient, Transmit: 0x83aa7e80_80000000}},
		{"chrony reply, local stratum 10",
			"240a03e7" + "00000000" + "00000042" + "7f7f0101" + "ecc3c3f000000000" + "1122334455667788" + "ecc3c3f180000000" + "ecc3c3f180001000",
			Packet{Leap: LeapNone, Version: 4, Mode: ModeServer, Stratum: 10, Poll: 3, Precision: -25,
				RootDispersion: 0x42, RefID: 0x7f7f0101, RefTime: 0xecc3c3f0_00000000, Origin: 0x11223344_55667788,
				Receive: 0xecc3c3f1_80000000, Transmit: 0xecc3c3f1_80001000}},
		{"unsynced v3 reply, leap bits and negative poll",
			"dc00fa00" + "00010000" + "ffffffff" + "52415445" + "0000000000000000" + "0000000000000001" + "0000000000000000" + "0000000000000000",
			Packet{Leap: LeapUnsync, Version: 3, Mode: ModeServer, Poll: -6, RootDelay: 0x10000,
				RootDispersion: 0xffffffff, RefID: RefIDOf("RATE"), Origin: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wire := mustHex(tc.wire)
			got, err := Parse(wire)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Parse (-want +got):\n%s", diff)
			}
			if back := tc.want.Marshal(); !bytes.Equal(back, wire) {
				t.Errorf("Marshal = %x, want %x", back, wire)
			}
			// Extension fields or a MAC after the header are ignored.
			if got2, err := Parse(append(wire, make([]byte, 20)...)); err != nil || got2 != got {
				t.Errorf("with a MAC: %+v, %v", got2, err)
			}
		})
	}
}

func TestParseShort(t *testing.T) {
	for _, n := range []int{0, 1, 47} {
		if _, err := Parse(make([]byte, n)); !errors.Is(err, ErrShort) {
			t.Errorf("Parse(%d bytes) err = %v, want ErrShort", n, err)
		}
	}
}

func TestMarshalTruncates(t *testing.T) {
	b := Packet{Leap: 7, Version: 12, Mode: 11}.Marshal()
	if b[0] != 3<<6|4<<3|3 {
		t.Errorf("first byte %08b", b[0])
	}
}

func TestTimestamp(t *testing.T) {
	for _, tc := range []struct {
		name string
		time string
		ts   Timestamp
	}{
		{"unix epoch", "1970-01-01T00:00:00Z", 0x83aa7e80_00000000},
		{"y2k", "2000-01-01T00:00:00Z", 0xbc17c200_00000000},
		{"half a second", "2026-11-23T00:00:00.5Z", 0xeeae0080_80000000},
		{"nanoseconds survive", "2026-11-23T00:00:00.123456789Z", 0xeeae0080_1f9add37},
		{"last second of era 0", "2036-02-07T06:28:15Z", 0xffffffff_00000000},
		{"era 1, half a second in", "2036-02-07T06:28:16.5Z", 0x00000000_80000000},
		{"era 1, a day in", "2036-02-08T06:28:16Z", 0x00015180_00000000},
		{"earliest time era 0 keeps", "1968-01-20T03:14:08Z", 0x80000000_00000000},
		{"latest time era 1 reaches", "2104-02-26T09:42:23Z", 0x7fffffff_00000000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tm, err := time.Parse(time.RFC3339Nano, tc.time)
			if err != nil {
				t.Fatal(err)
			}
			if got := TimestampOf(tm); got != tc.ts {
				t.Errorf("TimestampOf = %#016x, want %#016x", uint64(got), uint64(tc.ts))
			}
			if got := tc.ts.Time(); !got.Equal(tm) {
				t.Errorf("Time = %s, want %s", got.Format(time.RFC3339Nano), tc.time)
			}
		})
	}
	if !Timestamp(0).Time().IsZero() {
		t.Error("the zero timestamp is not the zero time")
	}
}

func TestTimestampRoundTrip(t *testing.T) {
	base := time.Date(2026, 11, 23, 3, 38, 18, 0, time.UTC)
	for ns := int64(0); ns < 1e9; ns += 999_983 { // a prime step through the second
		tm := base.Add(time.Duration(ns))
		if got := TimestampOf(tm).Time(); !got.Equal(tm) {
			t.Fatalf("%s -> %s", tm.Format(time.RFC3339Nano), got.Format(time.RFC3339Nano))
		}
	}
}

func TestTimestampSub(t *testing.T) {
	at := func(s string) Timestamp {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return TimestampOf(tm)
	}
	for _, tc := range []struct {
		a, b string
		want time.Duration
	}{
		{"2026-11-23T00:00:01Z", "2026-11-23T00:00:00.25Z", 750 * time.Millisecond},
		{"2026-11-23T00:00:00Z", "2026-11-23T00:00:01.5Z", -1500 * time.Millisecond},
		{"2036-02-07T06:28:17Z", "2036-02-07T06:28:14Z", 3 * time.Second}, // across the era wrap
		{"2036-02-07T06:28:14Z", "2036-02-07T06:28:17.000000001Z", -3*time.Second - time.Nanosecond},
		{"2026-11-23T00:00:00Z", "2000-01-01T00:00:00Z", time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC).Sub(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC))},
	} {
		if got := at(tc.a).Sub(at(tc.b)); got != tc.want {
			t.Errorf("%s - %s = %s, want %s", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestShort(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		s    Short
		back time.Duration
	}{
		{0, 0, 0},
		{-time.Second, 0, 0},
		{time.Second, 0x10000, time.Second},
		{1500 * time.Millisecond, 0x18000, 1500 * time.Millisecond},
		{time.Millisecond, 0x41, 991821 * time.Nanosecond}, // 16 bits of fraction: ~15 µs steps
		{100000 * time.Second, 0xffffffff, 65535999984741 * time.Nanosecond},
	} {
		if got := ShortOf(tc.d); got != tc.s {
			t.Errorf("ShortOf(%s) = %#x, want %#x", tc.d, uint32(got), uint32(tc.s))
		}
		if got := tc.s.Duration(); got != tc.back {
			t.Errorf("Short(%#x).Duration() = %s, want %s", uint32(tc.s), got, tc.back)
		}
	}
}

func TestRefID(t *testing.T) {
	for _, tc := range []struct {
		id   uint32
		want string
	}{
		{RefIDOf("LOCL"), "LOCL"},
		{RefIDOf("GPS"), "GPS"},
		{RefIDOf("RATE"), "RATE"},
		{0x7f7f0101, "127.127.1.1"},
		{0xc0000201, "192.0.2.1"},
		{0, "0.0.0.0"},
	} {
		if got := RefIDString(tc.id); got != tc.want {
			t.Errorf("RefIDString(%#x) = %q, want %q", tc.id, got, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(mustHex("23000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"))
	f.Add(Packet{Version: 3, Mode: ModeClient, Transmit: 0xeeae0080_80000000}.Marshal())
	f.Add(Packet{Version: 4, Mode: ModeServer, Stratum: 2, Leap: LeapUnsync}.Marshal())
	f.Add(append(Packet{Version: 4, Mode: ModeClient}.Marshal(), make([]byte, 20)...))
	f.Add([]byte{})
	f.Add([]byte{0x1b})
	src := fixedSource{now: time.Date(2036, 2, 7, 6, 28, 15, 999_999_999, time.UTC), stratum: 3, refID: 0xc0000201}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			if len(b) >= PacketLen {
				t.Fatalf("Parse(%d bytes): %v", len(b), err)
			}
			return
		}
		if got := p.Marshal(); !bytes.Equal(got, b[:PacketLen]) {
			t.Fatalf("Marshal(Parse(b)) = %x, want %x", got, b[:PacketLen])
		}
		// The server path never panics and only ever sends a server
		// packet that echoes the request.
		reply, ok := Answer(b, src.now, src)
		if !ok {
			return
		}
		r, err := Parse(reply)
		if err != nil || r.Mode != ModeServer || r.Origin != p.Transmit || r.Version != p.Version {
			t.Fatalf("reply %+v (%v) to %+v", r, err, p)
		}
	})
}

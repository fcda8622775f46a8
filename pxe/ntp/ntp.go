// Package ntp owns the gate's time service. A Raspberry Pi 4 has no RTC:
// the gate boots with its clock at the image's build time (the
// appliance's floor), sets it from the profile's network.ntp servers when
// they are reachable, and serves time to the lab, so that Ceph and TLS on
// the lab's machines see agreeing clocks — with the internet or without.
//
//   - Packet, Parse, Marshal: the 48-byte NTP header (RFC 5905 §7.3, the
//     part SNTP uses, RFC 4330), with era-aware timestamps (2036 wrap).
//   - Query, Sync: one SNTP client exchange, validated; the first server
//     of a list that answers.
//   - Serve, Answer: a UDP loop answering client requests (mode 3) as a
//     server (mode 4) from a Source.
//   - Clock: the Source the gate serves: stratum upstream+1 after a sync,
//     and a local clock (stratum 10, refid "LOCL", like chrony's `local
//     stratum 10`) before any sync or when the last one is too old.
//
// Hand-written rather than github.com/beevik/ntp (v1.6.0 is on the proxy
// and well kept): that library is a client only and the gate must serve,
// so the header codec is needed here anyway; on top of it the client is
// one datagram and five checks, and it takes a context (beevik/ntp's
// Query takes a timeout only). Both sides are checked against Debian's
// chrony in the tests.
//
// The gate steps its clock once per sync rather than slewing it: the
// lab's clients (chrony, systemd-timesyncd) discipline themselves, and a
// gate that is off by years at boot must jump. Stepping, and never going
// below the floor, are the appliance's; Clock only reports what it is told.
package ntp

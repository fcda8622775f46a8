// Package ndp answers IPv6 router solicitations on the lab network, in
// full DHCP mode, with a router advertisement that announces no router.
//
// iPXE configures IPv4 (DHCP) and IPv6 (router solicitation) together and
// boots only when both are done: on a LAN where nothing answers its
// solicitations it waits about 16 s at every netboot, installed machines'
// included (seen in the UEFI rehearsal's capture: six solicitations, then
// the first HTTP request). Where the gate is the lab's DHCP server there
// is no ISP box to answer for the LAN, so the gate does: router lifetime
// 0 (not a default router), no prefix, no managed/other flags (nothing to
// ask DHCPv6 for). iPXE, and any host, ends its autoconfiguration at once
// and keeps no IPv6 route from it. In proxy mode the ISP box owns the LAN
// and the gate stays silent.
package ndp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"

	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// RFC 4861 numbers.
const (
	typeRouterSolicitation  = 133
	typeRouterAdvertisement = 134
	optSourceLinkAddr       = 1
	// hopLimit: NDP messages are sent, and only accepted, with 255, which
	// no router forwards (§6.1.1).
	hopLimit = 255
)

var allRouters = net.ParseIP("ff02::2")

// Conn is a raw ICMPv6 socket on one interface that receives router
// solicitations.
type Conn struct {
	pc  *ipv6.PacketConn
	ifi *net.Interface
}

// Listen opens the socket on iface: bound to it, joined to the
// all-routers group solicitations are sent to, and filtered to router
// solicitations.
func Listen(ctx context.Context, iface string) (*Conn, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("ndp: %w", err)
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = unix.BindToDevice(int(fd), iface) }); err != nil {
			return err
		}
		return serr
	}}
	c, err := lc.ListenPacket(ctx, "ip6:ipv6-icmp", "::")
	if err != nil {
		return nil, fmt.Errorf("ndp: icmpv6 socket on %s: %w", iface, err)
	}
	pc := ipv6.NewPacketConn(c)
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterSolicitation)
	err = errors.Join(
		pc.SetICMPFilter(&f),
		pc.JoinGroup(ifi, &net.IPAddr{IP: allRouters}),
		pc.SetControlMessage(ipv6.FlagHopLimit, true),
		pc.SetHopLimit(hopLimit),
		pc.SetMulticastHopLimit(hopLimit),
		pc.SetMulticastLoopback(false),
	)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("ndp: on %s: %w (is IPv6 off on it?)", iface, err)
	}
	return &Conn{pc: pc, ifi: ifi}, nil
}

// Close closes the socket.
func (c *Conn) Close() error { return c.pc.Close() }

// Serve answers each valid router solicitation until ctx ends; it closes
// c. A reply goes to the solicitor's own address (to all nodes when it
// has none yet), so other hosts see nothing.
func Serve(ctx context.Context, c *Conn, log *slog.Logger) error {
	stop := context.AfterFunc(ctx, func() { c.pc.Close() })
	defer stop()
	defer c.pc.Close()
	buf := make([]byte, 1500)
	for {
		n, cm, src, err := c.pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("ndp read: %w", err)
		}
		from, _ := src.(*net.IPAddr)
		if from == nil || cm == nil {
			continue
		}
		if err := CheckSolicitation(buf[:n], cm.HopLimit, from.IP); err != nil {
			log.Debug("ndp: ignored", "from", from.String(), "err", err)
			continue
		}
		dst := &net.IPAddr{IP: from.IP, Zone: c.ifi.Name}
		if from.IP.IsUnspecified() {
			dst.IP = net.IPv6linklocalallnodes
		}
		if _, err := c.pc.WriteTo(Advertisement(c.ifi.HardwareAddr), nil, dst); err != nil {
			log.Warn("ndp: send failed", "to", dst.String(), "err", err)
			continue
		}
		log.Debug("ndp: no router here", "to", dst.String())
	}
}

// CheckSolicitation validates a received router solicitation (the ICMPv6
// message, checksum already checked by the kernel) as RFC 4861 §6.1.1
// asks: hop limit 255, code 0, at least 8 bytes, options well formed,
// and no source link-layer address from the unspecified address.
func CheckSolicitation(msg []byte, hops int, src net.IP) error {
	if hops != hopLimit {
		return fmt.Errorf("hop limit %d, want %d", hops, hopLimit)
	}
	if len(msg) < 8 {
		return fmt.Errorf("%d bytes, want at least 8", len(msg))
	}
	if msg[0] != typeRouterSolicitation || msg[1] != 0 {
		return fmt.Errorf("type %d code %d: not a router solicitation", msg[0], msg[1])
	}
	for opts := msg[8:]; len(opts) > 0; {
		if len(opts) < 2 || opts[1] == 0 || int(opts[1])*8 > len(opts) {
			return errors.New("malformed option")
		}
		if opts[0] == optSourceLinkAddr && src.IsUnspecified() {
			return errors.New("source link-layer address from the unspecified address")
		}
		opts = opts[int(opts[1])*8:]
	}
	return nil
}

// Advertisement is the gate's router advertisement: no hop limit advice,
// no flags, router lifetime 0, reachable and retransmit times
// unspecified, and the gate's link-layer address when it has one.
func Advertisement(mac net.HardwareAddr) []byte {
	// Type, code, checksum (left 0: the kernel computes it for ICMPv6
	// raw sockets), then hop limit, flags, lifetime, reachable, retrans.
	b := make([]byte, 16)
	b[0] = typeRouterAdvertisement
	if len(mac) == 6 {
		b = append(b, optSourceLinkAddr, 1)
		b = append(b, mac...)
	}
	return b
}

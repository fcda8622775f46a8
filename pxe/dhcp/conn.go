package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrPortInUse: another process (a second DHCP server, dnsmasq, a second
// kiln) holds the port on this interface. The gate refuses to run beside
// it rather than share the port silently.
var ErrPortInUse = errors.New("port already in use on this host")

// Listen opens a UDP socket on 0.0.0.0:port bound to iface, so that
// broadcasts go out (and come in) on the lab network only.
//
// It deliberately sets neither SO_REUSEADDR nor SO_REUSEPORT (server4 sets
// both): with them a second DHCP server binds the same port silently and
// the kernel splits the clients between the two. Without them, whichever
// server comes second gets EADDRINUSE.
func Listen(ctx context.Context, iface string, port int) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1); serr != nil {
				return
			}
			if iface != "" {
				serr = unix.BindToDevice(int(fd), iface)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(ctx, "udp4", net.JoinHostPort("0.0.0.0", strconv.Itoa(port)))
	if errors.Is(err, unix.EADDRINUSE) {
		return nil, fmt.Errorf("udp %d on %s: %w (another DHCP server running here?)", port, iface, ErrPortInUse)
	}
	if err != nil {
		return nil, fmt.Errorf("udp %d on %s: %w", port, iface, err)
	}
	return pc.(*net.UDPConn), nil
}

// Serve answers requests arriving on conn with h until ctx ends; it closes
// conn. Replies go to clientPort (68) unless via is ViaProxy.
func Serve(ctx context.Context, conn *net.UDPConn, h Handler, via Via, clientPort int, log *slog.Logger) error {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	buf := make([]byte, 65536)
	for {
		n, peer, err := conn.ReadFromUDP(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("dhcp read: %w", err)
		}
		// Handled inline: one packet at a time keeps replies ordered
		// and the handlers need no more than a map lookup and a write.
		reply, dst := Respond(h, log, buf[:n], peer, via, clientPort)
		if reply == nil {
			continue
		}
		if _, err := conn.WriteToUDP(reply, dst); err != nil {
			log.Warn("dhcp: send failed", "to", dst.String(), "err", err)
		}
	}
}

package httpd

import (
	"context"
	"net"
	"net/http"
	"syscall"

	"golang.org/x/sys/unix"
)

// A bundle file is sent corked (TCP_CORK, what nginx's tcp_nopush does
// around sendfile): the kernel then only sends full segments, the headers
// in the first, instead of pushing each of sendfile's steps out as soon as
// it is queued, as Go's default TCP_NODELAY does. The receiver handles
// fewer, larger packets. One stream of a 1 GiB role image over a veth pair
// went from 0.80× nginx to 0.87–0.98× (BENCHMARKS.md, HTTP).

type connKey struct{}

// ConnContext is the http.Server.ConnContext of the gate's plain HTTP
// server: it keeps each connection's TCP socket in its requests' context,
// for file responses to cork it. Without it they are sent uncorked.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*net.TCPConn); ok {
		return context.WithValue(ctx, connKey{}, tc)
	}
	return ctx
}

// cork sets TCP_CORK on r's connection and returns what lifts it, which
// sends what is left queued at once. Best effort: a socket that refuses
// is sent uncorked.
func cork(r *http.Request) (uncork func()) {
	tc, ok := r.Context().Value(connKey{}).(*net.TCPConn)
	if !ok || setCork(tc, 1) != nil {
		return func() {}
	}
	return func() { setCork(tc, 0) }
}

func setCork(tc *net.TCPConn, v int) error {
	rc, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, unix.TCP_CORK, v)
	}); err != nil {
		return err
	}
	return serr
}

package httpd

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"

	"github.com/kilnlab/kiln/pxe/internal/fakebundle"
	"golang.org/x/sys/unix"
)

func corkOf(t *testing.T, tc *net.TCPConn) int {
	t.Helper()
	rc, err := tc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, unix.TCP_CORK) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

// TestFileResponseCorked: a bundle file goes out corked, and the cork is
// lifted when the response ends, or the next response on the same
// keep-alive connection would wait for the kernel's 200 ms cork timer.
func TestFileResponseCorked(t *testing.T) {
	f := newFixture(t)
	conns := make(chan *net.TCPConn, 4)
	during := make(chan int, 4) // the cork as each body starts
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tc := r.Context().Value(connKey{}).(*net.TCPConn)
		cw := &corkWatch{ResponseWriter: w, check: func() { during <- corkOf(t, tc) }}
		f.handler.ServeHTTP(cw, r)
	})
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		conns <- c.(*net.TCPConn)
		return ConnContext(ctx, c)
	}
	srv.Start()
	defer srv.Close()
	for range 2 { // the second request reuses the connection
		resp, err := srv.Client().Get(srv.URL + "/files/amd64/vmlinuz")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != string(fakebundle.Content("amd64/vmlinuz")) {
			t.Fatalf("body %q", b)
		}
	}
	if len(conns) != 1 {
		t.Fatalf("%d connections, want 1 (keep-alive)", len(conns))
	}
	tc := <-conns
	if got := corkOf(t, tc); got != 0 {
		t.Errorf("TCP_CORK after the responses = %d, want 0", got)
	}
	if len(during) != 2 {
		t.Errorf("%d bodies seen, want 2", len(during))
	}
	for i := range len(during) {
		if v := <-during; v != 1 {
			t.Errorf("response %d written with TCP_CORK %d, want 1", i, v)
		}
	}
}

// corkWatch checks the socket's cork when the file handler starts its
// body, which it sends with ReadFrom (sendfile).
type corkWatch struct {
	http.ResponseWriter
	check func()
}

func (c *corkWatch) ReadFrom(r io.Reader) (int64, error) {
	c.check()
	return c.ResponseWriter.(io.ReaderFrom).ReadFrom(r)
}

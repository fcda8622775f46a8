package dhcp

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"golang.org/x/sys/unix"
)

// TestSecondServerRefused: whoever binds the port second fails loudly,
// whether it is another kiln or a server that sets SO_REUSEPORT (server4).
func TestSecondServerRefused(t *testing.T) {
	ctx := context.Background()
	first, err := Listen(ctx, "lo", 0)
	if errors.Is(err, unix.EPERM) {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skipf("SO_BINDTODEVICE needs privileges here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	port := first.LocalAddr().(*net.UDPAddr).Port
	if c, err := Listen(ctx, "lo", port); !errors.Is(err, ErrPortInUse) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("second Listen = %v, want ErrPortInUse", err)
	}
	if c, err := server4.NewIPv4UDPConn("lo", &net.UDPAddr{Port: port}); err == nil {
		c.Close()
		t.Fatal("a SO_REUSEPORT server bound the gate's port beside it")
	}
}

package ndp

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/ipv6"

	"github.com/kilnlab/kiln/internal/roottest"
)

// rs is iPXE's router solicitation: type 133, code 0, checksum, reserved,
// and its source link-layer address option.
func rs(mac net.HardwareAddr) []byte {
	b := []byte{typeRouterSolicitation, 0, 0, 0, 0, 0, 0, 0}
	if mac != nil {
		b = append(append(b, optSourceLinkAddr, 1), mac...)
	}
	return b
}

var clientMAC = net.HardwareAddr{0x52, 0x54, 0, 0, 0x0b, 0x01}

func TestCheckSolicitation(t *testing.T) {
	ll := net.ParseIP("fe80::5054:ff:fe00:b01")
	tests := []struct {
		name string
		msg  []byte
		hops int
		src  net.IP
		err  string // substring; "" means valid
	}{
		{"iPXE's", rs(clientMAC), 255, ll, ""},
		{"no options", rs(nil), 255, ll, ""},
		{"from :: without its link address", rs(nil), 255, net.IPv6unspecified, ""},
		{"from :: with a link address", rs(clientMAC), 255, net.IPv6unspecified, "unspecified"},
		{"forwarded by a router", rs(clientMAC), 254, ll, "hop limit 254"},
		{"short", rs(nil)[:7], 255, ll, "7 bytes"},
		{"code 1", append([]byte{typeRouterSolicitation, 1}, rs(nil)[2:]...), 255, ll, "code 1"},
		{"an advertisement", Advertisement(clientMAC), 255, ll, "type 134"},
		{"zero-length option", append(rs(nil), 1, 0, 0, 0, 0, 0, 0, 0), 255, ll, "malformed"},
		{"option past the end", append(rs(nil), 1, 2, 0, 0, 0, 0, 0, 0), 255, ll, "malformed"},
		{"one byte of option", append(rs(nil), 1), 255, ll, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckSolicitation(tt.msg, tt.hops, tt.src)
			switch {
			case tt.err == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Errorf("got %v, want an error with %q", err, tt.err)
			}
		})
	}
}

func TestAdvertisement(t *testing.T) {
	gate := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x0a}
	want := []byte{
		134, 0, 0, 0, // type, code, checksum (the kernel's)
		0, 0, 0, 0, // hop limit, flags (no managed/other), router lifetime 0
		0, 0, 0, 0, 0, 0, 0, 0, // reachable, retrans: unspecified
		1, 1, 0x52, 0x54, 0, 0, 0, 0x0a, // source link-layer address
	}
	if diff := cmp.Diff(want, Advertisement(gate)); diff != "" {
		t.Errorf("advertisement (-want +got):\n%s", diff)
	}
	if got := Advertisement(nil); !bytes.Equal(got, want[:16]) {
		t.Errorf("without a MAC: % x, want % x", got, want[:16])
	}
}

func FuzzCheckSolicitation(f *testing.F) {
	f.Add(rs(clientMAC), 255, true)
	f.Add(rs(nil), 255, false)
	f.Add(append(rs(nil), 1, 0), 255, true)
	f.Fuzz(func(t *testing.T, msg []byte, hops int, unspecified bool) {
		src := net.ParseIP("fe80::1")
		if unspecified {
			src = net.IPv6unspecified
		}
		if CheckSolicitation(msg, hops, src) == nil && (len(msg) < 8 || msg[0] != typeRouterSolicitation || hops != hopLimit) {
			t.Fatalf("accepted % x with hop limit %d", msg, hops)
		}
	})
}

// TestNetns runs Serve on one end of a veth pair between two network
// namespaces the test creates, sends iPXE's solicitation from the other
// end and wants the advertisement back, with hop limit 255, from the
// gate's link-local address.
func TestNetns(t *testing.T) {
	roottest.Need(t, "netns tests")
	if _, err := exec.LookPath("ip"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip("no ip(8)")
	}
	gateNS, cliNS := fmt.Sprintf("kndp-%d-g", os.Getpid()), fmt.Sprintf("kndp-%d-c", os.Getpid())
	for _, ns := range []string{gateNS, cliNS} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		// No duplicate address detection: the link-local addresses are
		// usable as soon as the links are up.
		run(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")
	}
	run(t, "ip", "-n", gateNS, "link", "add", "veth0", "address", "52:54:00:00:00:0a", "type", "veth", "peer", "name", "veth1", "netns", cliNS)
	run(t, "ip", "-n", cliNS, "link", "set", "veth1", "address", clientMAC.String())
	run(t, "ip", "-n", gateNS, "link", "set", "veth0", "up")
	run(t, "ip", "-n", cliNS, "link", "set", "veth1", "up")

	ctx, cancel := context.WithCancel(context.Background())
	var conn *Conn
	if err := roottest.InNetns(gateNS, func() (err error) {
		conn, err = Listen(ctx, "veth0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, conn, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	err := roottest.InNetns(cliNS, func() error {
		c, err := net.ListenPacket("ip6:ipv6-icmp", "::")
		if err != nil {
			return err
		}
		defer c.Close()
		pc := ipv6.NewPacketConn(c)
		var f ipv6.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv6.ICMPTypeRouterAdvertisement)
		if err := pc.SetICMPFilter(&f); err != nil {
			return err
		}
		pc.SetMulticastHopLimit(255)
		pc.SetControlMessage(ipv6.FlagHopLimit, true)
		buf := make([]byte, 1500)
		// A few tries, as iPXE does: the links' addresses come a moment
		// after they are up (a hang bound, not a timing assertion).
		var last error
		for try := 0; try < 10; try++ {
			if _, err := pc.WriteTo(rs(clientMAC), nil, &net.IPAddr{IP: allRouters, Zone: "veth1"}); err != nil {
				last = fmt.Errorf("send solicitation: %w", err)
				time.Sleep(time.Second)
				continue
			}
			pc.SetReadDeadline(time.Now().Add(time.Second))
			n, cm, src, err := pc.ReadFrom(buf)
			if err != nil {
				last = err
				continue
			}
			if cm.HopLimit != 255 {
				return fmt.Errorf("advertisement with hop limit %d", cm.HopLimit)
			}
			if ip := src.(*net.IPAddr).IP; !ip.IsLinkLocalUnicast() {
				return fmt.Errorf("advertisement from %s, want the gate's link-local address", ip)
			}
			want := Advertisement(net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x0a})
			got := bytes.Clone(buf[:n])
			got[2], got[3] = 0, 0 // the kernel's checksum
			if diff := cmp.Diff(want, got); diff != "" {
				return fmt.Errorf("advertisement (-want +got):\n%s", diff)
			}
			return nil
		}
		return fmt.Errorf("no advertisement after 10 solicitations: %w", last)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

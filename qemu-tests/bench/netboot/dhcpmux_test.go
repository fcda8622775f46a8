package netboot

import (
	"context"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/net/bpf"
)

// ipv4UDP is an IPv4 packet of proto to dport with an IP header of ihl
// 32-bit words, as a datagram packet socket sees it.
func ipv4UDP(proto byte, ihl int, frag uint16, dport uint16) []byte {
	p := make([]byte, ihl*4+8+300)
	p[0] = 0x40 | byte(ihl)
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[6:], frag)
	p[9] = proto
	binary.BigEndian.PutUint16(p[ihl*4:], 67)
	binary.BigEndian.PutUint16(p[ihl*4+2:], dport)
	return p
}

func TestClientPortFilter(t *testing.T) {
	vm, err := bpf.NewVM(clientPortFilter())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"a DHCP reply", ipv4UDP(17, 5, 0, 68), true},
		{"a DHCP reply, IP options", ipv4UDP(17, 6, 0, 68), true},
		{"a first fragment (more fragments set)", ipv4UDP(17, 5, 0x2000, 68), true},
		{"a request to the servers", ipv4UDP(17, 5, 0, 67), false},
		{"TFTP data", ipv4UDP(17, 5, 0, 49152), false},
		{"TCP (HTTP) to port 68", ipv4UDP(6, 5, 0, 68), false},
		{"a later fragment", ipv4UDP(17, 5, 0x0010, 68), false},
	} {
		n, err := vm.Run(tc.pkt)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := n > 0; got != tc.want {
			t.Errorf("%s: accepted %v, want %v", tc.name, got, tc.want)
		}
	}
}

// fakeLink is a PacketConn whose writes go to a DHCP server in this
// process, which broadcasts its replies back: every reply reaches the
// mux, as every broadcast reaches the storm's socket.
type fakeLink struct {
	serve   func(*dhcpv4.DHCPv4) []*dhcpv4.DHCPv4
	replies chan []byte
	closed  chan struct{}
	once    sync.Once
}

func newFakeLink(serve func(*dhcpv4.DHCPv4) []*dhcpv4.DHCPv4) *fakeLink {
	return &fakeLink{serve: serve, replies: make(chan []byte, 1024), closed: make(chan struct{})}
}

func (l *fakeLink) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case p := <-l.replies:
		return copy(b, p), &net.UDPAddr{IP: net.IPv4(10, 77, 0, 1), Port: 67}, nil
	case <-l.closed:
		return 0, nil, net.ErrClosed
	}
}

func (l *fakeLink) WriteTo(b []byte, _ net.Addr) (int, error) {
	req, err := dhcpv4.FromBytes(b)
	if err != nil {
		return 0, err
	}
	for _, r := range l.serve(req) {
		l.replies <- r.ToBytes()
	}
	return len(b), nil
}

func (l *fakeLink) Close() error                     { l.once.Do(func() { close(l.closed) }); return nil }
func (l *fakeLink) LocalAddr() net.Addr              { return &net.UDPAddr{Port: 68} }
func (l *fakeLink) SetDeadline(time.Time) error      { return nil }
func (l *fakeLink) SetReadDeadline(time.Time) error  { return nil }
func (l *fakeLink) SetWriteDeadline(time.Time) error { return nil }

// lossyServer gives client i 10.77.1.(10+i), drops the first DISCOVER
// of every client, and sends beside each reply one to the same xid for
// another MAC, which the mux must not hand over.
func lossyServer(t *testing.T) func(*dhcpv4.DHCPv4) []*dhcpv4.DHCPv4 {
	var mu sync.Mutex
	seen := map[string]bool{}
	server := net.IPv4(10, 77, 0, 1)
	return func(req *dhcpv4.DHCPv4) []*dhcpv4.DHCPv4 {
		mu.Lock()
		first := req.MessageType() == dhcpv4.MessageTypeDiscover && !seen[req.ClientHWAddr.String()]
		seen[req.ClientHWAddr.String()] = true
		mu.Unlock()
		if first {
			return nil
		}
		typ := dhcpv4.MessageTypeOffer
		if req.MessageType() == dhcpv4.MessageTypeRequest {
			typ = dhcpv4.MessageTypeAck
		}
		yi := net.IPv4(10, 77, 1, 10+req.ClientHWAddr[5])
		reply, err := dhcpv4.NewReplyFromRequest(req, dhcpv4.WithMessageType(typ), dhcpv4.WithYourIP(yi),
			dhcpv4.WithServerIP(server), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(server)))
		if err != nil {
			t.Error(err)
			return nil
		}
		stray, _ := dhcpv4.NewReplyFromRequest(req, dhcpv4.WithMessageType(typ), dhcpv4.WithYourIP(net.IPv4(10, 77, 9, 9)),
			dhcpv4.WithHwAddr(net.HardwareAddr{2, 0, 0, 0, 0, 1}), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(server)))
		return []*dhcpv4.DHCPv4{stray, reply}
	}
}

func TestMuxDemuxAndRetry(t *testing.T) {
	m := newDHCPMux(newFakeLink(lossyServer(t)))
	m.timeout = 20 * time.Millisecond
	defer m.Close()
	macs, _ := Clients(40)
	var wg sync.WaitGroup
	for i, mac := range macs {
		wg.Go(func() {
			ack, err := m.dora(context.Background(), mac, pxeROM...)
			if err != nil {
				t.Errorf("%s: %v", mac, err)
				return
			}
			if want := net.IPv4(10, 77, 1, byte(10+i)); !ack.YourIPAddr.Equal(want) || ack.MessageType() != dhcpv4.MessageTypeAck {
				t.Errorf("%s: %s %s, want an ACK of %s", mac, ack.MessageType(), ack.YourIPAddr, want)
			}
		})
	}
	wg.Wait()
	if got := m.retries.Load(); got != int64(len(macs)) {
		t.Errorf("%d retries, want %d (one lost DISCOVER per client)", got, len(macs))
	}
	if got := m.sent.Load(); got != int64(3*len(macs)) {
		t.Errorf("%d sent, want %d", got, 3*len(macs))
	}
	if len(m.waiting) != 0 {
		t.Errorf("%d transactions left open", len(m.waiting))
	}
}

func TestMuxGivesUp(t *testing.T) {
	m := newDHCPMux(newFakeLink(func(*dhcpv4.DHCPv4) []*dhcpv4.DHCPv4 { return nil }))
	m.timeout = time.Millisecond
	defer m.Close()
	mac, _ := Clients(1)
	if _, err := m.dora(context.Background(), mac[0], pxeROM...); err == nil {
		t.Fatal("an exchange with no server succeeded")
	}
	if got := m.retries.Load(); got != romTries-1 {
		t.Errorf("%d retries, want %d", got, romTries-1)
	}
}

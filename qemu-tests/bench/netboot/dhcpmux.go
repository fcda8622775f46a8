package netboot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// A PXE ROM's retransmission: the PXE spec's DHCP timeouts are 4, 8, 16
// and 32 s, the packet sent again, with the same transaction ID, when one
// passes without a reply.
const (
	romTimeout = 4 * time.Second
	romTries   = 4
)

// dhcpMux is the one DHCP socket of a whole storm, or of a DHCP load,
// shared by its clients.
// A raw socket per client, as nclient4.New opens, has every client's
// socket receive every frame on the interface (the storm's TFTP and HTTP
// data too); under load replies went missing from those queues (dnsmasq
// answered 115 DISCOVERs and 122 REQUESTs for 100 exchanges), each
// costing its client a retransmission 4 s later, or the run. Here one
// socket, filtered in the kernel to UDP port 68, reads each reply once
// and hands it to the transaction waiting on its xid and chaddr.
type dhcpMux struct {
	conn net.PacketConn
	raw  *packet.Conn // the kernel's drop count; nil in tests
	// Each packet of an exchange is sent at most tries times, waiting
	// timeout for a reply the first time, twice that the second...:
	// romTimeout and romTries, as a ROM; set before the first exchange.
	timeout time.Duration
	tries   int

	mu      sync.Mutex
	waiting map[dhcpv4.TransactionID]*transaction

	// unmatched counts replies to no open transaction of their chaddr:
	// late ones, after their client gave up, or duplicates after it
	// finished. A server that answers late shows here, not only as a
	// lost exchange.
	sent, retries, unmatched atomic.Int64
	done                     chan struct{} // closed when the receive loop ends
}

// transaction is one client's DHCP exchange: its xid, held from the
// DISCOVER to the ACK as a ROM holds it, and the replies to it.
type transaction struct {
	m       *dhcpMux
	xid     dhcpv4.TransactionID
	mac     net.HardwareAddr
	replies chan *dhcpv4.DHCPv4
}

var (
	errMuxClosed = errors.New("the storm's DHCP socket is closed")
	// errNoReply: a packet went unanswered through all its tries, what
	// a load figure counts as a lost exchange.
	errNoReply = errors.New("no reply")
)

// openDHCPMux opens the storm's socket on iface: a raw one, because a ROM
// without an address sends from 0.0.0.0 to the broadcast address, that
// the kernel filters to UDP to port 68 so that nothing else queues in it,
// with room for a burst of every client's replies.
func openDHCPMux(iface string) (*dhcpMux, error) {
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("storm DHCP socket: %w", err)
	}
	filter, err := bpf.Assemble(clientPortFilter())
	if err != nil {
		return nil, fmt.Errorf("storm DHCP filter: %w", err)
	}
	raw, err := packet.Listen(ifc, packet.Datagram, unix.ETH_P_IP, &packet.Config{Filter: filter})
	if err != nil {
		return nil, fmt.Errorf("storm DHCP socket on %s: %w", iface, err)
	}
	if err := forceReadBuffer(raw, 4<<20); err != nil {
		raw.Close()
		return nil, err
	}
	m := newDHCPMux(nclient4.NewBroadcastUDPConn(raw, &net.UDPAddr{Port: dhcpv4.ClientPort}))
	m.raw = raw
	return m, nil
}

// clientPortFilter accepts the IPv4 packets of UDP to port 68 (on a
// datagram packet socket the data starts at the IP header).
func clientPortFilter() []bpf.Instruction {
	return []bpf.Instruction{
		bpf.LoadAbsolute{Off: 9, Size: 1}, // protocol
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.IPPROTO_UDP, SkipTrue: 6},
		bpf.LoadAbsolute{Off: 6, Size: 2}, // a later fragment has no UDP header
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipTrue: 4},
		bpf.LoadMemShift{Off: 0}, // X: the IP header's length
		bpf.LoadIndirect{Off: 2, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: dhcpv4.ClientPort, SkipFalse: 1},
		bpf.RetConstant{Val: 1 << 16},
		bpf.RetConstant{Val: 0},
	}
}

// forceReadBuffer sets the socket's receive buffer past rmem_max (the
// bench runs as root): the default holds about a hundred replies, fewer
// than a storm's burst when the receive loop is not scheduled.
func forceReadBuffer(c *packet.Conn, size int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("storm DHCP socket: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
	}); err != nil {
		return fmt.Errorf("storm DHCP socket: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("storm DHCP socket's SO_RCVBUFFORCE: %w", serr)
	}
	return nil
}

// newDHCPMux starts the receive loop on conn, which sends to and reads
// from UDP port 68's broadcast traffic.
func newDHCPMux(conn net.PacketConn) *dhcpMux {
	m := &dhcpMux{conn: conn, timeout: romTimeout, tries: romTries, waiting: map[dhcpv4.TransactionID]*transaction{}, done: make(chan struct{})}
	go m.receive()
	return m
}

// Close closes the socket and waits for the receive loop.
func (m *dhcpMux) Close() error {
	err := m.conn.Close()
	<-m.done
	return err
}

// drops is how many packets the kernel dropped from the socket's queue
// since it was opened (or last asked): replies no client saw.
func (m *dhcpMux) drops() int {
	if m.raw == nil {
		return 0
	}
	st, err := m.raw.Stats()
	if err != nil {
		return 0
	}
	return int(st.Drops)
}

func (m *dhcpMux) receive() {
	defer close(m.done)
	for {
		// A buffer per packet: a parsed message's options keep slices
		// of it.
		b := make([]byte, nclient4.MaxMessageSize)
		n, _, err := m.conn.ReadFrom(b)
		if err != nil {
			return
		}
		msg, err := dhcpv4.FromBytes(b[:n])
		if err != nil || msg.OpCode != dhcpv4.OpcodeBootReply {
			continue
		}
		m.deliver(msg)
	}
}

// deliver hands msg to the transaction of its xid if the chaddr is that
// transaction's; a full queue means duplicates of replies not yet read.
func (m *dhcpMux) deliver(msg *dhcpv4.DHCPv4) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.waiting[msg.TransactionID]
	if !ok || !bytes.Equal(t.mac, msg.ClientHWAddr) {
		m.unmatched.Add(1)
		return
	}
	select {
	case t.replies <- msg:
	default:
	}
}

// begin opens a transaction for mac under an xid no other one holds.
func (m *dhcpMux) begin(mac net.HardwareAddr) (*transaction, error) {
	t := &transaction{m: m, mac: mac, replies: make(chan *dhcpv4.DHCPv4, 8)}
	m.mu.Lock()
	defer m.mu.Unlock()
	for {
		xid, err := dhcpv4.GenerateTransactionID()
		if err != nil {
			return nil, fmt.Errorf("DHCP xid: %w", err)
		}
		if _, taken := m.waiting[xid]; !taken {
			t.xid = xid
			m.waiting[xid] = t
			return t, nil
		}
	}
}

// end releases the transaction's xid.
func (t *transaction) end() {
	t.m.mu.Lock()
	defer t.m.mu.Unlock()
	delete(t.m.waiting, t.xid)
}

// send broadcasts msg to the servers' port: the storm's one way out.
func (m *dhcpMux) send(msg *dhcpv4.DHCPv4) error {
	m.sent.Add(1)
	if _, err := m.conn.WriteTo(msg.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ServerPort}); err != nil {
		return fmt.Errorf("send %s: %w", msg.MessageType(), err)
	}
	return nil
}

// exchange sends msg until a reply that want accepts comes, on the mux's
// schedule, counting every send after the first as a retry.
func (t *transaction) exchange(ctx context.Context, msg *dhcpv4.DHCPv4, want func(*dhcpv4.DHCPv4) bool) (*dhcpv4.DHCPv4, error) {
	timeout := t.m.timeout
	for try := range t.m.tries {
		if try > 0 {
			t.m.retries.Add(1)
		}
		if err := t.m.send(msg); err != nil {
			return nil, err
		}
		reply, err := t.await(ctx, timeout, want)
		if reply != nil || err != nil {
			return reply, err
		}
		timeout *= 2
	}
	return nil, fmt.Errorf("%w to %s: sent %d times, the first waiting %s", errNoReply, msg.MessageType(), t.m.tries, t.m.timeout)
}

// await returns the first reply want accepts, or nil when timeout passes.
func (t *transaction) await(ctx context.Context, timeout time.Duration, want func(*dhcpv4.DHCPv4) bool) (*dhcpv4.DHCPv4, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case msg := <-t.replies:
			if want(msg) {
				return msg, nil
			}
		case <-timer.C:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.m.done:
			return nil, errMuxClosed
		}
	}
}

// dora is a PXE ROM's (or iPXE's) DHCP for mac through m: DISCOVER until
// an OFFER, REQUEST of that offer until its server's ACK. It returns the
// ACK.
func (m *dhcpMux) dora(ctx context.Context, mac net.HardwareAddr, mods ...dhcpv4.Modifier) (*dhcpv4.DHCPv4, error) {
	t, err := m.begin(mac)
	if err != nil {
		return nil, err
	}
	defer t.end()
	discover, err := t.discover(mods...)
	if err != nil {
		return nil, err
	}
	offer, err := t.exchange(ctx, discover, isType(dhcpv4.MessageTypeOffer))
	if err != nil {
		return nil, err
	}
	request, err := dhcpv4.NewRequestFromOffer(offer, mods...)
	if err != nil {
		return nil, fmt.Errorf("REQUEST: %w", err)
	}
	server := offer.ServerIdentifier()
	ack, err := t.exchange(ctx, request, func(msg *dhcpv4.DHCPv4) bool {
		return isType(dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak)(msg) && msg.ServerIdentifier().Equal(server)
	})
	if err != nil {
		return nil, err
	}
	if ack.MessageType() == dhcpv4.MessageTypeNak {
		return nil, fmt.Errorf("NAK from %s: %s", server, ack.Message())
	}
	return ack, nil
}

// discover is the transaction's DISCOVER with mods.
func (t *transaction) discover(mods ...dhcpv4.Modifier) (*dhcpv4.DHCPv4, error) {
	discover, err := dhcpv4.NewDiscovery(t.mac, slices.Concat(mods, []dhcpv4.Modifier{dhcpv4.WithTransactionID(t.xid),
		dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(nclient4.MaxMessageSize))})...)
	if err != nil {
		return nil, fmt.Errorf("DISCOVER: %w", err)
	}
	return discover, nil
}

// isType accepts a reply of one of the types.
func isType(types ...dhcpv4.MessageType) func(*dhcpv4.DHCPv4) bool {
	return func(msg *dhcpv4.DHCPv4) bool {
		return slices.Contains(types, msg.MessageType())
	}
}

package netboot

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// replyTo is a fake server's reply of type typ to req, offering yi (a
// proxy offers none) and naming file.
func replyTo(t *testing.T, req *dhcpv4.DHCPv4, typ dhcpv4.MessageType, yi net.IP, file string) *dhcpv4.DHCPv4 {
	server := net.IPv4(10, 77, 0, 1)
	reply, err := dhcpv4.NewReplyFromRequest(req, dhcpv4.WithMessageType(typ), dhcpv4.WithYourIP(yi),
		dhcpv4.WithServerIP(server), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(server)), dhcpv4.WithOption(dhcpv4.OptBootFileName(file)))
	if err != nil {
		t.Error(err)
		return nil
	}
	reply.BootFileName = file
	return reply
}

// fullReply answers a DISCOVER with an OFFER and a REQUEST with an ACK
// of 10.77.1.(10+i) for client i.
func fullReply(t *testing.T, req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	typ := dhcpv4.MessageTypeOffer
	if req.MessageType() == dhcpv4.MessageTypeRequest {
		typ = dhcpv4.MessageTypeAck
	}
	return replyTo(t, req, typ, net.IPv4(10, 77, 1, 10+req.ClientHWAddr[5]), "undionly.kpxe")
}

func TestLoadCountsLossesNotRetries(t *testing.T) {
	// Every even client's first DISCOVER goes unanswered: with one try
	// that exchange is lost, not completed 4 s later by a retry.
	m := newDHCPMux(newFakeLink(func(req *dhcpv4.DHCPv4) []*dhcpv4.DHCPv4 {
		if req.MessageType() == dhcpv4.MessageTypeDiscover && req.ClientHWAddr[5]%2 == 0 {
			return nil
		}
		return []*dhcpv4.DHCPv4{fullReply(t, req)}
	}))
	defer m.Close()
	macs, _ := Clients(40)
	l := runLoad(context.Background(), m, macs, LoadOptions{Mode: ModeFull, Conc: 8, Timeout: 100 * time.Millisecond, Tries: 1})
	want := Load{Completed: 20, Lost: 20, Sent: 20*2 + 20, FirstErr: l.FirstErr}
	got := l
	got.Seconds, got.P50ms, got.P99ms = 0, 0, 0
	if got != want {
		t.Errorf("load %+v, want %+v", got, want)
	}
	if l.P50ms <= 0 || l.P99ms < l.P50ms {
		t.Errorf("p50 %.3f ms, p99 %.3f ms: want 0 < p50 <= p99", l.P50ms, l.P99ms)
	}
	if len(m.waiting) != 0 {
		t.Errorf("%d transactions left open", len(m.waiting))
	}
}

func TestLoadCountsLateReplies(t *testing.T) {
	// Client 3's ACK comes after its exchange gave up: a lost exchange
	// and a reply that matched no waiting one.
	const timeout = 100 * time.Millisecond
	link := newFakeLink(nil)
	link.serve = func(req *dhcpv4.DHCPv4) []*dhcpv4.DHCPv4 {
		reply := fullReply(t, req)
		if req.MessageType() == dhcpv4.MessageTypeRequest && req.ClientHWAddr[5] == 3 {
			time.AfterFunc(2*timeout, func() { link.replies <- reply.ToBytes() })
			return nil
		}
		return []*dhcpv4.DHCPv4{reply}
	}
	m := newDHCPMux(link)
	defer m.Close()
	macs, _ := Clients(8)
	l := runLoad(context.Background(), m, macs, LoadOptions{Mode: ModeFull, Conc: 8, Timeout: timeout, Tries: 1})
	if l.Completed != 7 || l.Lost != 1 || l.Failed != 0 || l.Retries != 0 {
		t.Errorf("load %+v, want 7 completed, 1 lost, no failures and no retries", l)
	}
	for deadline := time.Now().Add(2 * time.Second); m.unmatched.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if got := m.unmatched.Load(); got != 1 {
		t.Errorf("%d unmatched replies, want the 1 late ACK", got)
	}
}

func TestLoadRetriesWhenAsked(t *testing.T) {
	// With a ROM's tries the same losses cost retries, not exchanges.
	var mu sync.Mutex
	seen := map[byte]bool{}
	m := newDHCPMux(newFakeLink(func(req *dhcpv4.DHCPv4) []*dhcpv4.DHCPv4 {
		mu.Lock()
		defer mu.Unlock()
		if req.MessageType() == dhcpv4.MessageTypeDiscover && !seen[req.ClientHWAddr[5]] {
			seen[req.ClientHWAddr[5]] = true
			return nil
		}
		return []*dhcpv4.DHCPv4{fullReply(t, req)}
	}))
	defer m.Close()
	macs, _ := Clients(10)
	l := runLoad(context.Background(), m, macs, LoadOptions{Mode: ModeFull, Conc: 1, Timeout: 5 * time.Millisecond, Tries: romTries})
	if l.Completed != 10 || l.Lost != 0 || l.Retries != 10 || l.Sent != 30 {
		t.Errorf("load %+v, want 10 completed, none lost, 10 retries among 30 packets", l)
	}
}

func TestLoadProxy(t *testing.T) {
	// Even clients get a proxy offer, odd ones an address: those are
	// failures, not losses.
	m := newDHCPMux(newFakeLink(func(req *dhcpv4.DHCPv4) []*dhcpv4.DHCPv4 {
		if req.MessageType() != dhcpv4.MessageTypeDiscover {
			t.Errorf("a proxy client sent a %s", req.MessageType())
			return nil
		}
		yi := net.IPv4zero
		if req.ClientHWAddr[5]%2 == 1 {
			yi = net.IPv4(10, 77, 1, 10+req.ClientHWAddr[5])
		}
		return []*dhcpv4.DHCPv4{replyTo(t, req, dhcpv4.MessageTypeOffer, yi, "undionly.kpxe")}
	}))
	defer m.Close()
	macs, _ := Clients(20)
	l := runLoad(context.Background(), m, macs, LoadOptions{Mode: ModeProxy, Conc: 4, Timeout: time.Second, Tries: 1})
	if l.Completed != 10 || l.Failed != 10 || l.Lost != 0 || l.Sent != 20 || l.FirstErr == "" {
		t.Errorf("load %+v, want 10 completed, 10 failed (an address offered), none lost, 20 packets", l)
	}
}

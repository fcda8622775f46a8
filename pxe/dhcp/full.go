package dhcp

import (
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// DefaultLeaseTime is the lease length in full mode.
const DefaultLeaseTime = 12 * time.Hour

// Full is the gate as the lab's only DHCP server.
type Full struct {
	Hosts Hosts
	Boot  Boot
	// Subnet is the lab network; Router and DNS its options.
	Subnet    netip.Prefix
	Router    netip.Addr
	DNS       []netip.Addr
	Pool      *Pool
	LeaseTime time.Duration
}

// Reply implements Handler.
func (f *Full) Reply(log *slog.Logger, req *dhcpv4.DHCPv4, via Via) *dhcpv4.DHCPv4 {
	if via != ViaDHCP {
		return nil // full mode listens on 67 only
	}
	mac := req.ClientHWAddr.String()
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		return f.answer(log, req, dhcpv4.MessageTypeOffer, netip.Addr{})
	case dhcpv4.MessageTypeRequest:
		named, us := fromUs(req, f.Boot.Server)
		if named && !us {
			f.Pool.Release(mac) // it took another server's offer
			return nil
		}
		want := addrOf(req.RequestedIPAddress())
		if !want.IsValid() {
			want = addrOf(req.ClientIPAddr) // renewing or rebinding
		}
		return f.answer(log, req, dhcpv4.MessageTypeAck, want)
	case dhcpv4.MessageTypeInform:
		return f.answer(log, req, dhcpv4.MessageTypeAck, netip.Addr{})
	case dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline:
		if _, known := f.Hosts.Host(req.ClientHWAddr); !known {
			f.Pool.Release(mac)
		}
		log.Info("dhcp: " + req.MessageType().String())
	}
	return nil
}

// answer builds an OFFER or ACK (or a NAK when want is not the client's
// address). An INFORM gets options only.
func (f *Full) answer(log *slog.Logger, req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, want netip.Addr) *dhcpv4.DHCPv4 {
	c := Classify(req)
	h, known := f.Hosts.Host(req.ClientHWAddr)
	var bf BootFile
	boot := false
	if c.Netboot() {
		// A netboot client kiln will not boot gets nothing, like in
		// proxy mode: an address alone would only stall its firmware.
		var ok bool
		if bf, _, ok = netbootFile(log, req, f.Hosts, f.Boot); !ok && (!known || h.Netboot) {
			return nil
		}
		boot = ok
	}
	inform := req.MessageType() == dhcpv4.MessageTypeInform
	addr, err := f.address(req, h, known)
	if err != nil && !inform {
		log.Warn("dhcp: no address to offer", "err", err)
		return nil
	}
	if mt == dhcpv4.MessageTypeAck && !inform {
		if want != addr || (!known && !f.Pool.Commit(req.ClientHWAddr.String(), addr, f.leaseTime())) {
			log.Info("dhcp: NAK", "requested", want, "have", addr)
			nak, err := newReply(req, dhcpv4.MessageTypeNak, f.Boot.Server)
			if err != nil {
				return nil
			}
			return nak
		}
	}
	reply, err := newReply(req, mt, f.Boot.Server)
	if err != nil {
		log.Error("dhcp: building reply", "err", err)
		return nil
	}
	if !inform {
		reply.YourIPAddr = net.IP(addr.AsSlice())
		reply.UpdateOption(dhcpv4.OptIPAddressLeaseTime(f.leaseTime()))
	}
	reply.UpdateOption(dhcpv4.OptSubnetMask(net.CIDRMask(f.Subnet.Bits(), 32)))
	if f.Router.IsValid() {
		reply.UpdateOption(dhcpv4.OptRouter(net.IP(f.Router.AsSlice())))
	}
	if len(f.DNS) > 0 {
		dns := make([]net.IP, len(f.DNS))
		for i, a := range f.DNS {
			dns[i] = net.IP(a.AsSlice())
		}
		reply.UpdateOption(dhcpv4.OptDNS(dns...))
	}
	// The gate serves time (package ntp): with no RTC on the lab's side
	// and maybe no internet, it is the one clock the lab can agree on.
	reply.UpdateOption(dhcpv4.OptNTPServers(net.IP(f.Boot.Server.AsSlice())))
	if known && h.Name != "" {
		reply.UpdateOption(dhcpv4.OptHostName(h.Name))
	}
	if boot {
		withBoot(reply, req, f.Boot, bf)
	}
	log.Info("dhcp: "+mt.String(), "addr", addr, "machine", h.Name, "file", bf.Name)
	return reply
}

// address is a plan machine's static address, or the pool's choice.
func (f *Full) address(req *dhcpv4.DHCPv4, h Host, known bool) (netip.Addr, error) {
	if known && h.Addr.IsValid() {
		return h.Addr, nil
	}
	return f.Pool.Offer(req.ClientHWAddr.String())
}

func (f *Full) leaseTime() time.Duration {
	if f.LeaseTime <= 0 {
		return DefaultLeaseTime
	}
	return f.LeaseTime
}

func addrOf(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok || a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}
